"""One many-prompt experiment's settings (WORLDS.md, World 2), validated before any work, defaults in one place.

ladsim's choices where WORLDS.md leaves them open:

* the loss **averages** the prompts' losses (each prompt weighs ``1/P``): with ``P = 1`` it is the bandit's
  loss, and the learning rate means the same whatever ``P``;
* a random setting (``ladsim.prompts.setting``): ``P = 64`` prompts of ``N = 32`` answers, ``d = 8`` shared
  features ``N(0, 1/d)``, base logits ``N(0, 2^2)`` (a peaked "pretrained" model), ``K = 2`` correct answers
  per prompt; each seed draws its own;
* the policy starts at the base (``w = 0``, plus ``N(0, init_std^2)`` noise on ``w``), ``pi_old`` starts there
  and is frozen unless ``refresh_every`` says otherwise, exact expectations; the KL penalty's reference is the
  base policy;
* the shared defaults of every world (``ladsim.settings``: Adam, lr 5e-3, ``eta = 0.2``, 2000 steps, 8 seeds);
  pass@k for ``k = 1, 2, 4, ..., 1024``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ladsim.prompts.setting import PARTS, file_digest, flag_of, open_part, read_part
from ladsim.ranges import check_range
from ladsim.resources import check_memory
from ladsim.settings import SHARED_INERT, TrainSettings
from ladsim.validation import Inert

OBJECTIVES = ("grpo", "lad")
RANDOM_SIZES = {"prompts": 64, "arms": 32, "dim": 8}  # P, N, d of a random setting when not given
PASSK_GRID = tuple(2**j for j in range(11))  # pass@k for k = 1, 2, 4, ..., 1024
BASE_SPREAD = 12.0  # a random base's logits spread over about 12 s per prompt (six standard deviations each way)


def powers_of_two(k_max: int) -> tuple[int, ...]:
    """``1, 2, 4, ...`` up to ``k_max`` (``k_max >= 1``)."""
    if not (isinstance(k_max, int) and not isinstance(k_max, bool) and k_max >= 1):
        raise ValueError(f"--max-k must be an integer >= 1, got {k_max!r}")
    return tuple(2**j for j in range(k_max.bit_length()) if 2**j <= k_max)


# The shared rules, the seed's restated (a random setting draws too), and the world's own.
INERT = tuple(rule for rule in SHARED_INERT if rule.setting != "seed") + (
    Inert("seed", lambda c: c.draws(), "where something is drawn: a random part of the setting (no file), "
                                       "--init-std > 0, --mode sampled or an objective that draws"),
    Inert("base_scale", lambda c: c.base_logits is None, "when the base logits are drawn (no --base-logits file)"),
    Inert("correct", lambda c: c.reward is None, "when the rewards are drawn (no --reward file)"),
)


@dataclass(frozen=True)
class PromptsConfig(TrainSettings):
    """Every setting of one many-prompt experiment (all its objectives share them).

    The shared settings of every world (``ladsim.settings.TrainSettings``: objectives, eta, div, mode, pi_old's
    refresh, seeds, the KL penalty and entropy bonus, ...), plus the world's own: ``prompts``, ``arms``, ``dim``
    (``P``, ``N``, ``d``: given, or read from the files, which must agree with them), ``base_scale`` and
    ``correct`` (``s``, ``K`` of a random setting), ``base_logits``, ``features``, ``reward`` (``.npy`` files of
    shapes ``(P, N)``, ``(P, N, d)``, ``(P, N)``; each part not given is drawn per seed), ``tabular`` (add a
    free logit per prompt and answer, ``theta (P, N)``, to the shared ``w``). ``metric_ks`` is the pass@k grid,
    increasing (its largest ``k`` is the one of the ``unsolved`` share and of the coverage); ``--max-k K`` gives
    ``1, 2, 4, ..., K``.
    """

    prompts: int | None = None
    arms: int | None = None
    dim: int | None = None
    base_scale: float = 2.0
    correct: int = 2
    base_logits: str | None = None
    features: str | None = None
    reward: str | None = None
    tabular: bool = False
    objectives: tuple[str, ...] = OBJECTIVES
    metric_ks: tuple[int, ...] = field(default=PASSK_GRID)

    INERT = INERT

    def __post_init__(self) -> None:
        """One validation pass before any work: the shared settings (``TrainSettings.check_settings``), the
        world's sizes and the random setting's law, the files' shapes (against one another and the sizes
        given), the memory the run needs, then the files' values and the rewards' ranges."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        self.check_settings()  # types first: every check below may compare numbers
        need(self.prompts is None or self.prompts >= 1, f"--prompts must be an integer >= 1, got {self.prompts}")
        need(self.arms is None or self.arms >= 2, f"--arms must be an integer >= 2 (answers per prompt), got "
                                                  f"{self.arms}")
        need(self.dim is None or self.dim >= 1, f"--dim must be an integer >= 1 (the shared parameters w have d "
                                                f"entries), got {self.dim}")
        need(math.isfinite(self.base_scale) and self.base_scale >= 0,
             f"--base-scale must be a finite number >= 0, got {self.base_scale}")
        need(list(self.metric_ks) == sorted(set(self.metric_ks)),
             f"metric_ks (the pass@k grid) must increase, got {list(self.metric_ks)}")
        if self.base_logits is None:  # the largest / smallest base probability of a prompt, about exp(12 s)
            check_range("prior", math.exp(min(BASE_SPREAD * self.base_scale, 709.0)), self.dtype)
        P, N, d, opened = self._sizes()
        need(self.reward is not None or 1 <= self.correct < N,
             f"--correct must be an integer in [1, N - 1] = [1, {N - 1}] (correct answers per prompt, of "
             f"{N}), got {self.correct}")
        check_memory(estimate_memory_bytes(self, P, N, d),
                     f"a run of {P} prompts x {N} answers x {d} features x {self.seeds} seeds")
        files = {part: read_part(array, getattr(self, part), part) for part, array in opened.items()}
        if "base_logits" in files:
            spread = float(np.ptp(files["base_logits"], axis=-1).max())
            check_range("prior", math.exp(min(spread, 709.0)), self.dtype)
        if "reward" in files:
            rewards = files["reward"]
            need(bool((np.ptp(rewards, axis=-1) > 0).any()),
                 f"--reward {self.reward}: every prompt's answers are rewarded alike, no advantage anywhere: "
                 f"nothing to learn")
            self.check_reward_ranges(rewards, what="answer", batch=P * self.group_size)
        else:
            self.check_reward_ranges(np.array([0.0, 1.0]), what="answer", batch=P * self.group_size)
        object.__setattr__(self, "_sizes_pnd", (P, N, d))
        object.__setattr__(self, "_files", files)

    def draws(self) -> bool:
        """Whether the run draws random numbers: a random part of the setting, or what every world draws."""
        return any(getattr(self, part) is None for part in PARTS) or super().draws()

    def _sizes(self) -> tuple[int, int, int, dict[str, np.ndarray]]:
        """``(P, N, d, {part: memory-mapped array})``: the sizes the files fix (checked against one another and
        against ``prompts``, ``arms``, ``dim`` where given), the others given or ``RANDOM_SIZES``."""
        opened = {part: open_part(getattr(self, part), part) for part in PARTS if getattr(self, part) is not None}
        axes = {"prompts": 0, "arms": 1, "dim": 2}
        sizes, source = {}, {}
        for part, array in opened.items():
            for name, axis in axes.items():
                if axis >= array.ndim:
                    continue
                what = f"{flag_of(part)} {getattr(self, part)} (shape {array.shape})"
                if name in sizes and sizes[name] != array.shape[axis]:
                    raise ValueError(f"shapes disagree: {source[name]} has {sizes[name]} {name}, {what} has "
                                     f"{array.shape[axis]}")
                sizes.setdefault(name, array.shape[axis])
                source.setdefault(name, what)
        for name in axes:
            given = getattr(self, name)
            if name in sizes and given is not None and given != sizes[name]:
                raise ValueError(f"shapes disagree: --{name} {given}, but {source[name]} has {sizes[name]}")
            sizes.setdefault(name, given if given is not None else RANDOM_SIZES[name])
        if sizes["prompts"] < 1:
            raise ValueError(f"at least one prompt is needed; {source['prompts']} has none")
        if sizes["arms"] < 2:
            raise ValueError(f"every prompt needs at least 2 answers; {source['arms']} has {sizes['arms']}")
        if sizes["dim"] < 1:
            raise ValueError(f"the features need d >= 1 (d = 0: no shared parameters); {source['dim']} has d = 0")
        return sizes["prompts"], sizes["arms"], sizes["dim"], opened

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(P, N, d)`` of the run (the files' where given)."""
        return self._sizes_pnd

    def setting_files(self) -> dict[str, np.ndarray]:
        """``{part: (P, N) or (P, N, d) float64 array}`` of the parts read from files."""
        return self._files

    def ks(self) -> tuple[int, ...]:
        """The pass@k grid (``metric_ks``)."""
        return tuple(self.metric_ks)

    def to_dict(self) -> dict:
        """Every setting, and the SHA-256 of each setting file (a study's cache key changes with a file's
        contents, not only with its name)."""
        out = super().to_dict()
        digests = {part: file_digest(getattr(self, part)) for part in PARTS if getattr(self, part) is not None}
        if digests:
            out["files_sha256"] = digests
        return out


def estimate_memory_bytes(config: PromptsConfig, P: int, N: int, d: int) -> int:
    """Bytes a run of ``config`` with ``P, N, d`` holds at its peak, over-estimated from its sizes alone.

    Training: about 24 ``(S, P, N)`` tensors (logits, log-softmax, ``pi_old``, advantages, weights, the
    objective's temporaries, their backward, the tabular part and its Adam moments), the features (``S`` or one
    copy of ``(P, N, d)``, twice: the array and its tensor) and in sampled mode 12 ``(S, P, G)`` ones and the
    ``int64`` answers. Results: the per-prompt frames (rho and entropy per objective, seed, prompt: about 8
    copies) and the logged metrics.
    """
    item = 8 if config.dtype == "float64" else 4
    S = config.seeds
    copies = 1 if config.features is not None else S
    train = item * (24 * S * P * N + 2 * copies * P * N * d)
    if config.mode == "sampled":
        train += S * P * config.group_size * (8 + 12 * item)
    logged = config.steps // config.log_every + 2
    results = len(config.objectives) * 8 * (8 * S * P * 4 + logged * S * 40)
    return train + results
