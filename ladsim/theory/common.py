"""Shared pieces of the theory checks: the result record, random instances, log-log slope fits.

Everything here is float64 numpy (scipy solvers) or float64 torch (the loss core). A check is a pure
function of a ``numpy.random.Generator`` (or an integer seed) and sizes; it returns a :class:`CheckResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

DTYPE = torch.float64


@dataclass
class CheckResult:
    """One verified claim.

    Attributes:
        name: short identifier (``"lemma31"``, ...), the key used in the JSON output.
        claim: one-line statement of what was checked.
        passed: whether every instance met the tolerance (and every side condition held).
        worst_error: the largest error seen over all instances (in the check's own error metric).
        tolerance: the bound ``worst_error`` had to stay under.
        instances: how many random instances (or instance x parameter cells) were evaluated.
        metric: what ``worst_error`` measures.
        details: further measured numbers for the report (slopes, intervals, side metrics).
        failures: human-readable reasons for a failure (empty when passed).
    """

    name: str
    claim: str
    passed: bool
    worst_error: float
    tolerance: float
    instances: int
    metric: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "worst_error": float(self.worst_error),
            "tolerance": float(self.tolerance),
            "instances": int(self.instances),
            "claim": self.claim,
            "metric": self.metric,
            "details": _jsonable(self.details),
            "failures": list(self.failures),
        }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else str(v)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --- random instances ------------------------------------------------------------------------------

def log_dirichlet(rng: np.random.Generator, alpha: float, n: int) -> np.ndarray:
    """log of a Dirichlet(alpha, ..., alpha) draw of size ``n``, exact even for tiny ``alpha``.

    Uses ``Gamma(a) = Gamma(a + 1) * U^(1/a)`` in log space, so very peaked draws (entries like 1e-200)
    neither underflow to zero nor lose their logarithm.
    """
    g = rng.gamma(alpha + 1.0, size=n)
    log_g = np.log(g) + np.log(rng.uniform(size=n)) / alpha
    return log_g - logsumexp(log_g)


def draw_advantages(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Advantages of size ``n``: ``"normal"`` (standard normal) or ``"heavy"`` (Student t, 1.5 dof)."""
    if kind == "normal":
        return rng.standard_normal(n)
    if kind == "heavy":
        return rng.standard_t(1.5, size=n)
    raise ValueError(f"unknown advantage kind {kind!r}")


def kl(log_p: np.ndarray, log_q: np.ndarray) -> float:
    """KL(P || Q) from log-probabilities (0 log 0 = 0)."""
    p = np.exp(log_p)
    mask = p > 0
    return float(np.sum(p[mask] * (log_p[mask] - log_q[mask])))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` for a 1-D array (plain numpy: called in solver inner loops)."""
    m = np.max(z)
    return z - (m + np.log(np.sum(np.exp(z - m))))



# --- log-log slopes --------------------------------------------------------------------------------

def fit_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(lx, ly, 1)[0])


def slope_with_ci(x: np.ndarray, ys: np.ndarray, rng: np.random.Generator, n_boot: int = 2000,
                  level: float = 0.95) -> dict[str, Any]:
    """Pooled log-log slope of ``ys (instances, len(x))`` against ``x`` with a bootstrap interval.

    Each row is one instance measured along the same grid ``x``; rows are resampled with replacement
    (the instance is the unit of resampling), and the slope of the mean of ``log y`` over the resampled
    rows is refit. Returns ``{"slope", "lo", "hi", "per_instance_min", "per_instance_max"}`` (floats) and
    ``"per_instance"``, the list of each row's own log-log slope (in row order).
    """
    ys = np.asarray(ys, float)
    lx = np.log(np.asarray(x, float))
    ly = np.log(ys)
    per = np.polyfit(lx, ly.T, 1)[0]
    slope = float(np.polyfit(lx, ly.mean(0), 1)[0])
    k = ly.shape[0]
    idx = rng.integers(0, k, size=(n_boot, k))
    boot_means = ly[idx].mean(1)  # (n_boot, len(x))
    boots = np.polyfit(lx, boot_means.T, 1)[0]
    a = (1 - level) / 2
    return {"slope": slope, "lo": float(np.quantile(boots, a)), "hi": float(np.quantile(boots, 1 - a)),
            "per_instance_min": float(per.min()), "per_instance_max": float(per.max()),
            "per_instance": [float(v) for v in per]}


# --- threads -------------------------------------------------------------------------------------

_BLAS_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                 "scipy_openblas_set_num_threads")


def _blas_handles() -> list[tuple[Any, Any]]:
    """(set, get) pairs of every OpenBLAS loaded in this process (Linux /proc/self/maps; else none)."""
    import ctypes

    out = []
    try:
        paths = {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()
                 and line.rstrip().endswith(".so") or ".so." in line and "openblas" in line.lower()}
    except OSError:
        return out
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(lib, name, None)
            getter = getattr(lib, name.replace("set_num_threads", "get_num_threads"), None)
            if setter is not None and getter is not None:
                out.append((setter, getter))
                break
    return out


class single_threaded:
    """Context manager: one BLAS and one torch thread while the checks run, restored on exit.

    The checks solve many tiny problems; on a busy machine threaded BLAS on tiny matrices spends its time
    waking threads (measured: the quick Lemma 3.1 check took 70 s instead of 1 s on two loaded cores).
    """

    def __enter__(self) -> "single_threaded":
        self._torch = torch.get_num_threads()
        torch.set_num_threads(1)
        self._blas = []
        for setter, getter in _blas_handles():
            try:
                self._blas.append((setter, int(getter())))
                setter(1)
            except Exception:  # noqa: BLE001 - an unexpected ABI: leave that library alone
                continue
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._torch)
        for setter, n in self._blas:
            setter(n)
