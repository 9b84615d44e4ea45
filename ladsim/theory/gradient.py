"""The LAD gradient (LAD_SPEC "practical LAD loss"): formula against autograd, and the ``c (x - 1)`` freedom.

* :func:`check_gradient` - ``grad_theta L_LAD = E_{pi_theta}[ f'(r exp(-u)) grad log pi_theta ]`` for softmax
  logits, i.e. component ``k`` equals ``pi_k (w_k - E_pi[w])`` with ``w = f'(r exp(-u))``, against torch
  autograd through the core's ``lad_loss`` (exact expectation, ``weights = pi_old``).
* :func:`check_linear_term` - adding ``c (x - 1)`` to ``f`` leaves the exact gradient unchanged and changes
  the variance of the sampled estimate (measured exactly by enumeration and by Monte Carlo).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ladsim.divergences import DIVERGENCES, Divergence, get_divergence
from ladsim.losses import lad_loss, lad_terms
from ladsim.theory.common import DTYPE, CheckResult, as_rng, log_dirichlet

WeightArg = Callable[[Tensor, Tensor, Tensor], Tensor]


def lad_weight_arg(logp: Tensor, logp_old: Tensor, u: Tensor) -> Tensor:
    """``log(r exp(-u)) = logp - logp_old - u``: where the LAD gradient weight ``f'`` is evaluated."""
    return logp - logp_old - u


def formula_gradient(theta: Tensor, logp_old: Tensor, adv: Tensor, eta: float, div: Divergence,
                     weight_arg: WeightArg = lad_weight_arg) -> Tensor:
    """``E_{pi_theta}[ f'(r e^{-u}) grad_theta log pi_theta ]`` for logits ``theta (n,)``; returns ``(n,)``."""
    logp = torch.log_softmax(theta, -1)
    pi = torch.exp(logp)
    w = div.derivative(weight_arg(logp, logp_old, adv / eta))
    return pi * (w - (pi * w).sum())


def autograd_gradient(theta: Tensor, logp_old: Tensor, adv: Tensor, eta: float, div: Divergence) -> Tensor:
    t = theta.detach().clone().requires_grad_(True)
    loss = lad_loss(torch.log_softmax(t, -1), logp_old, adv, eta=eta, div=div, weights=torch.exp(logp_old))
    (g,) = torch.autograd.grad(loss, t)
    return g


def _instance(rng: np.random.Generator, n_min: int, n_max: int, near_old: bool = False):
    """Random ``(n, log pi_old, A, eta, theta)``; ``near_old``: theta = log pi_old + N(0, 0.5) (a policy
    inside a trust region, where a sampled estimate's variance is finite in practice), else N(0, 1.5)."""
    n = int(rng.integers(n_min, n_max + 1))
    alphas = [1.0, 5.0] if near_old else [0.3, 1.0, 5.0]
    lpo_np = log_dirichlet(rng, float(rng.choice(alphas)), n)
    lpo = torch.tensor(lpo_np, dtype=DTYPE)
    adv = torch.tensor(rng.standard_normal(n), dtype=DTYPE)
    eta = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    theta = torch.tensor(lpo_np + rng.normal(0, 0.5, n) if near_old else rng.normal(0, 1.5, n), dtype=DTYPE)
    return n, lpo, adv, eta, theta


def check_gradient(seed: int | np.random.Generator = 0, n_instances: int = 20, n_min: int = 2, n_max: int = 40,
                   divs: tuple[str, ...] = tuple(DIVERGENCES), div_override: dict | None = None,
                   weight_arg: WeightArg = lad_weight_arg, tol: float = 1e-10) -> CheckResult:
    """The gradient formula against autograd for every generator; error = ``max |g_formula - g_auto| /
    max |g_auto|`` (relative, per instance and generator). ``div_override`` plants a generator (e.g. with a
    wrong derivative) for the formula side only; autograd always differentiates the registry's generator."""
    rng = as_rng(seed)
    worst, per, failures = 0.0, {}, []
    for i in range(n_instances):
        n, lpo, adv, eta, theta = _instance(rng, n_min, n_max)
        for key in divs:
            ref = get_divergence(key)
            div = (div_override or {}).get(key, ref)
            g_f = formula_gradient(theta, lpo, adv, eta, div, weight_arg)
            g_a = autograd_gradient(theta, lpo, adv, eta, ref)
            e = float((g_f - g_a).abs().max() / g_a.abs().max().clamp(min=1e-300))
            per[key] = max(per.get(key, 0.0), e)
            worst = max(worst, e)
            if e > tol and len(failures) < 5:
                failures.append(f"instance {i} (n={n}), {key}: relative gradient error {e:.2e}")
    return CheckResult(
        name="gradient",
        claim="grad L_LAD = E_pi[f'(r exp(-u)) grad log pi] (all 8 generators, vs autograd)",
        passed=worst <= tol, worst_error=worst, tolerance=tol, instances=n_instances * len(divs),
        metric="max|formula - autograd| / max|autograd|",
        details={"worst_by_generator": per}, failures=failures)


def with_linear_term(div: Divergence, c: float) -> Divergence:
    """``f(x) + c (x - 1)``: perspective ``q f(p/q) + c (p - q)``, derivative ``f'(x) + c``."""
    return Divergence(key=f"{div.key}+{c:g}(x-1)", name=div.name, formula=f"{div.formula} + {c:g}(x - 1)",
                      perspective=lambda lp, lq: div.perspective(lp, lq) + c * (torch.exp(lp) - torch.exp(lq)),
                      derivative=lambda t: div.derivative(t) + c, bounded=div.bounded,
                      strictly_convex=div.strictly_convex, paper_class=div.paper_class)


def per_sample_gradients(theta: Tensor, logp_old: Tensor, adv: Tensor, eta: float, div: Divergence) -> Tensor:
    """Row ``y``: ``grad_theta [exp(u_y) f(r_y exp(-u_y))]``, the gradient one sample ``y ~ pi_old`` contributes
    to the sampled loss; shape ``(n, n)``."""
    def terms(t: Tensor) -> Tensor:
        return lad_terms(torch.log_softmax(t, -1), logp_old, adv, eta=eta, div=div)
    return torch.autograd.functional.jacobian(terms, theta)


def check_linear_term(seed: int | np.random.Generator = 0, n_instances: int = 6, n_min: int = 3, n_max: int = 20,
                      divs: tuple[str, ...] = ("js", "hd", "kl", "pearson"), cs: tuple[float, ...] = (-1.0, 1.0, 2.0),
                      add_term: Callable[[Divergence, float], Divergence] = with_linear_term,
                      group: int = 16, reps: int = 2000, tol: float = 1e-12, min_var_change: float = 0.01,
                      mc_rel_tol: float = 0.25) -> CheckResult:
    """``f -> f + c (x - 1)``: exact gradient unchanged; sampled-estimate variance changed (measured).

    Exact gradient: ``sum_y pi_old(y) grad term_y`` for ``f`` and for ``f + c(x-1)``; error = relative max
    difference (must be ``<= tol``). Variance of the estimate from a group of ``group`` samples of
    ``pi_old``: exact (enumeration) ``tr Cov / group``; Monte Carlo over ``reps`` groups through the core's
    sample-mean ``lad_loss`` (must agree with the exact value within ``mc_rel_tol``). The check also
    requires that the variance changes by at least ``min_var_change`` (relative) for some ``c`` on every
    instance: the linear term is not free for a sampled estimate.
    """
    rng = as_rng(seed)
    worst, worst_mc, min_change, failures, rows = 0.0, 0.0, np.inf, [], []
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    for i in range(n_instances):
        n, lpo, adv, eta, theta = _instance(rng, n_min, n_max, near_old=True)
        key = divs[i % len(divs)]
        base = get_divergence(key)
        p_old = torch.exp(lpo)
        jac0 = per_sample_gradients(theta, lpo, adv, eta, base)
        g0 = p_old @ jac0
        var0 = float((p_old @ (jac0 ** 2).sum(1) - (g0 ** 2).sum()) / group)
        change = 0.0
        for c in (0.0,) + tuple(cs):
            div = add_term(base, c) if c else base
            jac = per_sample_gradients(theta, lpo, adv, eta, div)
            g = p_old @ jac
            e = float((g - g0).abs().max() / g0.abs().max().clamp(min=1e-300))
            worst = max(worst, e)
            var = float((p_old @ (jac ** 2).sum(1) - (g ** 2).sum()) / group)
            # Monte Carlo through the core: gradient of the sample-mean loss over `group` draws from pi_old
            idx = torch.multinomial(p_old.expand(reps, n), group, replacement=True, generator=gen)
            t = theta.detach().expand(reps, n).clone().requires_grad_(True)  # one copy of theta per group
            lp = torch.log_softmax(t, -1).gather(1, idx)
            loss = lad_loss(lp, lpo[idx], adv[idx], eta=eta, div=div)  # (reps,): each group's sample mean
            (est,) = torch.autograd.grad(loss.sum(), t)  # (reps, n): each group's gradient estimate
            mc_var = float(est.var(0, unbiased=True).sum())
            rel_mc = abs(mc_var - var) / max(var, 1e-300)
            worst_mc = max(worst_mc, rel_mc)
            if c:
                change = max(change, abs(var - var0) / max(var0, 1e-300))
            rows.append({"instance": i, "div": key, "c": c, "exact_grad_rel_change": e, "var_exact": var,
                         "var_mc": mc_var})
            if e > tol and len(failures) < 5:
                failures.append(f"instance {i} ({key}, c={c:g}): exact gradient changed by {e:.2e}")
            if rel_mc > mc_rel_tol and len(failures) < 5:
                failures.append(f"instance {i} ({key}, c={c:g}): MC variance {mc_var:.3g} vs exact {var:.3g}")
        min_change = min(min_change, change)
        if change < min_var_change and len(failures) < 5:
            failures.append(f"instance {i} ({key}): variance unchanged by the linear term ({change:.2e})")
    passed = worst <= tol and worst_mc <= mc_rel_tol and min_change >= min_var_change
    return CheckResult(
        name="linear_term",
        claim="f + c(x-1): exact gradient unchanged, sampled-gradient variance changed",
        passed=passed, worst_error=worst, tolerance=tol, instances=n_instances * (1 + len(cs)),
        metric="max relative change of the exact gradient (variance numbers in details)",
        details={"min_relative_variance_change": float(min_change), "required_variance_change": min_var_change,
                 "worst_mc_vs_exact_variance_rel": worst_mc, "group": group, "reps": reps, "rows": rows},
        failures=failures)
