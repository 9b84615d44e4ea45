"""Theorem B.1, as derived in docs/theory.md section 4: practical LAD is an O(delta) gradient surrogate.

Statement checked. Let ``pi_old`` have full support, ``A`` be centred under it (``E_{pi_old}[A] = 0``), and
``eta = eta(delta)`` be fixed by ``KL(pi* || pi_old) = delta`` (Lemma 3.1), ``pi* = pi_old e^u / Z``,
``Z = E_{pi_old}[e^u]``. Let ``L_pop(pi) = D_f(pi || pi*)``, the theoretical loss with its partition functions
taken under ``pi_old`` (equal to the core's ``lad_theory_loss`` when ``pi_old`` is uniform, and to the core's
``lad_loss`` with advantages ``A - eta log Z`` in general). Then for softmax logits ``theta``

    sup_{pi in T_delta, pi != pi*}  || grad L_LAD(pi) - grad L_pop(pi) ||_2 / || grad L_pop(pi) ||_2
        = C_f delta + o(delta),   C_f = | 1 + f'''(1) / f''(1) |,

over the trust region ``T_delta = {pi : KL(pi || pi_old) <= delta}``. (``C_kl = 0``: for KL the two
gradients are identical.) Without the centring condition ``log Z = O(sqrt(delta))`` and the order drops
to 1/2; the check measures that too.

:func:`check_b1` measures the left-hand side on random instances over a grid of ``delta`` spanning three
decades, fits the log-log slope with a bootstrap interval, and compares slope and prefactor with the
derivation. Formula pieces (``log_partition``, ``expected_order``) are injectable for mutation tests.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import logsumexp

from ladsim.divergences import get_divergence
from ladsim.losses import lad_loss, lad_theory_loss
from ladsim.theory.common import DTYPE, CheckResult, as_rng, kl, log_dirichlet, log_softmax, slope_with_ci
from ladsim.theory.lemma31 import eta_for_delta

LogPartition = Callable[[np.ndarray, np.ndarray], float]

# C_f = |1 + f'''(1)/f''(1)| from the generators' formulas (docs/theory.md, section 4)
PREFACTOR = {"kl": 0.0, "rkl": 1.0, "jf": 0.5, "js": 0.5, "hd": 0.5, "pearson": 1.0, "neyman": 2.0}


def log_partition_old(log_pi_old: np.ndarray, u: np.ndarray) -> float:
    """``log Z = log E_{pi_old}[exp(u)]``."""
    return float(logsumexp(log_pi_old + u))


def _grad(loss_fn, theta: np.ndarray) -> np.ndarray:
    t = torch.tensor(theta, dtype=DTYPE, requires_grad=True)
    (g,) = torch.autograd.grad(loss_fn(torch.log_softmax(t, -1)), t)
    return g.numpy()


def trust_region_points(rng: np.random.Generator, log_pi_old: np.ndarray, delta: float, k: int) -> list[np.ndarray]:
    """``k`` log-policies ``softmax(log pi_old + s v)`` with random directions ``v`` and ``s`` set by brentq
    so that ``KL(pi || pi_old) = rho delta``, ``rho`` uniform in (0.05, 1]."""
    out = []
    for _ in range(k):
        v = rng.standard_normal(len(log_pi_old))
        rho = rng.uniform(0.05, 1.0)

        def g(s: float) -> float:
            return kl(log_softmax(log_pi_old + s * v), log_pi_old) - rho * delta

        hi = 1.0
        while g(hi) < 0:
            hi *= 2.0
        out.append(log_softmax(log_pi_old + brentq(g, 0.0, hi, xtol=1e-15) * v))
    return out


def relative_gradient_error(log_pi_old: np.ndarray, adv: np.ndarray, delta: float, key: str, points: list,
                            log_partition: LogPartition = log_partition_old, use_core_theory: bool = False
                            ) -> float:
    """``max`` over ``points`` of ``||grad L_LAD - grad L_pop|| / ||grad L_pop||`` (softmax logits).

    ``use_core_theory``: take ``grad L_pop`` from the core's ``lad_theory_loss`` (exact enumeration; equal to
    ``L_pop`` when ``pi_old`` is uniform) instead of ``lad_loss`` with advantages ``A - eta log Z``.
    """
    eta = eta_for_delta(log_pi_old, adv, delta)
    lz = log_partition(log_pi_old, adv / eta)
    t_old, t_adv = torch.tensor(log_pi_old, dtype=DTYPE), torch.tensor(adv, dtype=DTYPE)
    w = torch.exp(t_old)
    div = get_divergence(key)

    def prac(lp):
        return lad_loss(lp, t_old, t_adv, eta=eta, div=div, weights=w)

    def pop(lp):
        if use_core_theory:
            return lad_theory_loss(lp, t_old, t_adv, eta=eta, div=div)
        return lad_loss(lp, t_old, t_adv - eta * lz, eta=eta, div=div, weights=w)

    worst = 0.0
    for lp in points:
        gp, gt = _grad(prac, lp), _grad(pop, lp)
        worst = max(worst, float(np.linalg.norm(gp - gt) / max(np.linalg.norm(gt), 1e-300)))
    return worst


def _instances(rng: np.random.Generator, n_instances: int, n_min: int, n_max: int, centred: bool,
               uniform_every: int = 2):
    out = []
    for i in range(n_instances):
        n = int(rng.integers(n_min, n_max + 1))
        uniform = i % uniform_every == 0
        lpo = np.full(n, -np.log(n)) if uniform else log_dirichlet(rng, float(rng.choice([1.0, 5.0])), n)
        adv = rng.standard_normal(n)
        if centred:
            adv = adv - np.exp(lpo) @ adv
        else:
            adv = adv + 1.0 - np.exp(lpo) @ adv  # mean 1 under pi_old: the centring condition violated
        out.append((lpo, adv, uniform))
    return out


def check_b1(seed: int | np.random.Generator = 0, n_instances: int = 6, n_min: int = 3, n_max: int = 20,
             divs: tuple[str, ...] = ("js", "hd", "rkl", "jf", "pearson", "neyman"),
             deltas: np.ndarray | None = None, n_points: int = 6,
             log_partition: LogPartition = log_partition_old, expected_order: float = 1.0,
             slope_tol: float = 0.03, prefactor_rtol: float = 0.02, kl_tol: float = 1e-9,
             check_uncentred: bool = True, n_boot: int = 2000) -> CheckResult:
    """Theorem B.1 (derived form): relative gradient error of practical vs theoretical LAD is ``C_f delta``.

    For each instance (half with uniform ``pi_old``, where the theoretical gradient comes from the core's
    ``lad_theory_loss``; half Dirichlet, where it comes from ``lad_loss`` with advantages ``A - eta log Z``) and
    each strictly convex generator, the supremum over ``n_points`` random trust-region policies is measured at
    every ``delta`` of the grid (default 1e-5..1e-2, 7 points). Passes when: the pooled slope is within
    ``slope_tol`` of ``expected_order`` and its bootstrap interval meets that band; every generator's error at
    the smallest delta is within ``prefactor_rtol`` of ``C_f delta``; the KL gradients agree to ``kl_tol``.
    ``worst_error`` is ``|slope - expected_order|``. With ``check_uncentred`` the same is measured with
    ``E_{pi_old}[A] = 1`` and its slope reported (derived: 1/2).
    """
    # Tolerances measured (issue 12): over seeds 0..219 of the quick plan the worst |slope - 1| was 0.0150 and
    # the worst |error/(C_f delta) - 1| 0.0106 (full plan, seeds 0..2: 0.0048 and 0.0055); each tolerance is
    # 2x the worst measured value.
    rng = as_rng(seed)
    deltas = np.logspace(-5, -2, 7) if deltas is None else np.asarray(deltas, float)
    insts = _instances(rng, n_instances, n_min, n_max, centred=True)
    rows, labels, failures, prefactor_ratio, per_div = [], [], [], {}, {}
    kl_worst = 0.0
    for i, (lpo, adv, uniform) in enumerate(insts):
        pts = {d: trust_region_points(rng, lpo, d, n_points) for d in deltas}
        kl_worst = max(kl_worst, max(relative_gradient_error(lpo, adv, d, "kl", pts[d], log_partition, uniform)
                                     for d in deltas[:2]))
        for key in divs:
            errs = np.array([relative_gradient_error(lpo, adv, d, key, pts[d], log_partition, uniform)
                             for d in deltas])
            rows.append(errs)
            labels.append(key)
            ratio = errs[0] / (PREFACTOR[key] * deltas[0])
            lo_, hi_ = prefactor_ratio.get(key, (np.inf, -np.inf))
            prefactor_ratio[key] = (min(lo_, ratio), max(hi_, ratio))
    ys = np.maximum(np.array(rows), 1e-300)
    fit = slope_with_ci(deltas, ys, rng, n_boot=n_boot)
    for key in divs:
        sel = ys[[j for j, lab in enumerate(labels) if lab == key]]
        per_div[key] = slope_with_ci(deltas, sel, rng, n_boot=200)["slope"]
    err = abs(fit["slope"] - expected_order)
    if err > slope_tol:
        failures.append(f"slope {fit['slope']:.3f} vs derived order {expected_order} (tolerance {slope_tol})")
    if fit["hi"] < expected_order - slope_tol or fit["lo"] > expected_order + slope_tol:
        failures.append(f"bootstrap interval [{fit['lo']:.3f}, {fit['hi']:.3f}] misses the derived order")
    for key, (lo_, hi_) in prefactor_ratio.items():
        if not (1 - prefactor_rtol <= lo_ and hi_ <= 1 + prefactor_rtol):
            failures.append(f"{key}: error/(C_f delta) at delta={deltas[0]:g} in [{lo_:.3g}, {hi_:.3g}], "
                            f"derived 1 (C_f = {PREFACTOR[key]})")
    if kl_worst > kl_tol:
        failures.append(f"kl: gradients differ by {kl_worst:.2e} (derived: identical)")
    details = {"slope": fit["slope"], "ci95": [fit["lo"], fit["hi"]], "expected_order": expected_order,
               "slope_by_generator": per_div,
               "per_row_slope_range": [fit["per_instance_min"], fit["per_instance_max"]],
               "error_over_Cf_delta_at_smallest_delta": {k: list(v) for k, v in prefactor_ratio.items()},
               "kl_max_relative_difference": kl_worst, "deltas": [float(d) for d in deltas],
               "median_error_by_delta": {f"{d:.0e}": float(np.median(ys[:, j])) for j, d in enumerate(deltas)}}
    if check_uncentred:
        un = _instances(rng, max(2, n_instances // 2), n_min, n_max, centred=False)
        urows = []
        for lpo, adv, uniform in un:
            pts = {d: trust_region_points(rng, lpo, d, n_points) for d in deltas}
            for key in ("js", "hd"):
                urows.append([relative_gradient_error(lpo, adv, d, key, pts[d], log_partition, uniform)
                              for d in deltas])
        ufit = slope_with_ci(deltas, np.maximum(np.array(urows), 1e-300), rng, n_boot=n_boot)
        details["uncentred_slope"] = ufit["slope"]
        details["uncentred_ci95"] = [ufit["lo"], ufit["hi"]]
    return CheckResult(
        name="theorem_b1",
        claim="rel. gradient gap practical vs theoretical LAD on KL<=delta is C_f*delta",
        passed=not failures, worst_error=err, tolerance=slope_tol, instances=len(rows) * len(deltas),
        metric="|fitted log-log slope - 1| of sup_{T_delta} ||grad L_LAD - grad L_pop|| / ||grad L_pop||",
        details=details, failures=failures)
