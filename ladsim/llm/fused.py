"""The fused token-level LAD loss: one pass computes the loss and its gradient; backward is one multiply.

For a token with log-ratio ``t = logp - logp_old`` and ``u = A/eta`` the practical LAD summand is the perspective
``exp(u) f(exp(t - u))`` (``ladsim.divergences``). Its derivative with respect to ``logp`` is

    d/dlogp [ e^u f(r e^{-u}) ] = r f'(r e^{-u}) = p f'(p/q),     p = e^t, q = e^u,

taken with the summand from the generator's own closed form (``Divergence.value_and_grad``, the one the core's
backward uses), in log space, so that it is finite wherever its true value is representable. The loss is linear
in the per-token summands (``agg_weights``), so

    dL/dlogp_bt = w_bt * p_bt f'(p_bt / q_bt).

The forward computes both the loss and this gradient (float32, or float64 for float64 inputs) and saves only
the gradient, ``B*T`` numbers; backward multiplies it by the incoming scalar. The kernel is plain torch
(runs anywhere); :func:`fused_lad_loss` runs it through ``torch.compile`` when asked and when compilation works,
falling back to the eager kernel otherwise.

Finite range (float32; ``|t| <= 50``, ``|u| <= 50``): loss and gradient are finite for kl, rkl, jf, js, hd, tv on
the whole box. Pearson's summand and gradient are ``~ e^{2t - u}`` and Neyman's ``~ e^{2u - t}``; they are finite
only while that exponent stays below ``log(float32 max) ~ 88.7`` (beyond it the true value itself is not
representable in float32, and ``inf`` is returned rather than a silently clamped number).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor

from ladsim.divergences import DIVERGENCES, Divergence, get_divergence
from ladsim.llm.token_loss import bool_mask, expand_advantages, agg_weights, check_token_inputs
from ladsim.losses import check_eta

ValueAndGrad = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor]"]


# --- value and gradient weight from (log p, log q) = (t, u) --------------------------------------------

def value_and_grad_fn(div: str | Divergence) -> ValueAndGrad:
    """``(t, u) -> (e^u f(e^{t-u}), e^t f'(e^{t-u}))``: the summand and its derivative in ``t`` (= ``logp``).

    A registered generator brings both from one closed form in log space (``Divergence.value_and_grad``, shared
    with the core), finite wherever the true values are representable. Any other :class:`Divergence` (one a
    user built, or a registered one with a replaced ``perspective``) falls back to its ``perspective`` and
    ``exp(t) * derivative(t - u)``, which may overflow earlier than the true value.
    """
    d = get_divergence(div)
    if DIVERGENCES.get(d.key) is d and d.value_and_grad is not None:
        return d.value_and_grad
    return lambda t, u: (d.perspective(t, u), torch.exp(t) * d.derivative(t - u))


def lad_grad_weight(t: Tensor, u: Tensor, div: str | Divergence = "js") -> Tensor:
    """``d/dt [e^u f(e^{t-u})] = e^t f'(e^{t-u})`` elementwise; ``t`` = log-ratio, ``u`` = A/eta."""
    return value_and_grad_fn(div)(t, u)[1]


# --- the kernel ---------------------------------------------------------------------------------------

def lad_kernel(logp: Tensor, logp_old: Tensor, adv: Tensor, weights: Tensor, keep: Tensor, eta: float,
                value_and_grad: ValueAndGrad) -> tuple[Tensor, Tensor]:
    """``(loss, dloss/dlogp)`` for one token batch (or one chunk of it): ``loss = sum w exp(u) f(r e^-u)`` over
    the kept tokens, ``u = adv/eta``; all elementwise work in ``weights``' dtype (the accumulation dtype). The one
    kernel of both fused paths (this module's and the chunked LM head's, ``ladsim.llm.linear``)."""
    dt = weights.dtype
    zero = torch.zeros((), dtype=dt, device=logp.device)
    t = torch.where(keep, logp.to(dt) - logp_old.to(dt), zero)
    u = torch.where(keep, adv.to(dt) / eta, zero)
    value, d_logp = value_and_grad(t, u)
    terms = torch.where(keep, value, zero)
    grad = torch.where(keep, d_logp * weights, zero)
    return (terms * weights).sum(), grad


_COMPILED: dict[str, Callable | None] = {}
_COMPILE_ERRORS: dict[str, str] = {}


def compile_disabled() -> bool:
    """``LADSIM_NO_COMPILE=1`` turns compilation off everywhere (the eager kernel is used)."""
    return os.environ.get("LADSIM_NO_COMPILE", "") not in ("", "0")


def _get_kernel(compile: bool) -> tuple[Callable, bool]:
    """The kernel to run and whether it is compiled (compilation failures are remembered, not retried)."""
    if not compile or compile_disabled() or "kernel" in _COMPILE_ERRORS:
        return lad_kernel, False
    if "kernel" not in _COMPILED:
        try:
            _COMPILED["kernel"] = torch.compile(lad_kernel, dynamic=None)
        except Exception as err:  # noqa: BLE001 - torch.compile unavailable on this platform
            _COMPILE_ERRORS["kernel"] = f"{type(err).__name__}: {err}"
            return lad_kernel, False
    return _COMPILED["kernel"], True


def compile_error() -> str | None:
    """The reason compilation was given up in this process, if it was."""
    return _COMPILE_ERRORS.get("kernel")


class FusedLAD(torch.autograd.Function):
    """Custom autograd function: forward returns the aggregated loss and saves only ``dL/dlogp``."""

    @staticmethod
    def forward(ctx, logp: Tensor, logp_old: Tensor, adv: Tensor, weights: Tensor, keep: Tensor, eta: float,
                div: Divergence, compile: bool) -> Tensor:
        kernel, compiled = _get_kernel(compile)
        args = (logp.detach(), logp_old.detach(), adv.detach(), weights, keep, eta, value_and_grad_fn(div))
        if compiled:
            try:
                loss, grad = kernel(*args)
            except Exception as err:  # noqa: BLE001 - a backend that fails at first call: fall back once
                _COMPILE_ERRORS["kernel"] = f"{type(err).__name__}: {err}"
                loss, grad = lad_kernel(*args)
        else:
            loss, grad = lad_kernel(*args)
        ctx.save_for_backward(grad)
        ctx.logp_dtype = logp.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * grad_out.to(grad.dtype)).to(ctx.logp_dtype), None, None, None, None, None, None, None


def fused_lad_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor, *,
                   eta: float = 1.0, div: str | Divergence = "js", loss_agg_mode: str = "token-mean",
                   norm_length: float | None = None, compile: bool = False) -> Tensor:
    """Token-level practical LAD, fused: equal to ``lad_token_loss(..., ratio="token")`` in value and gradient.

    Shapes: ``log_prob, old_log_prob, response_mask (B, T)``, ``advantages (B, T)`` or ``(B,)``; returns a scalar
    in float32 (float64 for float64 ``log_prob``). Gradients flow to ``log_prob`` only (in its dtype).
    ``compile=True`` runs the kernel through ``torch.compile`` if it works here (else the eager kernel).
    """
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask, loss_agg_mode)
    check_eta(eta)
    d = get_divergence(div)
    keep = bool_mask(response_mask)
    dt = torch.float64 if log_prob.dtype == torch.float64 else torch.float32
    weights = agg_weights(response_mask, loss_agg_mode, norm_length, dt)
    adv = expand_advantages(advantages, log_prob.shape)
    return FusedLAD.apply(log_prob, old_log_prob, adv, weights, keep, float(eta), d, bool(compile))
