"""The many-prompt world's setting (WORLDS.md, World 2): base logits, features and rewards, drawn or loaded.

A setting is three arrays over ``P`` prompts and ``N`` answers each:

* ``base (P, N)``: the fixed base logits ``b(x, y)`` of the "pretrained" model;
* ``features (P, N, d)``: the fixed features ``phi(x, y)`` through which the shared ``w`` moves every logit;
* ``rewards (P, N)``: ``R(x, y)`` in ``[0, 1]``, the probability that answer ``y`` of prompt ``x`` is judged
  correct (``1`` for a correct answer, ``0`` for a wrong one: a correct set).

Each part comes from a ``.npy`` file (one setting for every seed) or is drawn per seed (``(S, ...)``): seed
index ``i`` draws from the stream ``(seed, SETTING_STREAMS + i)`` of :class:`ladsim.streams.SeedStreams`, which
no training stream uses (those are ``(seed, i)``), so the setting of seed ``i`` depends on neither how many
seeds run nor what training draws. The draws, in this order (only the parts not given by a file):

* base logits ``N(0, s^2)`` (``s`` = ``base_scale``);
* features ``N(0, 1) / sqrt(d)``: a row ``phi(x, y)`` has squared norm about 1, so ``phi . w`` with
  ``w ~ N(0, sigma^2 I)`` moves a logit by about ``sigma`` whatever ``d`` (``init_std`` means what it means in
  the bandit: the std of the initial logits' noise);
* the correct set: ``K`` distinct answers per prompt, the ``K`` smallest of ``N`` uniforms (a uniform random
  ``K``-subset), reward 1 there and 0 elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ladsim.streams import SeedStreams

SETTING_STREAMS = 2**62  # the first stream index of the random settings (training streams are 0, 1, ...)
PARTS = ("base_logits", "features", "reward")  # the config fields naming a file for each part
DIMS = {"base_logits": "(P, N)", "features": "(P, N, d)", "reward": "(P, N)"}


def open_part(path: str, part: str) -> np.ndarray:
    """One part of a setting from a ``.npy`` file, memory-mapped (nothing read beyond its header yet), its
    dimensions checked (``DIMS``) and numbers only; ``ValueError`` naming the flag and the file otherwise."""
    flag = flag_of(part)
    file = Path(path)
    if file.suffix != ".npy":
        raise ValueError(f"{flag} {path}: expected a .npy file (numpy.save) of shape {DIMS[part]}")
    if not file.is_file():
        raise ValueError(f"{flag} {path}: no such file")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{flag} {path}: not a readable .npy array ({str(err).splitlines()[0]})") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{flag} {path}: holds {array.dtype} values; numbers only")
    want = DIMS[part].count(",") + 1
    if array.ndim != want:
        raise ValueError(f"{flag} {path}: shape {array.shape}, expected {DIMS[part]}")
    return array


def read_part(array: np.ndarray, path: str, part: str) -> np.ndarray:
    """The values of an :func:`open_part` array as float64, checked finite and (rewards) within ``[0, 1]``."""
    flag = flag_of(part)
    values = np.array(array, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = "NaN" if np.isnan(values).any() else "inf"
        raise ValueError(f"{flag} {path}: holds {bad} at index {np.argwhere(~np.isfinite(values))[0].tolist()}")
    if part == "reward" and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"{flag} {path}: rewards must lie in [0, 1] (the probability that an answer is judged "
                         f"correct), got values in [{values.min():.3g}, {values.max():.3g}]")
    return values


def flag_of(part: str) -> str:
    """``base_logits`` -> ``--base-logits``."""
    return "--" + part.replace("_", "-")


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (a study's cache key must change when a setting file does)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Setting:
    """A setting as tensors; each part's leading axis is ``S`` (drawn per seed) or 1 (a file's, shared).

    Attributes:
        base: ``(S or 1, P, N)`` base logits.
        features: ``(S or 1, P, N, d)``.
        rewards: ``(S or 1, P, N)`` in ``[0, 1]``.
    """

    base: Tensor
    features: Tensor
    rewards: Tensor

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(P, N, d)``."""
        return tuple(self.features.shape[1:])  # type: ignore[return-value]


def make_setting(prompts: int, arms: int, dim: int, seeds: int, *, seed: int, base_scale: float, correct: int,
                 files: dict[str, np.ndarray], dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> Setting:
    """The setting of a run: each part from ``files`` (``{part: array}``, read by :func:`read_part`) where
    given, else drawn per seed (module docstring). ``prompts, arms, dim`` are ``P, N, d``."""
    streams = SeedStreams(seed, seeds, first=SETTING_STREAMS)
    P, N, d = prompts, arms, dim

    def shared(part: str) -> Tensor:
        return torch.as_tensor(files[part], dtype=dtype).unsqueeze(0)

    base = shared("base_logits") if "base_logits" in files else base_scale * streams.normal((P, N), dtype)
    features = shared("features") if "features" in files else streams.normal((P, N, d), dtype) / np.sqrt(d)
    if "reward" in files:
        rewards = shared("reward")
    else:
        ranks = torch.argsort(torch.argsort(streams.uniform((P, N)), -1), -1)  # a random permutation per prompt
        rewards = (ranks < correct).to(dtype)
    device = torch.device(device)
    return Setting(base.to(device), features.to(device), rewards.to(device))
