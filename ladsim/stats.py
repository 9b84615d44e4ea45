"""The one interval estimator of ladsim: the mean over seeds and its percentile-bootstrap interval.

Every table and figure that shows an interval (``ladsim run bandit``'s summary, the studies' ``summary`` and
``curves`` frames) uses :func:`bootstrap_interval`: the percentile bootstrap of the mean, ``BOOTSTRAP_RESAMPLES``
resamples of the seeds with replacement, 95%, a fixed seed (reproducible outputs). It is the method of
``scipy.stats.bootstrap(..., method="percentile")``, written with numpy so that a bandit run does not import
``scipy.stats`` (0.7 s) for its summary. ``METHOD`` names it in the outputs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BOOTSTRAP_RESAMPLES = 4999
LEVEL = 0.95
METHOD = f"percentile bootstrap of the mean over seeds ({BOOTSTRAP_RESAMPLES} resamples), 95%"


def bootstrap_interval(values: np.ndarray, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values (S,)`` and its ``level`` percentile-bootstrap interval.

    ``lo, hi`` are the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the means of ``BOOTSTRAP_RESAMPLES``
    resamples (with replacement, from ``numpy.random.default_rng(seed)``). With one value, or all values equal,
    the interval is the mean itself.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0:
        return mean, mean, mean
    means = values[resamples(values.size, seed)].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(lo), float(hi)


@lru_cache(maxsize=4)
def resamples(size: int, seed: int = 0) -> np.ndarray:
    """The indices ``(BOOTSTRAP_RESAMPLES, size)`` that :func:`bootstrap_interval` resamples ``size`` values
    with, drawn from ``numpy.random.default_rng(seed)``: the same for every set of that size, so drawn once per
    size (a study's summary bootstraps thousands of sets of a few sizes; the draw was most of its time). Read-only.
    """
    indices = np.random.default_rng(seed).integers(0, size, size=(BOOTSTRAP_RESAMPLES, size))
    indices.flags.writeable = False
    return indices


def mean_interval(values: np.ndarray, level: float = LEVEL) -> dict[str, float]:
    """``{"mean", "lo", "hi"}`` of :func:`bootstrap_interval` (the form summaries store)."""
    mean, lo, hi = bootstrap_interval(values, level)
    return {"mean": mean, "lo": lo, "hi": hi}
