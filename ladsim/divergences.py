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
    """

    key: str
    name: str
    formula: str
    perspective: Perspective
    derivative: Elementwise
    bounded: bool
    strictly_convex: bool = True
    paper_class: str | None = None

    def f(self, log_x: Tensor) -> Tensor:
        """The generator ``f(x)`` at ``x = exp(log_x)``; shape of ``log_x``."""
        return self.perspective(log_x, torch.zeros_like(log_x))

    def divergence(self, log_p: Tensor, log_q: Tensor, dim: int = -1) -> Tensor:
        """``D_f(P || Q)`` for log-distributions along ``dim``; returns the other dimensions."""
        return self.perspective(log_p, log_q).sum(dim)


# --- the eight generators; p = exp(lp), q = exp(lq), d = lp - lq = log x ---------------------------

def _kl(lp: Tensor, lq: Tensor) -> Tensor:  # q * x log x = p (lp - lq)
    return torch.exp(lp) * (lp - lq)


def _rkl(lp: Tensor, lq: Tensor) -> Tensor:  # q * (-log x)
    return torch.exp(lq) * (lq - lp)


def _jf(lp: Tensor, lq: Tensor) -> Tensor:  # q (x - 1) log x = (p - q)(lp - lq)
    return (torch.exp(lp) - torch.exp(lq)) * (lp - lq)


def _js(lp: Tensor, lq: Tensor) -> Tensor:
    # q f(p/q) = 1/2 [p log(2p/(p+q)) + q log(2q/(p+q))]; log(2p/(p+q)) = log 2 - softplus(lq - lp).
    p, q = torch.exp(lp), torch.exp(lq)
    return 0.5 * (p * (LOG2 - softplus(lq - lp)) + q * (LOG2 - softplus(lp - lq)))


def _hd(lp: Tensor, lq: Tensor) -> Tensor:  # q * 1/2 (sqrt x - 1)^2 = 1/2 (sqrt p - sqrt q)^2
    return 0.5 * (torch.exp(0.5 * lp) - torch.exp(0.5 * lq)) ** 2


def _tv(lp: Tensor, lq: Tensor) -> Tensor:  # q * 1/2 |x - 1|
    return 0.5 * torch.abs(torch.exp(lp) - torch.exp(lq))


def _pearson(lp: Tensor, lq: Tensor) -> Tensor:  # q (x - 1)^2 = (sqrt(q) expm1(lp - lq))^2
    return (torch.exp(0.5 * lq) * torch.expm1(lp - lq)) ** 2


def _neyman(lp: Tensor, lq: Tensor) -> Tensor:  # q (1 - x)^2 / x = (sqrt(p) expm1(lq - lp))^2
    return (torch.exp(0.5 * lp) * torch.expm1(lq - lp)) ** 2


DIVERGENCES: dict[str, Divergence] = {
    d.key: d
    for d in (
        Divergence("kl", "Kullback-Leibler", "x log x", _kl, lambda t: t + 1.0, bounded=False,
                   paper_class="non-strict"),
        Divergence("rkl", "reverse KL", "-log x", _rkl, lambda t: -torch.exp(-t), bounded=False,
                   paper_class="non-strict"),
        Divergence("jf", "Jeffreys", "(x - 1) log x", _jf, lambda t: t - torch.expm1(-t), bounded=False,
                   paper_class="non-strict"),
        Divergence("js", "Jensen-Shannon", "1/2 [x log x - (x + 1) log((x + 1)/2)]", _js,
                   lambda t: 0.5 * (LOG2 - softplus(-t)), bounded=True, paper_class="strict"),
        Divergence("hd", "squared Hellinger", "1/2 (sqrt(x) - 1)^2", _hd,
                   lambda t: -0.5 * torch.expm1(-0.5 * t), bounded=True, paper_class="strict"),
        Divergence("tv", "total variation", "1/2 |x - 1|", _tv, lambda t: 0.5 * torch.sign(t),
                   bounded=True, strictly_convex=False, paper_class="strict"),
        Divergence("pearson", "Pearson chi^2", "(x - 1)^2", _pearson, lambda t: 2.0 * torch.expm1(t),
                   bounded=False),
        Divergence("neyman", "Neyman chi^2", "(1 - x)^2 / x", _neyman, lambda t: -torch.expm1(-2.0 * t),
                   bounded=False),
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
