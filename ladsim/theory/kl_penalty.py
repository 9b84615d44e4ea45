"""GRPO + beta * k on the bandit, on-policy with exact expectations (OBJECTIVES.md "KL penalty"; docs/theory.md
section 7): the expected-gradient identities of the KL estimators as losses, and the fixed points they imply.

(a) With ``pi_old = pi_theta`` (weights and samples held fixed, gradient through ``logp`` only)::

    grad E[k1] = 0,   grad E[k2] = grad KL(pi || pi_ref),   grad E[k3] = grad KL(pi_ref || pi),
    k3+: the value of k3, the gradient of k2.

(b) Hence the fixed points of ``maximize E_pi[R] - beta * KL``::

    k2, k3+:  pi = pi_ref exp(R/beta) / Z           k3:  pi = beta pi_ref / (lambda - R),  lambda > max R
    k1:       no regularization (the trajectory of plain GRPO, collapsing onto the best arm).

Everything goes through the project's code: the penalty is the registry's :class:`KLPenalty` composed with the
registered ``grpo`` objective by ``objective_loss`` (identities, stationarity at the closed forms), and the
trained policies come from the bandit trainer (``exact`` mode, ``refresh_every = 1``, SGD). A wrong estimator in
``ladsim.objectives`` therefore fails this check (tests/test_theory_facts.py plants one). The closed forms are
injectable for mutation tests.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import train_objective
from ladsim.objectives import Batch, KLPenalty, make_params, objective_loss
from ladsim.theory.common import DTYPE, CheckResult, as_rng, log_dirichlet, log_softmax

FixedPoint = Callable[[str, np.ndarray, np.ndarray, float], "np.ndarray | None"]


def reverse_kl(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """``KL(pi || pi_ref) = sum_y pi (log pi - log pi_ref)``, differentiable in ``logp``; shapes ``(..., n)``."""
    return (torch.exp(logp) * (logp - logp_ref)).sum(-1)


def forward_kl(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """``KL(pi_ref || pi) = sum_y pi_ref (log pi_ref - log pi)``."""
    return (torch.exp(logp_ref) * (logp_ref - logp)).sum(-1)


# which true divergence each estimator's expected gradient follows (None: zero gradient); abs's, E[sign(t) grad
# log pi], is no divergence's and is left out
IDENTITY: dict[str, Callable[[Tensor, Tensor], Tensor] | None] = {
    "k1": None, "k2": reverse_kl, "k3": forward_kl, "k3+": reverse_kl, "k1+": reverse_kl, "abs+": reverse_kl}


def on_policy_loss(theta: Tensor, log_ref: Tensor, rewards: Tensor, beta: float, estimator: str | None) -> Tensor:
    """The project's GRPO + ``beta * k`` loss, on-policy with exact expectations; ``theta (..., n)`` -> ``(...)``.

    ``pi_old = pi_theta`` (detached): weights ``pi_old``, advantages ``R - E_{pi_old}[R]``, no clip, the
    registry's ``objective_loss("grpo", ..., kl=KLPenalty(beta, estimator))`` (``estimator = None``: no penalty).
    """
    logp = torch.log_softmax(theta, -1)
    logp_old = logp.detach()
    weights = torch.exp(logp_old)
    adv = rewards - (weights * rewards).sum(-1, keepdim=True)
    kl = None if estimator is None else KLPenalty(beta, estimator)
    batch = Batch(logp, logp_old, adv, weights=weights, logp_ref=log_ref)
    return objective_loss("grpo", batch, make_params("grpo"), kl=kl)


def _grad(fn: Callable[[Tensor], Tensor], theta: np.ndarray) -> np.ndarray:
    t = torch.tensor(theta, dtype=DTYPE, requires_grad=True)
    (g,) = torch.autograd.grad(fn(t).sum(), t)
    return g.numpy()


def identity_errors(theta: np.ndarray, log_ref: np.ndarray) -> dict[str, float]:
    """Per estimator: ``max |grad E[k] - grad D| / S`` (the expected penalty through the project's loss with zero
    advantages, ``beta = 1``) with ``D`` from :data:`IDENTITY` (0 for k1) and the scale
    ``S = max(|grad KL(pi||ref)|_inf, |grad KL(ref||pi)|_inf)``; and ``"k3+ value"``:
    ``|E[k3+] - E[k3]| / E[k3]``."""
    ref = torch.tensor(log_ref, dtype=DTYPE)
    zero = torch.zeros_like(ref)
    g_rev = _grad(lambda t: reverse_kl(torch.log_softmax(t, -1), ref), theta)
    g_fwd = _grad(lambda t: forward_kl(torch.log_softmax(t, -1), ref), theta)
    scale = max(np.abs(g_rev).max(), np.abs(g_fwd).max(), 1e-300)
    out = {}
    for est, div in IDENTITY.items():
        g = _grad(lambda t, e=est: on_policy_loss(t, ref, zero, 1.0, e), theta)
        target = 0.0 if div is None else (g_rev if div is reverse_kl else g_fwd)
        out[est] = float(np.abs(g - target).max() / scale)
    th = torch.tensor(theta, dtype=DTYPE)
    v3, v3p = (float(on_policy_loss(th, ref, zero, 1.0, e)) for e in ("k3", "k3+"))
    out["k3+ value"] = abs(v3p - v3) / max(abs(v3), 1e-300)
    return out


# --- closed-form fixed points --------------------------------------------------------------------

def fixed_point_reverse(log_ref: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """log of ``pi_ref exp(R/beta) / Z``: the maximizer of ``E_pi[R] - beta KL(pi || pi_ref)`` (k2, k3+)."""
    return log_softmax(log_ref + rewards / beta)


def fixed_point_forward(log_ref: np.ndarray, rewards: np.ndarray, beta: float) -> tuple[np.ndarray, float]:
    """``(log pi, lambda)`` with ``pi = beta pi_ref / (lambda - R)``, the maximizer of
    ``E_pi[R] - beta KL(pi_ref || pi)`` (k3).

    ``s(lambda) = sum_y beta pi_ref / (lambda - R)`` decreases from ``+inf`` (``lambda -> max R``) to 0, so
    ``s(lambda) = 1`` has one root above ``max R``: bracketed by ``lo = max R + beta pi_ref(y*) / 2``
    (``s(lo) >= 2`` from the best arm ``y*`` alone) and ``hi = max R + beta`` (``s(hi) <= sum pi_ref = 1``).
    """
    ref = np.exp(log_ref)
    j = int(np.argmax(rewards))
    top = float(rewards[j])

    def s(lam: float) -> float:
        return float(np.sum(beta * ref / (lam - rewards))) - 1.0

    lam = brentq(s, top + 0.5 * beta * ref[j], top + beta, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    log_pi = np.log(beta) + log_ref - np.log(lam - rewards)
    return log_pi - np.log(np.exp(log_pi).sum()), float(lam)  # renormalize away brentq's last ulp


def fixed_point(estimator: str, log_ref: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray | None:
    """The closed-form fixed point for ``estimator`` (``None`` for k1: no fixed point inside the simplex)."""
    if estimator in ("k2", "k3+", "k1+", "abs+"):
        return fixed_point_reverse(log_ref, rewards, beta)
    if estimator == "k3":
        return fixed_point_forward(log_ref, rewards, beta)[0]
    return None


def stationarity_error(estimator: str, log_pi: np.ndarray, log_ref: np.ndarray, rewards: np.ndarray,
                       beta: float) -> float:
    """``max |grad_theta loss| / max |pi (R - E_pi R)|`` of the project's on-policy GRPO + ``beta k`` loss at the
    logits ``log_pi``: 0 at a fixed point (relative to the size of the GRPO gradient there)."""
    ref, rew = torch.tensor(log_ref, dtype=DTYPE), torch.tensor(rewards, dtype=DTYPE)
    g = _grad(lambda t: on_policy_loss(t, ref, rew, beta, estimator), log_pi)
    pi = np.exp(log_pi)
    return float(np.abs(g).max() / max(np.abs(pi * (rewards - pi @ rewards)).max(), 1e-300))


def random_bandit(rng: np.random.Generator, n_min: int, n_max: int) -> tuple[tuple[float, ...], str]:
    """A random prior (Dirichlet, alpha = 5) and a random two-bump ``mixture:`` reward string over
    ``n`` arms (means uniform over the arms, widths 0.5..2 arms, heights 0.3..1)."""
    n = int(rng.integers(n_min, n_max + 1))
    prior = tuple(np.exp(log_dirichlet(rng, 5.0, n)).tolist())
    comps = [f"{rng.uniform(0, n - 1):.6f}/{rng.uniform(0.5, 2.0):.6f}/{rng.uniform(0.3, 1.0):.6f}"
             for _ in range(2)]
    return prior, "mixture:" + ",".join(comps)


def train_bandit(prior: tuple[float, ...], reward: str, beta: float, estimator: str | None, steps: int, lr: float,
                 seeds: int, seed: int) -> np.ndarray:
    """Final policies ``(seeds, n)`` of the project's bandit trainer: GRPO + ``beta * k`` (``estimator = None``:
    plain GRPO), exact expectations, on-policy (``refresh_every = 1``), SGD, starts ``log pi_ref + N(0, 1)``."""
    cfg = BanditConfig(arms=len(prior), reward=reward, objectives=("grpo",), steps=steps, lr=lr, optimizer="sgd",
                       mode="exact", refresh_every=1, prior=prior, init_std=1.0, seeds=seeds, seed=seed,
                       log_every=steps, kl=estimator, kl_beta=beta if estimator else 0.001)  # no penalty: no beta
    return train_objective(cfg, "grpo")[1]


def check_kl_penalty_fixed_points(seed: int | np.random.Generator = 0, n_identity: int = 20, n_train: int = 3,
                                  n_min: int = 3, n_max: int = 12, betas: tuple[float, ...] = (1.0, 1.5),
                                  steps: int = 1500, lr: float = 1.0, seeds: int = 4,
                                  fixed_point_fn: FixedPoint = fixed_point, identity_tol: float = 1e-10,
                                  stationarity_tol: float = 1e-10, distance_tol: float = 1e-8,
                                  collapse_min: float = 0.9) -> CheckResult:
    """GRPO + beta * k, on-policy with exact expectations, through the project's KL penalty and trainer.

    (a) ``n_identity`` random ``(pi_theta, pi_ref)`` pairs (``n`` log-uniform in ``[n_min, n_max]``, ``pi_ref``
    Dirichlet, ``theta = log pi_ref + N(0, sigma^2)``, sigma in {0.3, 1}): :func:`identity_errors` ``<=
    identity_tol`` for every estimator. (b) ``n_train`` random bandits (:func:`random_bandit`, ``beta`` from
    ``betas``): the project's loss is stationary at the closed-form fixed point (:func:`stationarity_error` ``<=
    stationarity_tol``, k2, k3, k3+), and the trainer, from ``seeds`` random starts, ends within ``distance_tol``
    (max abs over arms) of it; k1's runs equal plain GRPO's to 1e-12 and collapse (at least ``collapse_min`` of
    the mass on one arm: the best one eventually, but from a random start GRPO may first sit on another for
    long). ``worst_error`` is the largest identity or stationarity error (tolerance 1e-10); the trained
    distances are in the details. Tolerances: docs/theory.md section 7.
    """
    rng = as_rng(seed)
    failures, id_worst, per_est = [], 0.0, {}
    for i in range(n_identity):
        n = int(np.round(np.exp(rng.uniform(np.log(n_min), np.log(n_max)))))
        log_ref = log_dirichlet(rng, float(rng.choice([1.0, 5.0])), n)
        theta = log_ref + rng.normal(0.0, float(rng.choice([0.3, 1.0])), n)
        for key, e in identity_errors(theta, log_ref).items():
            per_est[key] = max(per_est.get(key, 0.0), e)
            id_worst = max(id_worst, e)
            if e > identity_tol and len(failures) < 5:
                failures.append(f"identity instance {i} (n={n}), {key}: relative gradient error {e:.2e}")
    st_worst, dist_worst, separation, k1_rows, train_rows = 0.0, 0.0, np.inf, [], []
    for i in range(n_train):
        prior, reward = random_bandit(rng, n_min, n_max)
        beta = float(betas[i % len(betas)])
        log_ref = np.log(np.asarray(prior) / np.sum(prior))
        rewards = BanditConfig(arms=len(prior), reward=reward, prior=prior).reward_spec().expected_rewards()
        run_seed = int(rng.integers(2**31))
        fps = {}
        for est in ("k2", "k3", "k3+"):
            lp = fixed_point_fn(est, log_ref, rewards, beta)
            fps[est] = np.exp(lp)
            st = stationarity_error(est, lp, log_ref, rewards, beta)
            st_worst = max(st_worst, st)
            final = train_bandit(prior, reward, beta, est, steps, lr, seeds, run_seed)
            dist = float(np.abs(final - fps[est]).max())
            dist_worst = max(dist_worst, dist)
            train_rows.append({"instance": i, "n": len(prior), "beta": beta, "estimator": est,
                               "stationarity": st, "distance": dist})
            if st > stationarity_tol and len(failures) < 5:
                failures.append(f"bandit {i} (n={len(prior)}, beta={beta:g}), {est}: the loss is not stationary at "
                                f"the closed form (relative gradient {st:.2e})")
            if dist > distance_tol and len(failures) < 5:
                failures.append(f"bandit {i} (n={len(prior)}, beta={beta:g}), {est}: trained policy {dist:.2e} "
                                "from the closed form")
        separation = min(separation, float(np.abs(fps["k2"] - fps["k3"]).max()))
        k1 = train_bandit(prior, reward, beta, "k1", steps, lr, seeds, run_seed)
        plain = train_bandit(prior, reward, beta, None, steps, lr, seeds, run_seed)
        same, top = float(np.abs(k1 - plain).max()), float(k1.max(-1).min())
        k1_rows.append({"instance": i, "max_abs_k1_minus_plain": same, "top_arm_mass_min": top,
                        "best_arm_mass": k1[:, int(np.argmax(rewards))].tolist(),
                        "k2_fixed_point_top_mass": float(fps["k2"].max())})
        if same > 1e-12 and len(failures) < 5:
            failures.append(f"bandit {i}: GRPO + k1 differs from plain GRPO by {same:.2e}")
        if top < collapse_min and len(failures) < 5:
            failures.append(f"bandit {i}: GRPO + k1 keeps only {top:.3f} on its top arm after {steps} steps")
    worst = max(id_worst, st_worst)
    return CheckResult(
        name="kl_penalty_fixed_points",
        claim="on-policy GRPO+beta*k: grad E[k1]=0, E[k2],E[k3+]->rev KL, E[k3]->fwd KL; trained fixed points",
        passed=not failures, worst_error=worst, tolerance=max(identity_tol, stationarity_tol),
        instances=n_identity * len(IDENTITY) + n_train * 5,
        metric="max relative gradient error: identities (a) and stationarity at the closed forms (b)",
        details={"identity_worst_by_estimator": per_est, "stationarity_worst": st_worst,
                 "trained_distance_worst": dist_worst, "distance_tol": distance_tol,
                 "min_separation_k2_vs_k3_fixed_points": separation, "steps": steps, "lr": lr, "seeds": seeds,
                 "train": train_rows, "k1": k1_rows},
        failures=failures)
