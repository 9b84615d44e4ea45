"""The shared loss core: practical LAD, theoretical LAD and GRPO (LAD_SPEC).

Every function takes tensors of any leading shape ``(...)`` with the action (or sample, or token) axis last,
``(..., n)``, and broadcasts them against each other:

* ``logp``       log pi_theta(y), differentiable;
* ``logp_old``   log pi_old(y), the behaviour policy (no gradient is taken through it);
* ``advantages`` A(y).

Reductions over the last axis, chosen by the optional arguments:

* ``weights`` given: ``sum_y weights(y) * term(y)``. For exact expectations over an enumerable action set the
  weights are ``pi_old`` (they should sum to one over the axis);
* otherwise: the (masked) mean over the axis, the Monte-Carlo estimate from samples of ``pi_old``.

``mask`` (bool or 0/1, broadcastable) removes entries; a row whose entries are all masked contributes 0.

The ``*_terms`` functions return the elementwise summands (shape of the broadcast inputs) so that the LLM-scale
path can aggregate tokens with its own modes while computing exactly the same numbers. Half-precision inputs
are promoted to float32 before any arithmetic.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ladsim.divergences import Divergence, get_divergence


def _promote(*xs: Tensor | None) -> list[Tensor | None]:
    """Promote float16/bfloat16 tensors to float32 (accumulate in float32); leave others alone."""
    out = []
    for x in xs:
        if x is not None and x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        out.append(x)
    return out


def _check_inputs(**tensors: Tensor | None) -> None:
    """Types, shapes and the values that have a domain (``weights >= 0``, ``mask`` in {0, 1}).

    Raises ``TypeError`` for a non-tensor, ``ValueError`` naming the argument otherwise. An empty action axis
    is refused: the mean over no samples is undefined (it was NaN here and 0 in ``lad_theory_loss``).
    """
    for k, v in tensors.items():
        if v is not None and not isinstance(v, Tensor):
            raise TypeError(f"{k} must be a torch.Tensor, got {type(v).__name__}")
        if v is not None and k != "mask" and not torch.is_floating_point(v):
            raise ValueError(f"{k} must be a floating-point tensor, got dtype {v.dtype}")
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    try:
        shape = torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        raise ValueError(f"shapes do not broadcast: {shapes}") from None
    if len(shape) and shape[-1] == 0:
        raise ValueError(f"the inputs have an empty last (action) axis, shapes {shapes}: nothing to average")
    weights, mask = tensors.get("weights"), tensors.get("mask")
    if weights is not None and not bool((weights >= 0).all()):  # NaN fails `>= 0` too
        raise ValueError("weights must be finite and >= 0 (expectation weights such as pi_old)")
    if mask is not None and mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError("mask must hold only 0 and 1 (or be bool): a fractional mask would silently rescale "
                         "the mean; use weights for weighting")


def _check_nonneg(name: str, value, optional: bool = False) -> None:
    """A hyperparameter that must be a finite real ``>= 0`` (``None`` allowed when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number{' or None' if optional else ''}, "
                        f"got {type(value).__name__} {value!r}")
    if not 0.0 <= float(value) < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_grpo(eps_low, eps_high, beta) -> None:
    _check_nonneg("eps_low", eps_low, optional=True)
    _check_nonneg("eps_high", eps_high, optional=True)
    _check_nonneg("beta", beta)


def _check_lad(eta: float, div: str | Divergence) -> float:
    """Validate LAD's ``eta`` and generator ``div`` (before any arithmetic); return ``eta`` as a float."""
    eta = check_eta(eta)
    get_divergence(div)
    return eta


def check_eta(eta: float) -> float:
    """Validate ``eta`` (any real scalar, numpy scalars included) and return it as a Python float."""
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real):
        raise TypeError(f"eta must be a real number, got {type(eta).__name__} {eta!r}")
    if not 0.0 < float(eta) < math.inf:
        raise ValueError(f"eta must be a finite number > 0, got {eta!r}")
    return float(eta)


def _neutralize(mask: Tensor | None, *xs: Tensor | None) -> list[Tensor | None]:
    """Replace masked entries of the inputs by 0 *before* any arithmetic.

    ``reduce_actions`` zeroes masked summands with ``torch.where``, which fixes the value but not the gradient:
    a masked entry holding garbage (a ``-inf`` padding log-prob, an overflowing ratio) still yields
    ``0 * inf = nan`` in the backward of the summand. With the inputs zeroed there, the masked summands are
    finite (``f(1)``, ratio 1) and their gradient is exactly 0. Values of unmasked entries are unchanged.
    """
    if mask is None:
        return list(xs)
    shape = torch.broadcast_shapes(mask.shape, *(x.shape for x in xs if x is not None))
    keep = torch.broadcast_to(mask, shape) > 0
    return [None if x is None else torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
            for x in xs]


def reduce_actions(terms: Tensor, weights: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Reduce ``terms (..., n)`` over the last axis: weighted sum if ``weights`` else masked mean -> ``(...)``."""
    if mask is not None:
        mask = mask.to(terms.dtype)
        terms = torch.where(mask > 0, terms, torch.zeros_like(terms))
    if weights is not None:
        w = weights.to(terms.dtype)
        if mask is not None:
            w = w * mask
        return (w * terms).sum(-1)
    if mask is None:
        return terms.mean(-1)
    count = torch.broadcast_to(mask, terms.shape).sum(-1)
    return terms.sum(-1) / count.clamp(min=1.0)


# --- practical LAD --------------------------------------------------------------------------------

def lad_terms(logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eta: float,
              div: str | Divergence = "js") -> Tensor:
    """Summands of practical LAD: ``exp(u) f(r exp(-u))`` with ``u = A/eta``, ``r = pi/pi_old``.

    Computed as the perspective ``q f(p/q)`` at ``log p = logp - logp_old`` and ``log q = u``. Shape: the
    broadcast shape of the inputs.
    """
    _check_inputs(logp=logp, logp_old=logp_old, advantages=advantages)
    eta = _check_lad(eta, div)
    return _lad_terms(logp, logp_old, advantages, eta, div)


def _lad_terms(logp: Tensor, logp_old: Tensor, advantages: Tensor, eta: float, div: str | Divergence) -> Tensor:
    """``lad_terms`` on validated inputs (the public functions validate once, not once per layer)."""
    logp, logp_old, advantages = _promote(logp, logp_old, advantages)
    return get_divergence(div).perspective(logp - logp_old.detach(), advantages / eta)


def lad_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eta: float,
             div: str | Divergence = "js", weights: Tensor | None = None,
             mask: Tensor | None = None) -> Tensor:
    """Practical LAD loss (LAD_SPEC "practical LAD loss"), to minimize.

        L_LAD = E_{y ~ pi_old}[ exp(u(y)) f( r(y) exp(-u(y)) ) ],   u = A / eta,   r = exp(logp - logp_old).

    Its minimizer over the simplex is ``pi* = pi_old exp(A/eta) / Z`` (Lemma 3.2), reached without any
    partition function. With ``weights = pi_old`` over all actions it is the exact expectation; without weights
    it is the sample mean over the last axis (samples drawn from ``pi_old``).

    Shapes: inputs ``(..., n)`` (broadcastable); returns ``(...)``.
    """
    _check_inputs(logp=logp, logp_old=logp_old, advantages=advantages, weights=weights, mask=mask)
    eta = _check_lad(eta, div)
    logp, logp_old, advantages = _neutralize(mask, logp, logp_old, advantages)
    if weights is None:
        return reduce_actions(_lad_terms(logp, logp_old, advantages, eta, div), weights, mask)
    return _weighted_lad(logp, logp_old, advantages, eta, div, weights, mask)


def _weighted_lad(logp: Tensor, logp_old: Tensor, advantages: Tensor, eta: float, div: str | Divergence,
                  weights: Tensor, mask: Tensor | None) -> Tensor:
    """``sum_y w(y) q f(p/q)`` with the weight folded into the perspective's log-space arguments.

    The perspective is 1-homogeneous, ``w q f(p/q) = (w q) f((w p)/(w q))``, so each weighted summand is
    ``perspective(log p + log w, log q + log w)``: finite wherever the weighted summand is, where applying
    ``w`` after the perspective overflows first (Pearson/Neyman at ``|t|, |u| ~ 50`` in float32). Entries with
    ``w = 0`` (or masked) contribute exactly 0, value and gradient.
    """
    logp, logp_old, advantages = _promote(logp, logp_old, advantages)
    log_ratio = logp - logp_old.detach()
    w = weights.detach().to(log_ratio.dtype)
    if mask is not None:
        w = w * (mask > 0).to(w.dtype)
    live = w > 0
    log_w = torch.log(torch.where(live, w, torch.ones((), dtype=w.dtype, device=w.device)))
    terms = get_divergence(div).perspective(log_ratio + log_w, advantages / eta + log_w)
    return torch.where(live, terms, torch.zeros((), dtype=terms.dtype, device=terms.device)).sum(-1)


# --- theoretical LAD ------------------------------------------------------------------------------

def masked_log_normalize(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x - logsumexp(x)`` over the last axis, over unmasked entries only (masked entries -> -inf)."""
    if mask is None:
        return torch.log_softmax(x, dim=-1)
    x = x.masked_fill(torch.broadcast_to(mask, x.shape) <= 0, float("-inf"))
    return x - torch.logsumexp(x, dim=-1, keepdim=True)


def induced_log_distributions(log_ratio: Tensor, u: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(log P_pi, log P_A)`` of Lemma 3.1 over the last axis: ``log_ratio - logsumexp(log_ratio)`` and
    ``u - logsumexp(u)``, partition functions over the unmasked entries only; masked entries hold 0 (not
    ``-inf``, whose differences would be NaN). Inputs broadcast to one shape ``(..., n)``."""
    log_ratio, u = torch.broadcast_tensors(log_ratio, u)
    log_p_pi = masked_log_normalize(log_ratio, mask)
    log_p_a = masked_log_normalize(u, mask)
    if mask is not None:
        keep = torch.broadcast_to(mask, log_p_pi.shape) > 0
        log_p_pi = torch.where(keep, log_p_pi, torch.zeros_like(log_p_pi))
        log_p_a = torch.where(keep, log_p_a, torch.zeros_like(log_p_a))
    return log_p_pi, log_p_a


def log_softmax_backward(grad: Tensor, logp: Tensor) -> Tensor:
    """The backward of ``logp = x - logsumexp(x)`` over the last axis: ``dL/dx = g - exp(logp) sum(g)`` for
    ``g = dL/dlogp``, both ``(..., n)``; ``logp = -inf`` marks an entry outside the support (its ``g`` must be
    0). One kernel: torch's own log-softmax backward, which autograd runs for ``torch.log_softmax``."""
    return torch._log_softmax_backward_data(grad, logp, -1, logp.dtype)


def lad_theory_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eta: float,
                    div: str | Divergence = "js", mask: Tensor | None = None) -> Tensor:
    """Theoretical LAD loss: ``D_f(P_pi || P_A)`` with exact partition functions (LAD_SPEC, Lemma 3.1).

        P_pi(y) = (pi(y)/pi_old(y)) / Z_pi,   P_A(y) = exp(A(y)/eta) / Z_A,
        L_theory = sum_y P_A(y) f( P_pi(y) / P_A(y) ).

    Both partition functions are ``logsumexp`` over the last axis, which must therefore enumerate the whole
    action set (``mask`` removes actions that do not exist). No ``weights``: every action counts once.

    Shapes: inputs ``(..., n)`` (broadcastable); returns ``(...)``.
    """
    _check_inputs(logp=logp, logp_old=logp_old, advantages=advantages, mask=mask)
    eta = _check_lad(eta, div)
    logp, logp_old, advantages = _promote(logp, logp_old, advantages)
    log_p_pi, log_p_a = induced_log_distributions(logp - logp_old.detach(), advantages / eta, mask)
    terms = get_divergence(div).perspective(log_p_pi, log_p_a)
    return reduce_actions(terms, torch.ones_like(terms), mask)


# --- GRPO -----------------------------------------------------------------------------------------

def grpo_terms(logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eps_low: float | None = 0.2,
               eps_high: float | None = 0.2, beta: float = 0.0,
               logp_ref: Tensor | None = None) -> Tensor:
    """Per-sample GRPO loss (the negated clipped surrogate plus the k3 KL penalty); LAD_SPEC "GRPO".

        term = -min( r A, clip(r, 1 - eps_low, 1 + eps_high) A ) + beta * (exp(lref - lp) - (lref - lp) - 1)

    ``eps_low = eps_high = None`` disables clipping (plain advantage maximization ``-r A``).
    """
    _check_inputs(logp=logp, logp_old=logp_old, advantages=advantages, logp_ref=logp_ref)
    _check_grpo(eps_low, eps_high, beta)
    _check_kl(beta, logp_ref)
    return _grpo_terms(logp, logp_old, advantages, eps_low, eps_high, beta, logp_ref)


def _check_kl(beta: float, logp_ref: Tensor | None) -> None:
    if beta and logp_ref is None:
        raise ValueError("beta > 0 needs logp_ref, the reference policy's log-probs")


def ppo_terms(logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eps_low: float | None = None,
              eps_high: float | None = None, clip_ratio_c: float | None = None,
              log_ratio_clamp: float | None = None, delta: float | None = None) -> Tensor:
    """Per-sample PPO-clip loss (OBJECTIVES.md "grpo"; verl ``vanilla``), to minimize; shape of the inputs.

        d = logp - logp_old  (clamped to [-log_ratio_clamp, log_ratio_clamp] if given; verl: 20),  r = exp(d)
        l = max(-A min(r, delta), -A clip(r, 1 - eps_low, 1 + eps_high))   (min(r, delta) = r without delta)
        dual clip (A < 0 only, if clip_ratio_c is given; verl: 3):  l = min(l, -A c)

    ``delta`` is TRL's two-sided clip (INTELLECT-2, arXiv:2505.07291): the unclipped ratio capped at ``delta``
    (the clipped one not), which for ``delta >= 1 + eps_high`` caps a negative advantage's loss at ``-A delta``
    as verl's dual clip does at ``-A c``.

    ``eps_low``/``eps_high`` ``None`` leave that side unclipped; all ``None`` is plain ``-A r``.
    Inputs must be validated and promoted by the caller.
    """
    log_ratio = logp - logp_old.detach()
    if log_ratio_clamp is not None:
        log_ratio = log_ratio.clamp(-log_ratio_clamp, log_ratio_clamp)
    ratio = torch.exp(log_ratio)
    surrogate = (ratio if delta is None else ratio.clamp(max=delta)) * advantages
    if eps_low is not None or eps_high is not None:
        lo = 1.0 - (eps_low if eps_low is not None else float("inf"))
        hi = 1.0 + (eps_high if eps_high is not None else float("inf"))
        surrogate = torch.minimum(surrogate, ratio.clamp(lo, hi) * advantages)
    terms = -surrogate
    if clip_ratio_c is not None:
        terms = torch.where(advantages < 0, torch.minimum(terms, -advantages * clip_ratio_c), terms)
    return terms


KL_ESTIMATORS = ("k1", "k2", "k3", "k3+", "k1+", "abs", "abs+")


def kl_terms(logp: Tensor, logp_ref: Tensor, estimator: str = "k3", *, clamp: bool = False) -> Tensor:
    """Per-sample KL estimators with ``t = logp - logp_ref`` (Schulman 2020; OBJECTIVES.md), shape of the inputs.

        k1 = t        k2 = t^2 / 2        k3 = exp(-t) - 1 + t        abs = |t|
        k1+, k3+, abs+ = the value of k1, k3, abs with the gradient of k2 (verl's straight-through "+")

    From samples of ``pi_theta``: ``E[k1] = E[k3] = KL(pi_theta || pi_ref)``. As a loss (gradient through
    ``logp``, samples fixed) the expected gradients are 0 (k1), ``grad KL(pi || pi_ref)`` (k2 and every "+")
    and ``grad KL(pi_ref || pi)`` (k3); abs's, ``E[sign(t) grad logp]``, is no divergence's. ``clamp=True``
    applies verl's clamps (``-t`` to [-20, 20], k3 to [-10, 10]); off by default (ladsim's exact numbers).
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of: {', '.join(KL_ESTIMATORS)}")
    t = logp - logp_ref.detach()
    if estimator == "k1":
        return t
    if estimator == "abs":
        return t.abs()
    k2 = 0.5 * t * t
    if estimator == "k2":
        return k2
    if estimator in ("k1+", "abs+"):
        return (t if estimator == "k1+" else t.abs()).detach() + k2 - k2.detach()
    neg_t = t.neg().clamp(-20.0, 20.0) if clamp else t.neg()
    k3 = torch.expm1(neg_t) + t
    if clamp:
        k3 = k3.clamp(-10.0, 10.0)
    if estimator == "k3":
        return k3
    return k3.detach() + k2 - k2.detach()  # k3+: straight-through


def _grpo_terms(logp: Tensor, logp_old: Tensor, advantages: Tensor, eps_low: float | None,
                eps_high: float | None, beta: float, logp_ref: Tensor | None) -> Tensor:
    """``grpo_terms`` on validated inputs."""
    logp, logp_old, advantages, logp_ref = _promote(logp, logp_old, advantages, logp_ref)
    terms = ppo_terms(logp, logp_old, advantages, eps_low=eps_low, eps_high=eps_high)
    if beta:
        terms = terms + beta * kl_terms(logp, logp_ref, "k3")
    return terms


def grpo_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eps_low: float | None = 0.2,
              eps_high: float | None = 0.2, beta: float = 0.0, logp_ref: Tensor | None = None,
              weights: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """GRPO loss ``-J_GRPO`` (LAD_SPEC "GRPO"), to minimize.

    Without clipping and with ``beta = 0`` and ``weights = pi_old`` this is ``-E_{pi_theta}[A]``.
    Shapes: inputs ``(..., n)`` (broadcastable); returns ``(...)``.
    """
    _check_inputs(logp=logp, logp_old=logp_old, advantages=advantages, logp_ref=logp_ref, weights=weights,
                  mask=mask)
    _check_grpo(eps_low, eps_high, beta)
    _check_kl(beta, logp_ref)
    logp, logp_old, advantages, logp_ref = _neutralize(mask, logp, logp_old, advantages, logp_ref)
    return reduce_actions(_grpo_terms(logp, logp_old, advantages, eps_low, eps_high, beta, logp_ref), weights, mask)
