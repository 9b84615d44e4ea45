"""One token-tree experiment's settings (WORLDS.md, World 1), validated before any work, defaults in one place.

ladsim's choices where WORLDS.md leaves them open:

* ``V = 4`` tokens, ``L = 5`` (364 responses), the answers ``12, 213, 3111`` (bodies of 2, 3 and 4 tokens:
  ``pi_0`` gives them ``1/64, 1/256, 1/1024``); truncated responses score 0;
* the policy starts uniform at every node (``theta = 0``, ``pi_0(y) = V^-|y|``), ``pi_old`` frozen there,
  exact expectations over every response; the reference policy of the KL penalty is ``pi_0``;
* the losses are the LLM path's (``ladsim.llm``): verl's ``token-mean`` aggregation and per-token ratios by
  default, as verl and TRL run GRPO; ``--agg`` and ``--ratio`` choose the others;
* the bandit's optimizer settings (Adam, lr 5e-3), ``eta = 0.2``, 2000 steps, 8 seeds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ladsim.advantages import SCALES
from ladsim.divergences import get_divergence
from ladsim.llm.objective_loss import RATIOS
from ladsim.llm.token_loss import AGG_MODES
from ladsim.objectives import KL_ESTIMATORS, EntropyBonus, KLPenalty, get_objective, layered_params, make_params
from ladsim.resources import check_memory
from ladsim.tree.rewards import DEFAULT_ANSWERS, TreeReward, parse_tree_reward
from ladsim.tree.structure import TokenTree, count_nodes, count_responses, count_tokens
from ladsim.validation import check_field_types, finite

OBJECTIVES = ("grpo", "lad")
DTYPES = ("float64", "float32")
OPTIMIZERS = ("adam", "sgd")
MODES = ("exact", "sampled")
DEVICES = ("cpu", "cuda")
SEED_LIMIT = 2**63
WORLD_SET = ("length",)  # objective parameters the tree sets itself (FlowRL's |y|: its entries are length-normalized)


@dataclass(frozen=True)
class TreeConfig:
    """Every setting of one token-tree experiment (all its objectives share them).

    Like :class:`ladsim.bandit.config.BanditConfig` where the names agree (``eta``, ``div``, ``mode``,
    ``refresh_every``, ``kl``, ``params``, ...), plus the tree's own: ``vocab`` (``V``, token 0 = EOS),
    ``length`` (``L``, EOS included), ``reward`` (``ladsim.tree.rewards``), ``agg`` (verl's ``loss_agg_mode``,
    in its exact-expectation form in exact mode) and ``ratio`` (``token``, ``sequence`` or ``sequence-mean``,
    as ``ladsim.llm.objective_loss``). Objectives whose ``unit`` is ``"response"`` (FlowRL) and the
    full-support ``lad-theory`` take one term per whole response; ``agg`` and ``ratio`` then act on the KL
    penalty and the entropy bonus only.
    """

    vocab: int = 4
    length: int = 5
    reward: str = DEFAULT_ANSWERS
    objectives: tuple[str, ...] = OBJECTIVES
    agg: str = "token-mean"
    ratio: str = "token"
    div: str = "js"
    eta: float = 0.2
    steps: int = 2000
    lr: float = 5e-3
    optimizer: str = "adam"
    mode: str = "exact"
    group_size: int = 16
    advantage_scale: str = "std"
    refresh_every: int = 0
    epochs: int = 1
    init_std: float = 0.0
    clip: float | None = None
    seeds: int = 8
    seed: int = 0
    log_every: int = 50
    dtype: str = "float64"
    metric_ks: tuple[int, ...] = field(default=(1, 4, 16))
    params: dict = field(default_factory=dict)
    kl: str | None = None
    kl_beta: float = 0.001
    entropy_coef: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        check_field_types(self)
        need(0 <= self.seed < SEED_LIMIT, f"--seed must be an integer in [0, 2^63), got {self.seed}")
        need(self.vocab >= 2, f"--vocab must be an integer >= 2 (token 0 is the EOS), got {self.vocab}")
        need(self.length >= 1, f"--length must be an integer >= 1, got {self.length}")
        need(finite(self.eta) and self.eta > 0, f"--eta must be a finite number > 0, got {self.eta}")
        need(finite(self.lr) and self.lr > 0, f"--lr must be a finite number > 0, got {self.lr}")
        need(self.steps >= 1, f"--steps must be an integer >= 1, got {self.steps}")
        need(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}")
        need(len(self.objectives) > 0, "give at least one --objective")
        for obj in self.objectives:
            get_objective(obj)
        need(len(set(self.objectives)) == len(self.objectives), f"objectives repeat: {list(self.objectives)}")
        need(self.agg in AGG_MODES, f"unknown --agg {self.agg!r}; choose from: {', '.join(AGG_MODES)}")
        need(self.ratio in RATIOS, f"unknown --ratio {self.ratio!r}; choose from: {', '.join(RATIOS)}")
        need(self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
        need(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose from: {', '.join(DTYPES)}")
        need(self.mode in MODES, f"unknown mode {self.mode!r}; choose from: {', '.join(MODES)}")
        need(self.advantage_scale in SCALES,
             f"unknown advantage scale {self.advantage_scale!r}; choose from: {', '.join(SCALES)}")
        get_divergence(self.div)
        need(self.group_size >= 2 or self.mode != "sampled",
             f"--group-size must be >= 2 in sampled mode, got {self.group_size}")
        need(self.group_size >= 1, f"--group-size must be >= 1, got {self.group_size}")
        need(self.refresh_every >= 0, f"--refresh-every must be >= 0 (0 = never), got {self.refresh_every}")
        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}")
        need(finite(self.init_std) and self.init_std >= 0, f"--init-std must be >= 0, got {self.init_std}")
        need(self.clip is None or (finite(self.clip) and self.clip > 0), f"--clip must be > 0, got {self.clip}")
        need(all(k >= 1 for k in self.metric_ks), "metric k values must be integers >= 1")
        need(self.kl is None or self.kl in KL_ESTIMATORS,
             f"unknown --kl estimator {self.kl!r}; choose from: {', '.join(KL_ESTIMATORS)}")
        need(self.device.split(":")[0] in DEVICES
             and (":" not in self.device or self.device.split(":", 1)[1].isdigit()),
             f"--device must be cpu or cuda (cuda:K), got {self.device!r}")
        KLPenalty(self.kl_beta)
        EntropyBonus(self.entropy_coef)
        need(isinstance(self.params, dict), "params must be a mapping objective -> {param: value}")
        parsed = {}
        for name, values in self.params.items():
            need(isinstance(values, dict), f"params of {name!r} must be a mapping param -> value")
            fixed = sorted(set(values) & set(WORLD_SET))
            need(not fixed, f"{name}.{fixed[0] if fixed else ''} is set by the tree itself (each response's own "
                            f"length); remove it")
            explicit = make_params(name, values)
            parsed[get_objective(name).name] = {k: getattr(explicit, k) for k in values}
        object.__setattr__(self, "params", parsed)
        for name in self.objectives:
            self.objective_params(name)
        check_memory(estimate_memory_bytes(self), f"a tree of {count_responses(self.vocab, self.length):,} "
                                                  f"responses x {self.seeds} seeds")
        tree = TokenTree(self.vocab, self.length)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_reward", parse_tree_reward(self.reward, tree))

    def objective_params(self, name: str):
        """The parameters ``name`` trains with: registry defaults < shared settings < ``params``."""
        shared = {"eta": self.eta, "div": self.div}
        if self.clip is not None:
            shared.update(eps_low=self.clip, eps_high=self.clip)
        return layered_params(name, shared, self.params.get(name, {}))

    def kl_penalty(self) -> KLPenalty | None:
        return None if self.kl is None else KLPenalty(self.kl_beta, self.kl)

    def entropy_bonus(self) -> EntropyBonus | None:
        return EntropyBonus(self.entropy_coef) if self.entropy_coef > 0 else None

    def tree(self) -> TokenTree:
        return self._tree

    def reward_spec(self) -> TreeReward:
        return self._reward

    def replace(self, **changes) -> "TreeConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def estimate_memory_bytes(config: TreeConfig) -> int:
    """Bytes a run of ``config`` holds at its peak, over-estimated from its sizes alone (before any allocation).

    Training: about 24 ``(S, E)`` edge tensors (logits, gradient, Adam's moments, ``pi_old``, log-softmax,
    their backward), 24 ``(S, T)`` token tensors in exact mode (``T`` every token of every response: the
    entries, their old log-probs, advantages, weights, the objective's temporaries), 16 ``(S, R)`` response
    tensors (log-probabilities, advantages, metrics), the tree's index arrays (``int64``, a few per token and
    response). Results: the final policy over responses (about 8 copies in its frame and CSV).
    """
    item = 8 if config.dtype == "float64" else 4
    S, V, L = config.seeds, config.vocab, config.length
    E, R, T = count_nodes(V, L) * V, count_responses(V, L), count_tokens(V, L)
    tokens = T if config.mode == "exact" else config.group_size * L
    train = S * item * (24 * E + 24 * tokens + 16 * R) + 8 * (6 * T + 6 * R + 4 * L * R)
    results = len(config.objectives) * S * R * 8 * 8
    return train + results
