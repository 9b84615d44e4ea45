"""One bandit experiment's settings, validated, with the defaults of the paper's Figure 1 in one place.

The paper fixes 50 arms, a trimodal target, 4000 steps and learning rate 5e-3 (LAD_SPEC "The paper's
controlled bandit"). It does not give the optimizer, eta or the mixture; ladsim's choices are:

* optimizer ``adam`` (torch defaults, betas 0.9/0.999): plain SGD at 5e-3 barely moves a 50-arm softmax
  in 4000 steps, because each logit's gradient is of order 1/N;
* ``eta = 0.2`` with rewards in [0, 1]: the target ``P_A`` is clearly trimodal (the best arm of each mode
  carries ``exp(h/eta)`` times the mass of a zero-reward arm);
* the mixture ``DEFAULT_MIXTURE`` in ``ladsim.bandit.rewards``;
* ``pi_old`` frozen at the uniform prior, exact expectations over all arms, the policy starting at ``pi_old``;
* GRPO unclipped (``clip = None``) with ``beta = 0``: with a frozen ``pi_old`` a clip at ``1 + eps`` would
  stop every arm at ratio ``1 + eps``, so the paper's "GRPO objective" in this setting is plain advantage
  maximization (LAD_SPEC "GRPO").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ladsim.advantages import SCALES
from ladsim.bandit.memory import estimate_memory_bytes
from ladsim.bandit.rewards import RewardSpec, parse_reward
from ladsim.divergences import get_divergence
from ladsim.objectives import KL_ESTIMATORS, EntropyBonus, KLPenalty, get_objective, layered_params
from ladsim.ranges import TARGET, check_exponent, check_range
from ladsim.resources import check_memory
from ladsim.validation import Inert, check_device, check_field_types, check_inert, fills_a_field, finite

OBJECTIVES = ("grpo", "lad", "lad-theory")  # the default set: the paper's Figure 1
DTYPES = ("float64", "float32")
OPTIMIZERS = ("adam", "sgd")
MODES = ("exact", "sampled")
SEED_LIMIT = 2**63  # torch and numpy both take seeds in [0, 2^63)
DEVICES = ("cpu", "cuda")


def fills(config, *fields: str) -> bool:
    """Whether a run-wide setting filling the objective parameters ``fields`` reaches an objective trained."""
    return fills_a_field(((get_objective(name).params, config.params.get(name, {})) for name in config.objectives),
                         fields)


def draws(config) -> bool:
    """Whether the run draws random numbers: initial noise, sampled groups, or an objective that may draw."""
    return (config.init_std > 0 or config.mode == "sampled"
            or any("generator" in get_objective(name).needs for name in config.objectives))


# Settings that act only under a condition (``ladsim.validation.check_inert``): refused where they do nothing,
# unless they merely restate the default.
INERT = (
    Inert("group_size", lambda c: c.mode == "sampled", "with --mode sampled"),
    Inert("epochs", lambda c: c.mode == "sampled", "with --mode sampled (optimizer steps per sampled batch)"),
    Inert("advantage_scale", lambda c: c.mode == "sampled",
          "with --mode sampled (exact advantages are R - E_pi_old[R], never scaled)"),
    Inert("kl_beta", lambda c: c.kl is not None, "with --kl (the penalty it weighs)"),
    Inert("clip", lambda c: fills(c, "eps_low", "eps_high"),
          "on objectives that clip (parameters eps_low/eps_high, as `ladsim objectives` lists) where --set does "
          "not give both"),
    Inert("div", lambda c: fills(c, "div"),
          "on objectives with a divergence (a parameter div, as `ladsim objectives` lists) where --set does not "
          "give it"),
    Inert("seed", draws, "where something is drawn: --init-std > 0, --mode sampled or an objective that draws"),
)


@dataclass(frozen=True)
class BanditConfig:
    """Every setting of one bandit experiment (all objectives in it share them).

    ``refresh_every = 0`` keeps ``pi_old`` frozen; ``K > 0`` sets ``pi_old`` to the current policy before
    every K-th optimizer step (``K = 1`` is on-policy). In sampled mode a fresh group of ``group_size`` arms
    per seed is drawn from ``pi_old`` every ``epochs`` optimizer steps (``epochs`` = inner epochs per batch).
    ``dtype`` is float64 by default (exact numbers); float32 runs about 1.5x faster on large seed batches.

    Objectives come from the registry (``ladsim.objectives``). Their parameters are the registry's defaults,
    then the run's shared settings (``eta`` and ``div`` fill the fields of those names, ``clip`` fills
    ``eps_low`` and ``eps_high`` where it is set), then ``params`` (``{"flowrl": {"beta": 10}}``, what
    ``--set flowrl.beta=10`` gives). ``kl`` names a KL estimator (``k1``, ``k2``, ``k3``, ``k3+``) of a penalty
    ``kl_beta * k`` to the reference policy, which is the prior (the initial ``pi_old``);
    ``entropy_coef > 0`` adds an entropy bonus. Both apply to every objective of the run. ``device``: ``cpu``
    or ``cuda`` (``cuda:K``), where the tensors live (checked against the machine when training starts).
    """

    arms: int = 50
    reward: str = "mixture"
    objectives: tuple[str, ...] = OBJECTIVES
    div: str = "js"
    eta: float = 0.2
    steps: int = 4000
    lr: float = 5e-3
    optimizer: str = "adam"
    mode: str = "exact"
    group_size: int = 16
    advantage_scale: str = "std"
    refresh_every: int = 0
    epochs: int = 1
    prior: tuple[float, ...] | None = None
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
        """One validation pass over the final settings, before anything is allocated: types, choices, the
        objectives' parameters as they will train (every constraint checked on the layered values), settings
        that do nothing here (``INERT``), sizes against memory, the reward spec, and the magnitude ranges of
        ``ladsim.ranges`` in the run's dtype."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        check_field_types(self)  # `seeds = 1.5` in a study file is refused here, not deep in torch
        need(0 <= self.seed < SEED_LIMIT, f"--seed must be an integer in [0, 2^63), got {self.seed}")
        need(isinstance(self.arms, int) and self.arms >= 2, f"--arms must be an integer >= 2, got {self.arms}")
        need(finite(self.eta) and self.eta > 0, f"--eta must be a finite number > 0, got {self.eta}")
        need(finite(self.lr) and self.lr > 0, f"--lr must be a finite number > 0, got {self.lr}")
        need(isinstance(self.steps, int) and self.steps >= 1, f"--steps must be an integer >= 1, got {self.steps}")
        need(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}")
        need(len(self.objectives) > 0, "give at least one --objective")
        for obj in self.objectives:
            get_objective(obj)
        need(len(set(self.objectives)) == len(self.objectives), f"objectives repeat: {list(self.objectives)}")
        need(self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
        need(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose from: {', '.join(DTYPES)}")
        need(self.mode in MODES, f"unknown mode {self.mode!r}; choose from: {', '.join(MODES)}")
        need(self.advantage_scale in SCALES,
             f"unknown advantage scale {self.advantage_scale!r}; choose from: {', '.join(SCALES)}")
        get_divergence(self.div)
        if self.mode == "sampled":
            need(self.group_size >= 2, f"--group-size must be >= 2 in sampled mode, got {self.group_size}")
        need(self.group_size >= 1, f"--group-size must be >= 1, got {self.group_size}")
        need(self.refresh_every >= 0, f"--refresh-every must be >= 0 (0 = never), got {self.refresh_every}")
        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}")
        need(finite(self.init_std) and self.init_std >= 0, f"--init-std must be >= 0, got {self.init_std}")
        need(self.clip is None or (finite(self.clip) and self.clip > 0), f"--clip must be > 0, got {self.clip}")
        need(all(isinstance(k, int) and k >= 1 for k in self.metric_ks), "metric k values must be integers >= 1")
        need(self.kl is None or self.kl in KL_ESTIMATORS,
             f"unknown --kl estimator {self.kl!r}; choose from: {', '.join(KL_ESTIMATORS)}")
        check_device(self.device)
        KLPenalty(self.kl_beta)
        EntropyBonus(self.entropy_coef)
        need(isinstance(self.params, dict), f"params must be a mapping objective -> {{param: value}}, got "
                                            f"{type(self.params).__name__}")
        parsed = {}
        for name, values in self.params.items():
            obj = get_objective(name)
            need(isinstance(values, dict), f"params of {name!r} must be a mapping param -> value")
            need(obj.name in self.objectives,
                 f"--set {', '.join(f'{obj.name}.{k}' for k in values) or obj.name} does nothing in this run: "
                 f"{obj.name} is not among the objectives trained ({', '.join(self.objectives)}); add it "
                 f"with -o or drop the --set")
            final = layered_params(obj, self.shared_settings(), values)  # every constraint, on the final values
            parsed[obj.name] = {k: getattr(final, k) for k in values}
        object.__setattr__(self, "params", parsed)
        for name in self.objectives:
            self.objective_params(name)
        check_inert(self, INERT)
        check_range("init_std", self.init_std, self.dtype)
        check_range("lr", self.lr, self.dtype)
        check_range("entropy_coef", self.entropy_coef, self.dtype)
        if self.kl is not None:
            check_range("kl_beta", self.kl_beta, self.dtype)
        # before the reward spec allocates (N,) arrays: sizes that cannot fit are refused, not attempted
        check_memory(estimate_memory_bytes(self), f"a run of {self.seeds} seeds x {self.arms} arms"
                     + (f" x group size {self.group_size}" if self.mode == "sampled" else ""))
        spec = parse_reward(self.reward, self.arms)
        object.__setattr__(self, "_reward_spec", spec)  # parsed once: a reward file is read here and only here
        if spec.n_arms != self.arms:
            raise ValueError(f"the reward has {spec.n_arms} arms but --arms is {self.arms}")
        if self.prior is not None:
            need(len(self.prior) == self.arms, f"the prior has {len(self.prior)} entries, expected {self.arms}")
            need(all(finite(p) and p > 0 for p in self.prior), "prior probabilities must be finite and > 0")
            check_range("prior", max(self.prior) / min(self.prior), self.dtype)
        self.check_reward_ranges(spec.expected_rewards())

    def check_reward_ranges(self, rewards: np.ndarray) -> None:
        """The rewards' magnitude and resolution in the run's dtype, and the exponent ``max|A| / eta`` of the
        target and of every LAD objective trained (``ladsim.ranges``): ``max|A|`` is the rewards' span, or
        ``(G - 1)/sqrt(G)`` for std-scaled group advantages (the largest z-score of ``G`` samples)."""
        top = float(np.max(np.abs(rewards)))
        span = float(np.ptp(rewards))
        check_range("reward", top, self.dtype)
        if span == 0 or np.ptp(rewards.astype(self.dtype)) == 0:
            raise ValueError(f"all rewards are equal in {self.dtype}: no arm is better than another, nothing "
                             f"to learn")
        check_range("reward_offset", top / span, self.dtype)
        check_exponent(span / self.eta, TARGET, self.dtype, f"the target (reward span {span:.3g}, --eta {self.eta})")
        group = self.mode == "sampled" and self.advantage_scale == "std"
        for name in self.objectives:
            params = self.objective_params(name)
            if not (hasattr(params, "eta") and hasattr(params, "div")):
                continue
            std_scaled = group and not get_objective(name).full_support
            top_adv = (self.group_size - 1) / math.sqrt(self.group_size) if std_scaled else span
            check_exponent(top_adv / params.eta, params.div, self.dtype,
                           f"{name} (max|A| = {top_adv:.3g}: " + ("std-scaled groups of "
                           f"{self.group_size}" if std_scaled else "the reward span") + f", eta {params.eta})")

    def shared_settings(self) -> dict:
        """The run-wide settings that fill objective parameters of the same names: ``eta``, ``div`` and, with
        ``clip``, ``eps_low`` and ``eps_high``."""
        shared = {"eta": self.eta, "div": self.div}
        if self.clip is not None:
            shared.update(eps_low=self.clip, eps_high=self.clip)
        return shared

    def objective_params(self, name: str):
        """The parameters ``name`` trains with: registry defaults < shared settings < ``params``."""
        return layered_params(name, self.shared_settings(), self.params.get(name, {}))

    def kl_penalty(self) -> KLPenalty | None:
        """The KL penalty of the run, or ``None``."""
        return None if self.kl is None else KLPenalty(self.kl_beta, self.kl)

    def entropy_bonus(self) -> EntropyBonus | None:
        """The entropy bonus of the run, or ``None``."""
        return EntropyBonus(self.entropy_coef) if self.entropy_coef > 0 else None

    def reward_spec(self) -> RewardSpec:
        """The reward spec named by ``reward``, as parsed and validated when the config was made."""
        return self._reward_spec

    def replace(self, **changes) -> "BanditConfig":
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
