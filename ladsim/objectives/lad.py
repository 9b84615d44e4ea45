"""LAD, practical and theoretical (LAD_SPEC), registered on the shared core's losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from torch import Tensor

from ladsim.divergences import get_divergence
from ladsim.losses import lad_loss, lad_terms, lad_theory_loss
from ladsim.objectives.registry import Batch, check_number, register_objective

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
