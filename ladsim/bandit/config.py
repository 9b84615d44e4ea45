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

from dataclasses import dataclass

from ladsim.bandit.memory import estimate_memory_bytes
from ladsim.bandit.rewards import RewardSpec, parse_reward
from ladsim.ranges import check_range
from ladsim.resources import check_memory
from ladsim.settings import TrainSettings
from ladsim.validation import finite

OBJECTIVES = ("grpo", "lad", "lad-theory")  # the default set: the paper's Figure 1


@dataclass(frozen=True)
class BanditConfig(TrainSettings):
    """Every setting of one bandit experiment (all objectives in it share them): the shared settings of every
    world (``ladsim.settings.TrainSettings``: objectives, eta, div, mode, pi_old's refresh, seeds, the KL penalty
    and entropy bonus, ...) and the bandit's own: ``arms``, ``reward`` (``ladsim.bandit.rewards``) and ``prior``
    (``pi_old``'s start, uniform when ``None``; also the KL penalty's reference policy). ``dtype`` float32 runs
    about 1.5x faster on large seed batches.
    """

    arms: int = 50
    reward: str = "mixture"
    objectives: tuple[str, ...] = OBJECTIVES
    steps: int = 4000
    prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        """One validation pass over the final settings, before anything is allocated: the shared settings
        (``TrainSettings.check_settings``), then the sizes against memory, the reward spec, the prior, and the
        rewards' magnitude ranges in the run's dtype."""
        if self.top_entropy_quantile != 1.0:  # before the shared checks: in the bandit it never makes sense
            raise ValueError("--top-entropy-quantile does nothing in the bandit: it has one state, so every token "
                             "has the same entropy and the mask keeps all (use the token tree or many prompts)")
        self.check_settings()
        if not (isinstance(self.arms, int) and self.arms >= 2):
            raise ValueError(f"--arms must be an integer >= 2, got {self.arms}")
        # before the reward spec allocates (N,) arrays: sizes that cannot fit are refused, not attempted
        check_memory(estimate_memory_bytes(self), f"a run of {self.seeds} seeds x {self.arms} arms"
                     + (f" x group size {self.group_size}" if self.mode == "sampled" else ""))
        spec = parse_reward(self.reward, self.arms)
        object.__setattr__(self, "_reward_spec", spec)  # parsed once: a reward file is read here and only here
        if spec.n_arms != self.arms:
            raise ValueError(f"the reward has {spec.n_arms} arms but --arms is {self.arms}")
        if self.prior is not None:
            if len(self.prior) != self.arms:
                raise ValueError(f"the prior has {len(self.prior)} entries, expected {self.arms}")
            if not all(finite(p) and p > 0 for p in self.prior):
                raise ValueError("prior probabilities must be finite and > 0")
            check_range("prior", max(self.prior) / min(self.prior), self.dtype)
        self.check_reward_ranges(spec.expected_rewards())

    def reward_spec(self) -> RewardSpec:
        """The reward spec named by ``reward``, as parsed and validated when the config was made."""
        return self._reward_spec
