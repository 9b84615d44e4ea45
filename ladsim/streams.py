"""Per-seed random streams: seed ``i`` of a run draws from its own stream, a function of ``(seed, i)`` only.

A counter-based generator (splitmix64's mixer over a key and a counter): draw number ``c`` of the run (the
``c``-th call, the same for every seed since all seeds draw in lockstep) gives seed ``i`` the values
``u(key_i, c, j)`` for ``j = 0..m-1``. Nothing depends on how many seeds train together, so seed ``i`` of a
``--seeds 3`` run is seed ``i`` of a ``--seeds 5`` run, and rows can be drawn on any device from one small
integer computation. Uniforms carry 53 random bits in ``[0, 1)``.

What the bandit draws from a :class:`SeedStreams` (``(S, ...)`` arrays, one row per seed):

* ``uniform(shape)``            ``(S, *shape)`` in ``[0, 1)``;
* ``normal(shape)``             standard normals (Box-Muller);
* ``categorical(weights, k)``   ``(S, k)`` indices drawn with replacement from each row of ``weights (S, N)``
  (inverse CDF; an arm of weight 0 is never drawn).

The draws are computed in numpy's uint64 arithmetic (wrapping multiplication and logical shifts, as splitmix64
needs) and returned as torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_COUNTER = np.uint64(0xD1B54A32D192ED03)  # odd: spreads the call counter over the 64 bits


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (a bijection with good avalanche)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


class SeedStreams:
    """``S`` independent random streams, the ``i``-th keyed by ``(seed, first + i)``.

    Args:
        seed: the run's seed (any integer >= 0).
        count: number of streams ``S``.
        device: where the drawn tensors live.
        first: index of the first stream (a slice of a larger run gets the same draws as in the whole run).
    """

    def __init__(self, seed: int, count: int, device: torch.device | str = "cpu", first: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        with np.errstate(over="ignore"):
            base = _mix(np.uint64(seed) * _GOLDEN + _GOLDEN)
            index = np.arange(first, first + count, dtype=np.uint64)
            self.keys = _mix(base ^ _mix(index * _GOLDEN + np.uint64(1)))  # (S,)
        self.count = count
        self.device = torch.device(device)
        self.calls = 0  # draws made so far: the counter of the next draw

    def _bits(self, size: int) -> np.ndarray:
        """``(S, size)`` uint64 words of draw number ``self.calls`` (then advance the counter)."""
        with np.errstate(over="ignore"):
            counter = _mix(np.uint64(self.calls + 1) * _COUNTER)
            j = np.arange(size, dtype=np.uint64) * _GOLDEN
            words = _mix((self.keys ^ counter)[:, None] + j[None, :])
        self.calls += 1
        return words

    def uniform(self, shape: tuple[int, ...] | int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``(S, *shape)`` uniforms in ``[0, 1)``: 53 random bits in float64, 24 in float32 (exact, never 1)."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape, dtype=np.int64))
        bits = 53 if dtype == torch.float64 else 24
        u = (self._bits(size) >> np.uint64(64 - bits)).astype(np.float64) * 2.0**-bits
        return torch.from_numpy(u.reshape(self.count, *shape)).to(device=self.device, dtype=dtype)

    def normal(self, shape: tuple[int, ...] | int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``(S, *shape)`` standard normals: Box-Muller on two uniforms per value."""
        u1 = self.uniform(shape, torch.float64)
        u2 = self.uniform(shape, torch.float64)
        z = torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * np.pi * u2)
        return z.to(dtype)

    def categorical(self, weights: Tensor, k: int) -> Tensor:
        """``(S, k)`` indices drawn with replacement from the rows of ``weights (S, N)`` (>= 0, not all 0)."""
        if weights.shape[0] != self.count:
            raise ValueError(f"weights must have {self.count} rows, got shape {tuple(weights.shape)}")
        cdf = torch.cumsum(weights.to(torch.float64), -1)
        u = self.uniform(k, torch.float64).to(cdf.device) * cdf[:, -1:]
        # right=True: the first arm whose cumulative mass exceeds u, so an arm of mass 0 is never picked
        return torch.searchsorted(cdf, u, right=True).clamp_(max=weights.shape[-1] - 1)


def uniform_like(shape: tuple[int, ...], generator: "SeedStreams | torch.Generator | None",
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """Uniforms in ``[0, 1)`` of ``shape``: from the per-row streams of a :class:`SeedStreams` (``shape[0]`` must
    be its number of streams), else ``torch.rand`` with the ``torch.Generator`` (or torch's global one)."""
    if isinstance(generator, SeedStreams):
        if shape[0] != generator.count:
            raise ValueError(f"a draw from {generator.count} seed streams needs {generator.count} rows, got {shape}")
        return generator.uniform(tuple(shape[1:]), dtype).to(device=device)
    return torch.rand(shape, generator=generator, dtype=dtype, device=device)
