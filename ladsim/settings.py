"""The settings every world shares (the bandit, the token tree, the many-prompt world), and their one validation
pass: what a run trains, how, for how many seeds, with which modifiers.

A world's config is a frozen dataclass deriving from :class:`TrainSettings`: it adds its own fields (the bandit's
``arms``, the tree's ``vocab`` and ``length``, ...), may restate a shared field with its own default, and calls
:meth:`TrainSettings.check_settings` from its ``__post_init__`` before its own checks. Everything is validated
before any work: types, choices, the objectives' parameters as they will train (every constraint checked on
the layered values), settings that do nothing in the run (``INERT``, ``ladsim.validation.check_inert``: refused
unless they restate the default) and the magnitude ranges of ``ladsim.ranges`` in the run's dtype.

Objective parameters are layered: the registry's defaults, then the run's shared settings (``eta`` and ``div``
fill the fields of those names, ``clip`` fills ``eps_low`` and ``eps_high``), then ``params`` (what ``--set
OBJ.PARAM=VALUE`` gives). ``kl`` names a KL estimator of a penalty ``kl_beta * k`` to the reference policy (the
world's initial policy; ``kl_bias_correction``: ``kl_beta * r * k``, TRL's), ``entropy_coef > 0`` adds an entropy
bonus; both apply to every objective of the run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ladsim.advantages import ESTIMATORS, SCALES, exact_affine, get_estimator
from ladsim.divergences import get_divergence
from ladsim.objectives import (KL_ESTIMATORS, AdaptiveEntropy, EntropyBonus, KLPenalty, get_objective,
                               layered_params)
from ladsim.ranges import TARGET, check_exponent, check_range
from ladsim.validation import Inert, check_device, check_field_types, check_inert, fills_a_field, finite

DTYPES = ("float64", "float32")
OPTIMIZERS = ("adam", "sgd")
MODES = ("exact", "sampled")
SEED_LIMIT = 2**63  # torch and numpy both take seeds in [0, 2^63)


def fills(config: "TrainSettings", *fields: str) -> bool:
    """Whether a run-wide setting filling the objective parameters ``fields`` reaches an objective trained."""
    return fills_a_field(((get_objective(name).params, config.params.get(name, {})) for name in config.objectives),
                         fields)


# Settings that act only under a condition: refused where they do nothing, unless they restate the default.
SHARED_INERT = (
    Inert("group_size", lambda c: c.mode == "sampled", "with --mode sampled"),
    Inert("epochs", lambda c: c.mode == "sampled", "with --mode sampled (optimizer steps per sampled batch)"),
    Inert("advantage_scale", lambda c: c.scales_advantages(),
          "on the estimators grpo and grpo-passk (verl's norm_adv_by_std_in_grpo): sampled mode's default, or "
          "--advantage grpo (exact mode's default advantage R - E_pi_old[R] is never scaled)"),
    Inert("kl_beta", lambda c: c.kl is not None, "with --kl (the penalty it weighs)"),
    Inert("kl_bias_correction", lambda c: c.kl is not None, "with --kl (the penalty it corrects)"),
    *(Inert(name, lambda c: c.entropy_target is not None, "with --entropy-target (adaptive entropy control)")
      for name in ("entropy_coef_delta", "entropy_coef_min", "entropy_coef_max")),
    Inert("top_entropy_quantile", lambda c: c.mode == "sampled",
          "with --mode sampled (a quantile of the sampled batch's token entropies; its exact limit is not built)"),
    Inert("clip", lambda c: fills(c, "eps_low", "eps_high"),
          "on objectives that clip (parameters eps_low/eps_high, as `ladsim objectives` lists) where --set does "
          "not give both"),
    Inert("div", lambda c: fills(c, "div"),
          "on objectives with a divergence (a parameter div, as `ladsim objectives` lists) where --set does not "
          "give it"),
    Inert("seed", lambda c: c.draws(), "where something is drawn: --init-std > 0, --mode sampled or an objective "
                                       "that draws"),
)


@dataclass(frozen=True)
class TrainSettings:
    """The shared settings (module docstring). ``refresh_every = 0`` keeps ``pi_old`` frozen; ``K > 0`` sets it
    to the current policy before every K-th optimizer step (``K = 1`` is on-policy). In sampled mode a fresh
    group of ``group_size`` responses per seed (and prompt) is drawn from ``pi_old`` every ``epochs`` optimizer
    steps. ``dtype`` is float64 by default (exact numbers). ``device``: ``cpu`` or ``cuda`` (``cuda:K``),
    checked against the machine when training starts."""

    objectives: tuple[str, ...] = ("grpo", "lad")
    div: str = "js"
    eta: float = 0.2
    steps: int = 2000
    lr: float = 5e-3
    optimizer: str = "adam"
    mode: str = "exact"
    group_size: int = 16
    advantage_scale: str = "std"
    advantage: str | None = None
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
    kl_bias_correction: bool = False
    entropy_coef: float = 0.0
    entropy_target: float | None = None
    entropy_coef_delta: float = 0.005
    entropy_coef_min: float = 0.0
    entropy_coef_max: float = 1.0
    top_entropy_quantile: float = 1.0
    device: str = "cpu"

    INERT: ClassVar[tuple[Inert, ...]] = SHARED_INERT

    def check_settings(self) -> None:
        """Validate the shared settings as they will train (raises ``ValueError`` naming the flag); resolves
        ``params`` to the parsed values. A world's ``__post_init__`` calls it first."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        check_field_types(self)  # `seeds = 1.5` in a study file is refused here, not deep in torch
        need(0 <= self.seed < SEED_LIMIT, f"--seed must be an integer in [0, 2^63), got {self.seed}")
        need(finite(self.eta) and self.eta > 0, f"--eta must be a finite number > 0, got {self.eta}")
        need(finite(self.lr) and self.lr > 0, f"--lr must be a finite number > 0, got {self.lr}")
        need(self.steps >= 1, f"--steps must be an integer >= 1, got {self.steps}")
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
        need(self.advantage is None or self.advantage in ESTIMATORS,
             f"unknown --advantage {self.advantage!r}; choose from: {', '.join(ESTIMATORS)}")
        exact_users = [n for n in self.objectives if self.mode == "exact" or get_objective(n).full_support]
        if self.advantage is not None and get_estimator(self.advantage).exact is None and exact_users:
            who = f"{', '.join(exact_users)} train{'s' if len(exact_users) == 1 else ''}"
            fix = (" in exact mode: add --mode sampled" if self.mode == "exact" else
                   f" on exact advantages (every response): drop {'it' if len(exact_users) == 1 else 'them'}")
            raise ValueError(f"--advantage {self.advantage} is sampled-only (it has no large-group limit), but "
                             f"{who}{fix}")
        get_divergence(self.div)
        if self.mode == "sampled":
            need(self.group_size >= 2, f"--group-size must be >= 2 in sampled mode, got {self.group_size}")
        need(self.group_size >= 1, f"--group-size must be >= 1, got {self.group_size}")
        need(self.refresh_every >= 0, f"--refresh-every must be >= 0 (0 = never), got {self.refresh_every}")
        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}")
        need(finite(self.init_std) and self.init_std >= 0, f"--init-std must be >= 0, got {self.init_std}")
        need(self.clip is None or (finite(self.clip) and self.clip > 0), f"--clip must be > 0, got {self.clip}")
        need(all(k >= 1 for k in self.metric_ks), "metric k values must be integers >= 1")
        need(self.kl is None or self.kl in KL_ESTIMATORS,
             f"unknown --kl estimator {self.kl!r}; choose from: {', '.join(KL_ESTIMATORS)}")
        check_device(self.device)
        need(finite(self.top_entropy_quantile) and 0 < self.top_entropy_quantile <= 1,
             f"--top-entropy-quantile must lie in (0, 1], got {self.top_entropy_quantile}")
        if self.top_entropy_quantile < 1:
            need(self.entropy_coef == 0, "--top-entropy-quantile with --entropy-coef: TRL masks the entropy bonus "
                                         "with the policy loss, ladsim's bonus keeps every token; use one of them")
            whole = [n for n in self.objectives if get_objective(n).full_support]
            need(not whole, f"--top-entropy-quantile masks sampled tokens, but {', '.join(whole)} reads every "
                            f"response (no sampled tokens): drop it or the mask")
        KLPenalty(self.kl_beta)
        EntropyBonus(self.entropy_coef)
        if self.entropy_target is not None:
            try:
                self.entropy_control()
            except ValueError as err:  # name the flags
                raise ValueError(f"adaptive entropy control: {err} (--entropy-target {self.entropy_target}, "
                                 f"--entropy-coef {self.entropy_coef} as the start, --entropy-coef-delta/-min/"
                                 f"-max {self.entropy_coef_delta}/{self.entropy_coef_min}/{self.entropy_coef_max})"
                                 ) from None
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
        check_inert(self, self.INERT)
        check_range("init_std", self.init_std, self.dtype)
        check_range("lr", self.lr, self.dtype)
        check_range("entropy_coef", self.entropy_coef, self.dtype)
        if self.kl is not None:
            check_range("kl_beta", self.kl_beta, self.dtype)

    def estimators(self) -> tuple[str, str]:
        """The advantage estimators ``(exact, sampled)`` of the run (``ladsim.advantages``): ``--advantage`` for
        both, by default ``dr-grpo``'s limit ``R - E_pi_old[R]`` where advantages are exact (exact mode, and
        objectives that read every response) and ``grpo`` on sampled groups."""
        exact = self.advantage if self.advantage and get_estimator(self.advantage).exact else "dr-grpo"
        # a sampled-only --advantage leaves exact advantages to the default: check_settings refuses a run that
        # would read them (exact mode, full-support objectives), the worlds' behaviour() still computes them
        return (exact, self.advantage or "grpo")

    def scales_advantages(self) -> bool:
        """Whether ``advantage_scale`` acts: an estimator that reads it (``grpo``, ``grpo-passk``) is used."""
        exact, sampled = self.estimators()
        return ((self.mode == "sampled" and get_estimator(sampled).scaled)
                or (self.advantage is not None and get_estimator(exact).scaled))

    def std_scaled(self) -> bool:
        """Whether sampled groups are GRPO's std-scaled ones (the std target of ``ladsim.bandit.metrics``)."""
        return self.mode == "sampled" and self.estimators()[1] == "grpo" and self.advantage_scale == "std"

    def draws(self) -> bool:
        """Whether the run draws random numbers: initial noise, sampled groups, or an objective that may draw
        (a world with random parts of its own adds them)."""
        return (self.init_std > 0 or self.mode == "sampled"
                or any("generator" in get_objective(name).needs for name in self.objectives))

    def check_reward_ranges(self, rewards: np.ndarray, what: str = "arm", batch: int | None = None) -> None:
        """The rewards' magnitude and resolution in the run's dtype, and the exponent ``max|A| / eta`` of the
        target and of every LAD objective trained (``ladsim.ranges``), ``max|A|`` as :meth:`top_advantage`
        bounds it; ``batch``: the entries (tokens) of one seed's sampled batch (default ``group_size``)."""
        top = float(np.max(np.abs(rewards)))
        span = float(np.ptp(rewards))
        check_range("reward", top, self.dtype)
        if span == 0 or np.ptp(rewards.astype(self.dtype)) == 0:
            raise ValueError(f"all rewards are equal in {self.dtype}: no {what} is better than another, nothing "
                             f"to learn")
        check_range("reward_offset", top / span, self.dtype)
        check_exponent(span / self.eta, TARGET, self.dtype, f"the target (reward span {span:.3g}, --eta {self.eta})")
        for name in self.objectives:
            params = self.objective_params(name)
            if not (hasattr(params, "eta") and hasattr(params, "div")):
                continue
            sampled = self.mode == "sampled" and not get_objective(name).full_support
            top_adv, why = self.top_advantage(rewards, sampled, batch or self.group_size)
            check_exponent(top_adv / params.eta, params.div, self.dtype,
                           f"{name} (max|A| = {top_adv:.3g}: {why}, eta {params.eta})")

    def top_advantage(self, rewards: np.ndarray, sampled: bool, batch: int) -> tuple[float, str]:
        """A bound on ``|A|`` and what it is. Sampled: the largest value the estimator can give a group of
        ``G`` in a batch of ``batch`` entries (a z-score of ``n`` values is at most ``(n - 1)/sqrt(n)``; GPG's
        ``alpha`` at most ``batch``). Exact: the rewards' span, times the estimator's factor at the uniform
        policy over ``rewards`` where it scales (the factor follows ``pi_old`` as it moves)."""
        span, G = float(np.ptp(rewards)), self.group_size
        exact_name, sampled_name = self.estimators()
        name = sampled_name if sampled else exact_name
        std = self.advantage_scale == "std"
        if sampled:
            zscore = lambda n: (n - 1) / math.sqrt(n)  # noqa: E731
            bound = {"grpo": (zscore(G), f"std-scaled groups of {G}") if std else (span, "the reward span"),
                     "grpo-passk": (math.sqrt(G), f"a std-scaled gap in groups of {G}") if std
                     else (span, "the reward span"),
                     "reinforce++": (zscore(batch), f"whitened over {batch} tokens"),
                     "reinforce++-baseline": (zscore(batch), f"whitened over {batch} tokens"),
                     "gpg": (batch * span, f"the reward span times GPG's alpha <= {batch}"),
                     "trl-batch": (zscore(batch), f"batch-std-scaled over {batch} rewards")}
            return bound.get(name, (span, "the reward span"))
        r = torch.as_tensor(np.asarray(rewards, dtype=np.float64).reshape(1, -1))
        baseline, factor = exact_affine(name, r, torch.full_like(r, 1.0 / r.numel()), greedy=r.max().view(1),
                                        scale=self.advantage_scale)
        top = float((factor * (r - baseline)).abs().max())
        return (span, "the reward span") if top <= span else (top, f"{name} at the uniform policy")

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
        return None if self.kl is None else KLPenalty(self.kl_beta, self.kl,
                                                      bias_correction=self.kl_bias_correction)

    def entropy_bonus(self) -> EntropyBonus | None:
        """The fixed entropy bonus of the run, or ``None`` (none with adaptive control: it supplies each step's)."""
        return EntropyBonus(self.entropy_coef) if self.entropy_coef > 0 and self.entropy_target is None else None

    def entropy_control(self) -> AdaptiveEntropy | None:
        """TRL's adaptive entropy control (``--entropy-target``; ``entropy_coef`` its first coefficient), or
        ``None``."""
        if self.entropy_target is None:
            return None
        return AdaptiveEntropy(self.entropy_target, self.entropy_coef_delta, self.entropy_coef_min,
                               self.entropy_coef_max, self.entropy_coef)

    def replace(self, **changes):
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
