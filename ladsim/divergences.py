"""f-divergence generators of LAD (LAD_SPEC "f-divergences"), evaluated in log space.

A generator ``f`` is convex with ``f(1) = 0`` and defines ``D_f(P || Q) = sum_y Q(y) f(P(y) / Q(y))``.
Every quantity here is computed from logarithms so that ratios as large as ``exp(50)`` (or as small as
``exp(-50)``) stay finite in float32:

* ``f(log_x)``                - the generator at ``x = exp(log_x)``;
* ``derivative(log_x)``       - ``f'(x)``, the per-sample weight of the LAD gradient;
* ``perspective(log_p, log_q)`` - ``q f(p / q)``, the summand of ``D_f`` and of both LAD losses. Writing the
  product ``q f(p/q)`` as one expression matters: ``q`` and ``f(p/q)`` can each overflow while their
  product is representable (``q = e^-50``, ``p/q = e^100`` for KL).

All functions are elementwise and accept tensors of any shape and floating dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.nn.functional import softplus

LOG2 = math.log(2.0)

Elementwise = Callable[[Tensor], Tensor]
Perspective = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Divergence:
    """One f-divergence generator.

    Attributes:
        key: registry name (``"js"``, ...).
        name: human-readable name.
        formula: ``f(x)`` as written in LAD_SPEC.
        perspective: ``(log_p, log_q) -> q f(p/q)``, elementwise, same shape as the broadcast inputs.
        derivative: ``log_x -> f'(x)``, elementwise.
        bounded: whether ``D_f`` is bounded (JS <= log 2, Hellinger <= 1, TV <= 1).
        strictly_convex: whether ``f`` is strictly convex (TV is not, so its minimizers need not be unique).
        paper_class: ``"strict"`` or ``"non-strict"`` for the classes compared in the paper's Figure 4.
        perspective_value: the plain expression behind ``perspective`` (differentiated by autograd if used).
        perspective_grad: ``(log_p, log_q) -> p f'(p/q)``, the derivative of ``perspective`` in ``log_p``;
            ``perspective`` uses it as its backward.
    """

    key: str
    name: str
    formula: str
    perspective: Perspective
    derivative: Elementwise
    bounded: bool
    strictly_convex: bool = True
    paper_class: str | None = None
    perspective_value: Perspective | None = None
    perspective_grad: Perspective | None = None

    def f(self, log_x: Tensor) -> Tensor:
        """The generator ``f(x)`` at ``x = exp(log_x)``; shape of ``log_x``."""
        return self.perspective(log_x, torch.zeros_like(log_x))

    def divergence(self, log_p: Tensor, log_q: Tensor, dim: int = -1) -> Tensor:
        """``D_f(P || Q)`` for log-distributions along ``dim``; returns the other dimensions."""
        return self.perspective(log_p, log_q).sum(dim)


# --- the eight generators ---------------------------------------------------------------------------
# Each generator is a pair of elementwise functions of (lp, lq) = (log p, log q), with p = e^lp, q = e^lq and
# t = lp - lq = log x:  value = q f(p/q)  and  grad_lp = d value / d lp = p f'(p/q).
# Since q f(p/q) is 1-homogeneous in (p, q), d value / d lq = value - grad_lp.

def _kl(lp: Tensor, lq: Tensor) -> Tensor:  # q * x log x = p (lp - lq)
    return torch.exp(lp) * (lp - lq)


def _kl_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p (t + 1)
    return torch.exp(lp) * (lp - lq + 1.0)


def _rkl(lp: Tensor, lq: Tensor) -> Tensor:  # q * (-log x)
    return torch.exp(lq) * (lq - lp)


def _rkl_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p * (-1/x) = -q
    return -torch.exp(lq).expand(torch.broadcast_shapes(lp.shape, lq.shape))


def _jf(lp: Tensor, lq: Tensor) -> Tensor:  # q (x - 1) log x = (p - q)(lp - lq)
    return (torch.exp(lp) - torch.exp(lq)) * (lp - lq)


def _jf_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p (t + 1 - 1/x) = p t + p - q
    p = torch.exp(lp)
    return p * (lp - lq + 1.0) - torch.exp(lq)


def _js(lp: Tensor, lq: Tensor) -> Tensor:
    # q f(p/q) = 1/2 [p log(2p/(p+q)) + q log(2q/(p+q))], with t = lp - lq and a = log(1 + e^-|t|):
    # log(2p/(p+q)) = log 2 - softplus(-t) = log 2 - relu(-t) - a,
    # log(2q/(p+q)) = log 2 - softplus(t)  = log 2 - relu(t) - a.
    # One log1p(exp), the costly op here, and no cancellation: writing the second as softplus(-t) - (-t)
    # cancels for t << 0, and torch's softplus returns its argument above 20 (threshold), so that form
    # lost log1p(e^t) ~ e^-20 absolutely (a ~2e-9 relative error of JS(e^t) near t = -20, in float64 too).
    t = lp - lq
    a = torch.log1p(torch.exp(-torch.abs(t)))
    return 0.5 * (torch.exp(lp) * (LOG2 - torch.relu(-t) - a) + torch.exp(lq) * (LOG2 - torch.relu(t) - a))


def _js_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p * 1/2 log(2x/(x+1))
    return 0.5 * torch.exp(lp) * (LOG2 - softplus(lq - lp))


def _hd(lp: Tensor, lq: Tensor) -> Tensor:  # q * 1/2 (sqrt x - 1)^2 = 1/2 (sqrt p - sqrt q)^2
    return 0.5 * (torch.exp(0.5 * lp) - torch.exp(0.5 * lq)) ** 2


def _hd_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p * 1/2 (1 - 1/sqrt x) = 1/2 (p - sqrt(p q))
    return 0.5 * (torch.exp(lp) - torch.exp(0.5 * (lp + lq)))


def _tv(lp: Tensor, lq: Tensor) -> Tensor:  # q * 1/2 |x - 1|
    return 0.5 * torch.abs(torch.exp(lp) - torch.exp(lq))


def _tv_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p * 1/2 sign(x - 1) (the subgradient 0 at x = 1)
    return 0.5 * torch.exp(lp) * torch.sign(lp - lq)


def _pearson(lp: Tensor, lq: Tensor) -> Tensor:  # q (x - 1)^2 = (sqrt(q) expm1(lp - lq))^2
    return (torch.exp(0.5 * lq) * torch.expm1(lp - lq)) ** 2


def _pearson_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p * 2 (x - 1)
    return 2.0 * torch.exp(lp) * torch.expm1(lp - lq)


def _neyman(lp: Tensor, lq: Tensor) -> Tensor:  # q (1 - x)^2 / x = (sqrt(p) expm1(lq - lp))^2
    return (torch.exp(0.5 * lp) * torch.expm1(lq - lp)) ** 2


def _neyman_grad(lp: Tensor, lq: Tensor) -> Tensor:  # p (1 - 1/x^2) = p - q^2 / p
    return torch.exp(lp) - torch.exp(2.0 * lq - lp)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Undo broadcasting: sum ``grad`` down to ``shape``."""
    return grad if grad.shape == shape else grad.sum_to_size(shape)


class _Perspective(torch.autograd.Function):
    """``q f(p/q)`` with the hand-derived gradient ``(p f'(x), q f(x) - p f'(x))``.

    Cheaper than differentiating through the expression (no intermediate graph) and exact: the backward is
    the derivative of the generator itself, written in log space so that it stays finite wherever the
    gradient is representable.
    """

    @staticmethod
    def forward(ctx, lp: Tensor, lq: Tensor, value: Perspective, grad_lp: Perspective) -> Tensor:
        ctx.save_for_backward(lp, lq)
        ctx.fns = (value, grad_lp)
        return value(lp, lq)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        lp, lq = ctx.saved_tensors
        value, grad_lp = ctx.fns
        d_lp = grad_lp(lp, lq)
        g_lp = _sum_to(grad * d_lp, lp.shape) if ctx.needs_input_grad[0] else None
        g_lq = _sum_to(grad * (value(lp, lq) - d_lp), lq.shape) if ctx.needs_input_grad[1] else None
        return g_lp, g_lq, None, None


def _divergence(key, name, formula, value, grad_lp, derivative, **flags) -> Divergence:
    def perspective(lp: Tensor, lq: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (lp.requires_grad or lq.requires_grad):
            return _Perspective.apply(lp, lq, value, grad_lp)
        return value(lp, lq)

    return Divergence(key, name, formula, perspective, derivative, perspective_value=value,
                      perspective_grad=grad_lp, **flags)


DIVERGENCES: dict[str, Divergence] = {
    d.key: d
    for d in (
        _divergence("kl", "Kullback-Leibler", "x log x", _kl, _kl_grad, lambda t: t + 1.0, bounded=False,
                    paper_class="non-strict"),
        _divergence("rkl", "reverse KL", "-log x", _rkl, _rkl_grad, lambda t: -torch.exp(-t), bounded=False,
                    paper_class="non-strict"),
        _divergence("jf", "Jeffreys", "(x - 1) log x", _jf, _jf_grad, lambda t: t - torch.expm1(-t),
                    bounded=False, paper_class="non-strict"),
        _divergence("js", "Jensen-Shannon", "1/2 [x log x - (x + 1) log((x + 1)/2)]", _js, _js_grad,
                    lambda t: 0.5 * (LOG2 - softplus(-t)), bounded=True, paper_class="strict"),
        _divergence("hd", "squared Hellinger", "1/2 (sqrt(x) - 1)^2", _hd, _hd_grad,
                    lambda t: -0.5 * torch.expm1(-0.5 * t), bounded=True, paper_class="strict"),
        _divergence("tv", "total variation", "1/2 |x - 1|", _tv, _tv_grad, lambda t: 0.5 * torch.sign(t),
                    bounded=True, strictly_convex=False, paper_class="strict"),
        _divergence("pearson", "Pearson chi^2", "(x - 1)^2", _pearson, _pearson_grad,
                    lambda t: 2.0 * torch.expm1(t), bounded=False),
        _divergence("neyman", "Neyman chi^2", "(1 - x)^2 / x", _neyman, _neyman_grad,
                    lambda t: -torch.expm1(-2.0 * t), bounded=False),
    )
}

STRICT_CLASS = tuple(k for k, d in DIVERGENCES.items() if d.paper_class == "strict")
NON_STRICT_CLASS = tuple(k for k, d in DIVERGENCES.items() if d.paper_class == "non-strict")


def get_divergence(key: str | Divergence) -> Divergence:
    """Look a generator up by key; an unknown key raises ``ValueError`` naming the valid ones."""
    if isinstance(key, Divergence):
        return key
    try:
        return DIVERGENCES[key]
    except KeyError:
        raise ValueError(f"unknown divergence {key!r}; choose one of: {', '.join(DIVERGENCES)}") from None
