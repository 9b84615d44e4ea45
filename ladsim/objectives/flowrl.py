"""FlowRL (Zhu et al. 2025; OBJECTIVES.md "flowrl"): trajectory balance with a learned partition function.

Per response ``y`` (one arm in the bandit, ``|y| = 1``):

    delta(y) = log Z + logp(y)/|y| - beta rhat(y) - logp_ref(y)/|y|,    l(y) = w(y) delta(y)^2,
    w = clip(pi_theta(y)/pi_old(y), 1 - eps_low, 1 + eps_high), detached.

``rhat`` is the group-normalized reward, i.e. the batch's advantage (GRPO's group advantage with samples, the
exact advantage ``R - E_{pi_old}[R]`` in the bandit's exact mode). ``log Z`` is the objective's own state, one
scalar per row (per seed in the bandit; in the paper a small network of the prompt), trained with the policy.
At the optimum ``delta = 0``: ``pi = pi_ref exp(beta rhat) / Z``, LAD's target at ``eta = 1/beta`` when
``pi_ref = pi_old``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

from ladsim.objectives.registry import Batch, check_number, register_gradient, register_objective


@dataclass(frozen=True)
class FlowRLParams:
    beta: float = field(default=15.0, metadata={"doc": "reward scale; the target is pi_ref exp(beta rhat)/Z"})
    eps_low: float | None = field(default=0.2, metadata={"doc": "importance-weight clip 1 - eps_low (None: off)"})
    eps_high: float | None = field(default=0.2, metadata={"doc": "importance-weight clip 1 + eps_high (None: off)"})
    length: float = field(default=1.0, metadata={"doc": "|y|, the response length (1 for a bandit arm)"})

    def __post_init__(self) -> None:
        check_number("beta", self.beta, low=0.0, low_open=True)
        check_number("eps_low", self.eps_low, low=0.0, high=1.0, allow_none=True)
        check_number("eps_high", self.eps_high, low=0.0, allow_none=True)
        check_number("length", self.length, low=0.0, low_open=True)


def _init_log_z(params: FlowRLParams, batch_shape: tuple[int, ...], dtype: torch.dtype) -> dict[str, Tensor]:
    return {"log_z": torch.zeros(batch_shape, dtype=dtype)}


@register_objective(
    "flowrl", FlowRLParams, init_state=_init_log_z, needs=("logp_ref",), unit="response",
    formula="l = w (log Z + logp/|y| - beta rhat - logp_ref/|y|)^2,  w = clip(r, 1-eps_low, 1+eps_high) detached",
    reference="Zhu et al. 2025, FlowRL: Matching Reward Distributions for LLM Reasoning, arXiv:2509.15207",
    summary="trajectory balance to pi_ref exp(beta rhat)/Z with a learned log Z")
def flowrl(batch: Batch, params: FlowRLParams, state: Mapping[str, Tensor]) -> Tensor:
    delta, weight = _delta_and_weight(batch, params, state)
    return weight * delta * delta


def _delta_and_weight(batch: Batch, params: FlowRLParams, state: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``delta (..., n)`` and the detached, clipped importance weight ``w (..., n)``."""
    if "log_z" not in state:
        raise ValueError("objective 'flowrl' needs its state {'log_z': tensor of the batch shape}; "
                         "create it with get_objective('flowrl').state(params, batch_shape)")
    logp_ref = batch.need("logp_ref", "flowrl")
    fixed = batch.constant(("flowrl.fixed", params.beta, params.length),  # the part of delta that does not move
                           lambda: logp_ref.detach() / params.length + params.beta * batch.advantages)
    delta = (batch.logp if params.length == 1.0 else batch.logp / params.length) - fixed + state["log_z"].unsqueeze(-1)
    weight = torch.exp(batch.logp - batch.logp_old).detach()
    if params.eps_low is not None or params.eps_high is not None:
        lo = 1.0 - params.eps_low if params.eps_low is not None else 0.0
        hi = 1.0 + params.eps_high if params.eps_high is not None else float("inf")
        weight = weight.clamp(lo, hi)
    return delta, weight


@register_gradient("flowrl")
def flowrl_grad(batch: Batch, params: FlowRLParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dl/dlogp = 2 w delta / |y|``, ``dl/dlog Z = 2 w delta`` (the weight is detached)."""
    delta, weight = _delta_and_weight(batch, params, state)
    d_log_z = torch.mul(weight, delta).mul_(2.0)
    return d_log_z if params.length == 1.0 else d_log_z / params.length, {"log_z": d_log_z}
