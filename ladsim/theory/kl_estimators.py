"""Schulman's KL estimators k1, k2, k3 (OBJECTIVES.md "KL penalty"): Monte-Carlo bias and spread.

Estimators of ``KL(q || p)`` from samples ``x ~ q``, with the log-ratio ``l = log p(x) - log q(x)`` and
``r = exp(l)`` (docs/theory.md section 5)::

    k1 = -l        k2 = l^2 / 2        k3 = (r - 1) - l

For ``q = N(0, 1)`` and ``p = N(mu, 1)``: ``l = mu x - mu^2/2 ~ N(-mu^2/2, mu^2)``, ``KL = mu^2/2``, and the
means and standard deviations of all three estimators have closed forms (:func:`derived_moments`).
:func:`check_kl_estimators` draws ``n`` samples from ``q``, measures mean and standard deviation of each
estimator, and compares them with the closed forms in units of their Monte-Carlo standard errors. The
estimators are the library's own, :func:`ladsim.losses.kl_terms` (float64 torch), so the check tests the code
GRPO's KL penalty calls; the closed forms are the independent side. The sampler and the estimator formulas are
injectable for mutation tests.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from ladsim.losses import kl_terms
from ladsim.theory.common import CheckResult, as_rng

Estimator = Callable[[np.ndarray], np.ndarray]
Sampler = Callable[[np.random.Generator, float, int], np.ndarray]


def _library(name: str) -> Estimator:
    """Estimator ``name`` as computed by the library's :func:`ladsim.losses.kl_terms` (float64 torch).

    ``kl_terms`` takes ``t = logp - logp_ref`` with samples from the policy ``q``, i.e. ``t = -l``; it is called
    with ``logp = -l``, ``logp_ref = 0``, so the check measures the code GRPO's KL penalty runs.
    """

    def estimator(log_ratio: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.negative(log_ratio, dtype=np.float64))
        return kl_terms(t, torch.zeros_like(t), name).numpy()

    estimator.__name__ = estimator.__qualname__ = name
    estimator.__doc__ = f"``{name}`` of ``ladsim.losses.kl_terms`` on ``t = -log_ratio``; shape as ``log_ratio``."
    return estimator


k1 = _library("k1")  # -l
k2 = _library("k2")  # l^2 / 2
k3 = _library("k3")  # (r - 1) - l = expm1(l) - l

ESTIMATORS: dict[str, Estimator] = {"k1": k1, "k2": k2, "k3": k3}


def sample_q(rng: np.random.Generator, mu: float, n: int) -> np.ndarray:
    """``n`` draws of ``x ~ q = N(0, 1)`` (``mu`` unused: ``q`` does not depend on it)."""
    return rng.standard_normal(n)


def gaussian_log_ratio(x: np.ndarray, mu: float) -> np.ndarray:
    """``log N(x; mu, 1) - log N(x; 0, 1) = mu x - mu^2/2``."""
    return mu * x - 0.5 * mu**2


def derived_moments(mu: float) -> dict[str, tuple[float, float]]:
    """Closed-form ``(mean, std)`` of each estimator under ``x ~ N(0, 1)``, ``p = N(mu, 1)``.

    With ``l ~ N(m, s^2)``, ``m = -mu^2/2``, ``s^2 = mu^2`` (docs/theory.md (5.2)):
    ``k1``: ``(mu^2/2, mu)``; ``k2``: mean ``(s^2 + m^2)/2 = mu^2/2 + mu^4/8``, variance
    ``(4 m^2 s^2 + 2 s^4)/4 = mu^6/4 + mu^4/2``; ``k3``: mean ``E[r] - 1 - m = mu^2/2`` (``E[r] = 1``), variance
    ``Var r + Var l - 2 Cov(r, l) = (e^{mu^2} - 1) + mu^2 - 2 mu^2`` (Stein: ``Cov(e^l, l) = s^2 E[e^l]``).
    """
    kl = 0.5 * mu**2
    return {"k1": (kl, abs(mu)),
            "k2": (kl + mu**4 / 8, float(np.sqrt(mu**6 / 4 + mu**4 / 2))),
            "k3": (kl, float(np.sqrt(np.expm1(mu**2) - mu**2)))}


def moments_from_sums(sums: np.ndarray, n: int, shift: float) -> tuple[float, float, float, float]:
    """Mean, standard deviation and their Monte-Carlo standard errors from power sums.

    ``sums[p-1] = sum (v - shift)^p`` for ``p = 1..4`` over ``n`` samples (a fixed shift near the mean avoids
    cancellation). ``se(mean) = std / sqrt(n)``; ``se(std) = sqrt((mu4 - var^2) / n) / (2 std)`` (delta method).
    """
    e1, e2, e3, e4 = np.asarray(sums, float) / n
    var = e2 - e1**2
    mu4 = e4 - 4 * e1 * e3 + 6 * e1**2 * e2 - 3 * e1**4
    std = float(np.sqrt(var))
    return shift + e1, std, std / np.sqrt(n), float(np.sqrt(max(mu4 - var**2, 0.0) / n) / (2 * std))


def check_kl_estimators(seed: int | np.random.Generator = 0, n_samples: int = 10**6, chunk: int = 10**6,
                        mus: tuple[float, ...] = (0.1, 1.0), estimators: Mapping[str, Estimator] | None = None,
                        sampler: Sampler = sample_q, z: float = 5.0) -> CheckResult:
    """Bias and spread of k1, k2, k3 as estimators of ``KL(N(0,1) || N(mu,1))`` from ``n_samples`` draws of q.

    For each ``mu`` all estimators are evaluated on the same draws. Error metric: the z-score
    ``|measured - derived| / (Monte-Carlo standard error)`` of each estimator's mean and of its standard
    deviation against :func:`derived_moments`; the check passes when every z-score is ``<= z`` (this contains
    "k1 and k3 are unbiased within Monte-Carlo error" and "k2's bias is mu^2/4 of the KL") and, at every ``mu``,
    k3's measured standard deviation is below k1's. ``z = 5``: twelve z-scores per run, each ``N(0, 1)`` when the
    formulas are right (measured in docs/theory.md section 5), so a false alarm has probability about 1e-5.
    """
    rng = as_rng(seed)
    ests = dict(ESTIMATORS if estimators is None else estimators)
    table, failures, worst = [], [], 0.0
    for mu in mus:
        kl_true = 0.5 * mu**2
        derived = derived_moments(mu)
        shift = {key: derived[key][0] if key in derived else 0.0 for key in ests}
        sums = {key: np.zeros(4) for key in ests}
        for start in range(0, n_samples, chunk):  # chunks bound the memory; every estimator sees the same draws
            lr = gaussian_log_ratio(sampler(rng, mu, min(chunk, n_samples - start)), mu)
            for key, fn in ests.items():
                v = fn(lr) - shift[key]
                v2 = v * v
                sums[key] += [v.sum(), v2.sum(), (v2 * v).sum(), (v2 * v2).sum()]
        stds = {}
        for key in ests:
            mean, std, se_mean, se_std = moments_from_sums(sums[key], n_samples, shift[key])
            stds[key] = std
            row = {"mu": mu, "true_kl": kl_true, "estimator": key, "bias_over_kl": (mean - kl_true) / kl_true,
                   "std_over_kl": std / kl_true}
            if key in derived:
                m_d, s_d = derived[key]
                z_mean, z_std = abs(mean - m_d) / se_mean, abs(std - s_d) / se_std
                worst = max(worst, z_mean, z_std)
                row.update({"bias_over_kl_derived": (m_d - kl_true) / kl_true, "std_over_kl_derived": s_d / kl_true,
                            "z_mean": z_mean, "z_std": z_std})
                if z_mean > z:
                    failures.append(f"mu={mu:g} {key}: mean {mean:.6g} vs derived {m_d:.6g} ({z_mean:.1f} standard "
                                    f"errors)")
                if z_std > z:
                    failures.append(f"mu={mu:g} {key}: std {std:.6g} vs derived {s_d:.6g} ({z_std:.1f} standard "
                                    "errors)")
            table.append(row)
        if "k1" in stds and "k3" in stds and not stds["k3"] < stds["k1"]:
            failures.append(f"mu={mu:g}: k3's std {stds['k3']:.4g} is not below k1's {stds['k1']:.4g}")
    return CheckResult(
        name="kl_estimators",
        claim="k1, k3 unbiased for KL(q||p), k2 biased by mu^2/4 KL; k3 spread < k1's (MC, Gaussians)",
        passed=not failures, worst_error=worst, tolerance=z, instances=len(mus) * len(ests),
        metric="max |measured - derived| / MC standard error, over means and stds",
        details={"n_samples": n_samples, "mus": list(mus), "table": table}, failures=failures)
