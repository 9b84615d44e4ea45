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
ValueAndGrad = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor]"]


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
        value_and_grad: ``(log_p, log_q) -> (q f(p/q), p f'(p/q))``, the perspective and its derivative in
            ``log_p``, from which ``perspective`` takes its value and its backward.
        lq_grad: ``(log_p, log_q) -> q f(x) - p f'(x)``, the derivative in ``log_q``, written without the
            cancellation of that difference; ``None`` computes it as the difference (fine where both terms
            are bounded by the value; Pearson and Neyman give ``inf - inf = NaN`` there).
    """

    key: str
    name: str
    formula: str
    perspective: Perspective
    derivative: Elementwise
    bounded: bool
    strictly_convex: bool = True
    paper_class: str | None = None
    value_and_grad: ValueAndGrad | None = None
    lq_grad: Perspective | None = None

    def f(self, log_x: Tensor) -> Tensor:
        """The generator ``f(x)`` at ``x = exp(log_x)``; shape of ``log_x``."""
        return self.perspective(log_x, torch.zeros_like(log_x))

    def divergence(self, log_p: Tensor, log_q: Tensor, dim: int = -1) -> Tensor:
        """``D_f(P || Q)`` for log-distributions along ``dim``; returns the other dimensions."""
        return self.perspective(log_p, log_q).sum(dim)


# --- the eight generators ---------------------------------------------------------------------------
# Each generator is one elementwise function of (lp, lq) = (log p, log q), with p = e^lp, q = e^lq and
# t = lp - lq = log x, returning  (value, grad_lp) = (q f(p/q), d value / d lp = p f'(p/q)),  the two sharing
# their exponentials. Since q f(p/q) is 1-homogeneous in (p, q), d value / d lq = value - grad_lp.

def _kl(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # p t,  p (t + 1)
    p, t = torch.exp(lp), lp - lq
    value = p * t
    return value, value + p


def _rkl(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # -q t,  p (-1/x) = -q
    q = torch.exp(lq)
    value = q * (lq - lp)
    return value, -q.expand_as(value)


def _jf(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # (p - q) t,  p (t + 1 - 1/x) = p t + p - q
    p, q, t = torch.exp(lp), torch.exp(lq), lp - lq
    return (p - q) * t, p * (t + 1.0) - q


def _js(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:
    # q f(p/q) = 1/2 [p log(2p/(p+q)) + q log(2q/(p+q))], with t = lp - lq and a = log(1 + e^-|t|):
    # log(2p/(p+q)) = log 2 - softplus(-t) = log 2 - relu(-t) - a,
    # log(2q/(p+q)) = log 2 - softplus(t)  = log 2 - relu(t) - a.
    # Both logs depend on t alone, so they are exact near x = 1 (where LAD's gradient must vanish) even when
    # |lp| is large; m = log(p + q) would lose |lp| * eps there. No cancellation for t << 0 either (the
    # softplus(-t) - (-t) form cancels, and torch's softplus returns its argument above 20). In-place
    # arithmetic on the temporaries: this is the bandit's hottest function.
    t = lp - lq
    a = torch.abs(t).neg_().exp_().log1p_()
    grad = torch.relu(-t).add_(a).sub_(LOG2).mul_(torch.exp(lp)).mul_(-0.5)  # p * 1/2 log(2x/(x+1))
    value = torch.relu(t).add_(a).sub_(LOG2).mul_(torch.exp(lq)).mul_(-0.5)
    return value.add_(grad), grad


def _hd(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # 1/2 (sqrt p - sqrt q)^2,  1/2 sqrt p (sqrt p - sqrt q)
    sqrt_p = torch.exp(0.5 * lp)
    diff = sqrt_p - torch.exp(0.5 * lq)
    return 0.5 * diff**2, 0.5 * sqrt_p * diff


def _tv(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # 1/2 |p - q|,  1/2 p sign(x - 1) (subgradient 0 at 1)
    p = torch.exp(lp)
    diff = p - torch.exp(lq)
    return 0.5 * torch.abs(diff), 0.5 * p * torch.sign(diff)


def _exp_expm1(s: Tensor, t: Tensor) -> Tensor:
    """``exp(s) expm1(t)`` without an intermediate overflow: for ``t > 0`` as ``exp(s + t) (1 - exp(-t))``.

    ``expm1(t)`` alone overflows float32 at ``t = 89`` where the product can be small (``s = -100``); this
    is what lets the chi^2 generators reach every value that fits (issue 12, item 13).
    """
    return torch.where(t > 0, torch.exp(s + t) * -torch.expm1(-t), torch.exp(s) * torch.expm1(t))


def _pearson(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # q (x - 1)^2,  2 p (x - 1)
    t = lp - lq
    return _exp_expm1(0.5 * lq, t) ** 2, 2.0 * _exp_expm1(lp, t)


def _neyman(lp: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:  # q (1 - x)^2 / x,  p (1 - 1/x^2) = p - q^2/p
    p = torch.exp(lp)
    return _exp_expm1(0.5 * lp, lq - lp) ** 2, p - torch.exp(2.0 * lq - lp)


# d/d lq of q f(p/q) = q f(x) - p f'(x), simplified so that no inf - inf arises where the value overflows:
def _pearson_lq(lp: Tensor, lq: Tensor) -> Tensor:  # q (x-1)^2 - 2 p (x-1) = q (1 - x^2) = -q expm1(2t)
    return -_exp_expm1(lq, 2.0 * (lp - lq))


def _neyman_lq(lp: Tensor, lq: Tensor) -> Tensor:  # q (1-x)^2/x - p (1 - 1/x^2) = 2 q (1/x - 1) = 2 q expm1(-t)
    return 2.0 * _exp_expm1(lq, lq - lp)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Undo broadcasting: sum ``grad`` down to ``shape``."""
    return grad if grad.shape == shape else grad.sum_to_size(shape)


class _Perspective(torch.autograd.Function):
    """``q f(p/q)`` with the hand-derived gradient ``(p f'(x), q f(x) - p f'(x))``.

    The forward computes the value and its ``log p`` derivative together (they share their exponentials) and
    saves only the derivative, so the backward is a product: no autograd graph through the expression and no
    recomputation. The derivative is written in log space, finite wherever the gradient is representable.
    """

    @staticmethod
    def forward(ctx, lp: Tensor, lq: Tensor, value_and_grad: ValueAndGrad, lq_grad: Perspective | None) -> Tensor:
        value, d_lp = value_and_grad(lp, lq)
        ctx.shapes = (lp.shape, lq.shape)
        d_lq = None
        if ctx.needs_input_grad[1]:
            d_lq = lq_grad(lp, lq) if lq_grad is not None else value - d_lp
        ctx.save_for_backward(d_lp, d_lq)
        return value

    @staticmethod
    def backward(ctx, grad: Tensor):
        if torch.is_grad_enabled():  # backward(create_graph=True): a second derivative was asked for
            raise NotImplementedError(
                "ladsim's f-divergence perspective carries a hand-derived first derivative only: double backward "
                "(create_graph=True, Hessian-vector products) is not supported; for second derivatives evaluate "
                "Divergence.value_and_grad(log_p, log_q)[0] under plain autograd")
        d_lp, d_lq = ctx.saved_tensors
        lp_shape, lq_shape = ctx.shapes
        g_lp = _sum_to(grad * d_lp, lp_shape) if ctx.needs_input_grad[0] else None
        g_lq = _sum_to(grad * d_lq, lq_shape) if ctx.needs_input_grad[1] else None
        return g_lp, g_lq, None, None


def _divergence(key, name, formula, value_and_grad, derivative, lq_grad=None, **flags) -> Divergence:
    def perspective(lp: Tensor, lq: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (lp.requires_grad or lq.requires_grad):
            return _Perspective.apply(lp, lq, value_and_grad, lq_grad)
        return value_and_grad(lp, lq)[0]

    return Divergence(key, name, formula, perspective, derivative, value_and_grad=value_and_grad, lq_grad=lq_grad,
                      **flags)


DIVERGENCES: dict[str, Divergence] = {
    d.key: d
    for d in (
        _divergence("kl", "Kullback-Leibler", "x log x", _kl, lambda t: t + 1.0, bounded=False,
                    paper_class="non-strict"),
        _divergence("rkl", "reverse KL", "-log x", _rkl, lambda t: -torch.exp(-t), bounded=False,
                    paper_class="non-strict"),
        _divergence("jf", "Jeffreys", "(x - 1) log x", _jf, lambda t: t - torch.expm1(-t),
                    bounded=False, paper_class="non-strict"),
        _divergence("js", "Jensen-Shannon", "1/2 [x log x - (x + 1) log((x + 1)/2)]", _js,
                    lambda t: 0.5 * (LOG2 - softplus(-t)), bounded=True, paper_class="strict"),
        _divergence("hd", "squared Hellinger", "1/2 (sqrt(x) - 1)^2", _hd,
                    lambda t: -0.5 * torch.expm1(-0.5 * t), bounded=True, paper_class="strict"),
        _divergence("tv", "total variation", "1/2 |x - 1|", _tv, lambda t: 0.5 * torch.sign(t),
                    bounded=True, strictly_convex=False, paper_class="strict"),
        _divergence("pearson", "Pearson chi^2", "(x - 1)^2", _pearson,
                    lambda t: 2.0 * torch.expm1(t), lq_grad=_pearson_lq, bounded=False),
        _divergence("neyman", "Neyman chi^2", "(1 - x)^2 / x", _neyman,
                    lambda t: -torch.expm1(-2.0 * t), lq_grad=_neyman_lq, bounded=False),
    )
}

STRICT_CLASS = tuple(k for k, d in DIVERGENCES.items() if d.paper_class == "strict")
NON_STRICT_CLASS = tuple(k for k, d in DIVERGENCES.items() if d.paper_class == "non-strict")


def get_divergence(key: str | Divergence) -> Divergence:
    """Look a generator up by key; an unknown key raises ``ValueError`` naming the valid ones, a key that is
    not a string ``TypeError``."""
    if isinstance(key, Divergence):
        return key
    if not isinstance(key, str):
        raise TypeError(f"div must be a divergence name (one of: {', '.join(DIVERGENCES)}) or a Divergence, "
                        f"got {type(key).__name__} {key!r}")
    try:
        return DIVERGENCES[key]
    except KeyError:
        raise ValueError(f"unknown divergence {key!r}; choose one of: {', '.join(DIVERGENCES)}") from None
