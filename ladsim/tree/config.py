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

from dataclasses import dataclass

from ladsim.llm.objective_loss import RATIOS
from ladsim.llm.token_loss import AGG_MODES
from ladsim.objectives import get_objective, list_objectives
from ladsim.resources import check_memory
from ladsim.settings import SHARED_INERT, TrainSettings
from ladsim.tree.rewards import DEFAULT_ANSWERS, TreeReward, parse_tree_reward
from ladsim.tree.structure import TokenTree, count_nodes, count_responses, count_tokens
from ladsim.validation import Inert

OBJECTIVES = ("grpo", "lad")
WORLD_SET = ("length",)  # objective parameters the tree sets itself (FlowRL's |y|: its entries are length-normalized)


def per_token(config: "TreeConfig") -> bool:
    """Whether an objective of the run has a term per token (``unit = "token"``, not full-support): the ones
    ``ratio`` reaches."""
    return any(get_objective(n).unit == "token" and not get_objective(n).full_support for n in config.objectives)


def aggregates(config: "TreeConfig") -> bool:
    """Whether ``agg`` reaches anything: a per-token objective, or the per-token KL penalty or entropy bonus."""
    return per_token(config) or config.kl is not None or config.entropy_coef > 0


ONE_TERM_PER_RESPONSE = ", ".join(n for n in list_objectives()
                                  if get_objective(n).unit == "response" or get_objective(n).full_support)
INERT = SHARED_INERT + (
    Inert("agg", aggregates, f"on per-token losses: an objective with a term per token (not {ONE_TERM_PER_RESPONSE}:"
                             f" one term per response), or --kl / --entropy-coef"),
    Inert("ratio", per_token, f"on objectives with a term per token (not {ONE_TERM_PER_RESPONSE}: one term per "
                              f"response; the KL penalty reads token log-probs)"),
    Inert("top_entropy_quantile", lambda c: c.mode == "sampled" and all(
        get_objective(n).unit == "token" for n in c.objectives),
        f"with --mode sampled on objectives with a term per token (not {ONE_TERM_PER_RESPONSE}: one term per "
        f"response, no token to mask)"),
)


@dataclass(frozen=True)
class TreeConfig(TrainSettings):
    """Every setting of one token-tree experiment (all its objectives share them).

    The shared settings of every world (``ladsim.settings.TrainSettings``: objectives, eta, div, mode, pi_old's
    refresh, seeds, the KL penalty and entropy bonus, ...), plus the tree's own: ``vocab`` (``V``, token 0 =
    EOS), ``length`` (``L``, EOS included), ``reward`` (``ladsim.tree.rewards``), ``agg`` (verl's
    ``loss_agg_mode``, in its exact-expectation form in exact mode) and ``ratio`` (``token``, ``sequence`` or
    ``sequence-mean``, as ``ladsim.llm.objective_loss``). Objectives whose ``unit`` is ``"response"`` (FlowRL)
    and the full-support ``lad-theory`` take one term per whole response; ``agg`` then acts on the KL penalty
    and the entropy bonus only, ``ratio`` not at all (refused where it would do nothing).
    """

    vocab: int = 4
    length: int = 5
    reward: str = DEFAULT_ANSWERS
    objectives: tuple[str, ...] = OBJECTIVES
    agg: str = "token-mean"
    ratio: str = "token"

    INERT = INERT

    def __post_init__(self) -> None:
        """One validation pass before any work: the tree's sizes and choices, the shared settings
        (``TrainSettings.check_settings``), the memory the run needs, the reward, and the rewards' ranges."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(isinstance(self.vocab, int) and not isinstance(self.vocab, bool) and self.vocab >= 2,
             f"--vocab must be an integer >= 2 (token 0 is the EOS), got {self.vocab!r}")
        need(isinstance(self.length, int) and not isinstance(self.length, bool) and self.length >= 1,
             f"--length must be an integer >= 1, got {self.length!r}")
        need(self.agg in AGG_MODES, f"unknown --agg {self.agg!r}; choose from: {', '.join(AGG_MODES)}")
        need(self.ratio in RATIOS, f"unknown --ratio {self.ratio!r}; choose from: {', '.join(RATIOS)}")
        for name, values in (self.params or {}).items():
            fixed = sorted(set(values) & set(WORLD_SET)) if isinstance(values, dict) else []
            need(not fixed, f"{name}.{fixed[0] if fixed else ''} is set by the tree itself (each response's own "
                            f"length); remove it")
        self.check_settings()
        check_memory(estimate_memory_bytes(self), f"a tree of {count_responses(self.vocab, self.length):,} "
                                                  f"responses x {self.seeds} seeds")
        tree = TokenTree(self.vocab, self.length)
        reward = parse_tree_reward(self.reward, tree)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_reward", reward)
        self.check_reward_ranges(reward.values, what="response", batch=self.group_size * self.length)

    def tree(self) -> TokenTree:
        return self._tree

    def reward_spec(self) -> TreeReward:
        return self._reward


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
