"""LAD, practical and theoretical (LAD_SPEC), registered on the shared core's losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

from ladsim.divergences import LOG2, get_divergence
from ladsim.losses import (induced_log_distributions, lad_loss, lad_terms, lad_theory_loss, log_softmax_backward,
                           masked_log_normalize)
from ladsim.objectives.registry import Batch, check_number, register_gradient, register_objective

_REF = "Li & Li, LAD: Learning Advantage Distribution for Reasoning, arXiv:2602.20132 (2026)"


@dataclass(frozen=True)
class LADParams:
    """Parameters of both LAD losses. In the bandit ``eta`` and ``div`` default to the run's ``--eta``/``--div``."""

    eta: float = field(default=1.0, metadata={"doc": "temperature of the target pi_old exp(A/eta)/Z"})
    div: str = field(default="js", metadata={"doc": "f-divergence generator (ladsim.divergences)"})

    def __post_init__(self) -> None:
        check_number("eta", self.eta, low=0.0, low_open=True)
        get_divergence(self.div)


def lad_exact(batch: Batch, params: LADParams, state: Mapping[str, Tensor]) -> Tensor:
    """``sum_y pi_old(y) l(y)`` with the weights folded into the perspective's log arguments (1-homogeneity)."""
    return lad_loss(batch.logp, batch.logp_old, batch.advantages, eta=params.eta, div=params.div,
                    weights=batch.weights, mask=batch.mask)


@register_objective(
    "lad", LADParams, exact_loss=lad_exact,
    formula="l = exp(u) f(r exp(-u)),  u = A/eta,  r = exp(logp - logp_old)",
    reference=_REF + ", practical LAD (no partition function)",
    summary="practical LAD: f-divergence to pi_old exp(A/eta)/Z without partition functions")
def lad(batch: Batch, params: LADParams, state: Mapping[str, Tensor]) -> Tensor:
    return lad_terms(batch.logp, batch.logp_old, batch.advantages, eta=params.eta, div=params.div)


@register_objective(
    "lad-theory", LADParams, full_support=True,
    formula="L = sum_y P_A(y) f(P_pi(y)/P_A(y)),  P_pi ∝ pi/pi_old,  P_A ∝ exp(A/eta)",
    reference=_REF + ", theoretical LAD (exact partition functions, Lemma 3.1)",
    summary="theoretical LAD: D_f(P_pi || P_A) with exact partition functions (bandits only)")
def lad_theory(batch: Batch, params: LADParams, state: Mapping[str, Tensor]) -> Tensor:
    return lad_theory_loss(batch.logp, batch.logp_old, batch.advantages, eta=params.eta, div=params.div,
                           mask=batch.mask)


# --- hand gradients (the bandit's fused engine) ---------------------------------------------------------------
# Both losses are perspectives q f(p/q); the divergence gives d(q f(p/q))/d log p = p f'(p/q) with its value
# (``value_and_grad``), the same numbers the autograd backward of ``perspective`` uses.

def perspective_grad(div: str, lp: Tensor, lq: Tensor) -> Tensor:
    """``d(q f(p/q))/d log p = p f'(p/q)`` alone. JS (the default, the hottest) in half the kernels of its
    ``value_and_grad``: ``p/2 (log 2 + log sigmoid(t))``, ``t = lp - lq``, which is the same log-space
    expression (``log sigmoid(t) = -relu(-t) - log(1 + e^-|t|)``); the others from ``value_and_grad``."""
    if div == "js":
        return torch.nn.functional.logsigmoid(lp - lq).add_(LOG2).mul_(torch.exp(lp)).mul_(0.5)
    return get_divergence(div).value_and_grad(lp, lq)[1]


def _log_q(batch: Batch, params: LADParams) -> Tensor:
    """``u = A / eta``, once per memo."""
    return batch.constant(("lad.log_q", params.eta), lambda: batch.advantages / params.eta)


@register_gradient("lad")
def lad_grad(batch: Batch, params: LADParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dl/dlogp = p f'(p/q)`` with ``log p = logp - logp_old``, ``log q = A/eta``."""
    return perspective_grad(params.div, batch.logp - batch.logp_old, _log_q(batch, params)), {}


@register_gradient("lad-theory")
def lad_theory_grad(batch: Batch, params: LADParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dL/dlogp = g - P_pi sum(g)``, ``g = P_pi f'(P_pi/P_A)``: the perspective's derivative in ``log P_pi``
    through the normalization ``log P_pi = x - logsumexp(x)``, ``x = logp - logp_old`` (``log P_A``, which
    does not move, once per memo)."""
    log_p_a = batch.constant(("lad-theory.log_p_a", params.eta),
                             lambda: induced_log_distributions(batch.logp_old, _log_q(batch, params), batch.mask)[1])
    log_p_pi = masked_log_normalize(batch.logp - batch.logp_old, batch.mask)  # masked entries: -inf
    if batch.mask is None:
        return log_softmax_backward(perspective_grad(params.div, log_p_pi, log_p_a), log_p_pi), {}
    keep = torch.broadcast_to(batch.mask, log_p_pi.shape) > 0  # masked entries are no actions: no gradient
    g = perspective_grad(params.div, torch.where(keep, log_p_pi, torch.zeros_like(log_p_pi)), log_p_a)
    return log_softmax_backward(torch.where(keep, g, torch.zeros_like(g)), log_p_pi), {}
