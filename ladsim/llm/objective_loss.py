"""An objective on a token batch ``(B, T)``: the one entry point of the trainer adapters (verl, TRL).

Shapes (as in :mod:`ladsim.llm.token_loss`): ``log_prob``, ``old_log_prob``, ``response_mask`` ``(B, T)``;
``advantages`` ``(B, T)`` or ``(B,)``; optional per-token ``entropy``, ``ref_log_prob`` ``(B, T)``.

How a token batch becomes the objective's :class:`Batch`: the valid tokens (``response_mask`` true) are
flattened, in row-major order, into ONE row of ``N`` entries, as verl flattens them for its batch statistics:
the covariances and top-n selections of clip-cov and kl-cov are taken over every valid token of the batch.
Padding never enters any arithmetic. The per-token terms are scattered back to ``(B, T)`` (0 where masked),
optionally multiplied by per-token weights (verl's ``rollout_is_weights``, TRL's importance-sampling ratio),
and aggregated by :func:`ladsim.llm.token_loss.agg_loss` with the trainer's conventions.

Ratios (``ratio``), with ``d_t = logp_t - logp_old_t`` and ``m`` the mask:

* ``"token"``          the ratio of token ``t`` is ``exp(d_t)`` (verl, TRL ``importance_sampling_level="token"``);
* ``"sequence"``       every token of a response gets ``exp(sum_t m d_t) = pi(y|x)/pi_old(y|x)`` (the ratio
  LAD's objective is written with);
* ``"sequence-mean"``  every token gets ``exp(sum_t m d_t / sum_t m)``, the length-normalized (geometric-mean)
  ratio of GSPO as TRL 1.16 computes it (``importance_sampling_level="sequence"``; the gradient flows through
  the mean).

The sequence ratios are broadcast to the response's tokens and aggregated per token like TRL; with
``seq-mean-token-mean`` that is one term per response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from ladsim.divergences import get_divergence
from ladsim.losses import grpo_terms, lad_terms
from ladsim.llm.token_loss import (
    AGG_MODES,
    agg_loss,
    bool_mask,
    check_float,
    check_token_inputs,
    expand_advantages,
    zero_masked,
)

RATIOS = ("token", "sequence", "sequence-mean")


# --- the objectives a token batch can run --------------------------------------------------------------

@dataclass(frozen=True)
class LADParams:
    eta: float = field(default=1.0, metadata={"doc": "temperature of the target pi_old exp(A/eta)/Z"})
    div: str = field(default="js", metadata={"doc": "f-divergence generator (ladsim.divergences)"})

    def __post_init__(self) -> None:
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)) or not self.eta > 0:
            raise ValueError(f"lad.eta must be a positive number, got {self.eta!r}")
        get_divergence(self.div)


@dataclass(frozen=True)
class GRPOParams:
    eps_low: float | None = field(default=None, metadata={"doc": "PPO clip 1 - eps_low (None: unclipped)"})
    eps_high: float | None = field(default=None, metadata={"doc": "PPO clip 1 + eps_high (None: unclipped)"})


_PARAMS = {"lad": LADParams, "grpo": GRPOParams}


def token_objectives() -> list[str]:
    """The objectives that run on token batches (and so through the verl and TRL adapters)."""
    return list(_PARAMS)


def make_token_params(objective: str, params: Any = None) -> Any:
    """``objective``'s parameters from ``None`` (defaults), a mapping of overrides, or a parameters object."""
    if objective not in _PARAMS:
        raise ValueError(f"unknown objective {objective!r}; choose from: {', '.join(_PARAMS)}")
    cls = _PARAMS[objective]
    if params is None:
        return cls()
    if isinstance(params, cls):
        return params
    if not isinstance(params, Mapping):
        raise TypeError(f"params of {objective!r} must be a mapping or {cls.__name__}, got {type(params).__name__}")
    known = [f for f in cls.__dataclass_fields__]
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ValueError(f"unknown parameter {objective}.{unknown[0]}; {objective} has: {', '.join(known)}")
    return cls(**dict(params))


def _terms(objective: str, params: Any, logp: Tensor, logp_old: Tensor, advantages: Tensor) -> Tensor:
    if objective == "lad":
        return lad_terms(logp, logp_old, advantages, eta=params.eta, div=params.div)
    return grpo_terms(logp, logp_old, advantages, eps_low=params.eps_low, eps_high=params.eps_high)


# --- ratios ---------------------------------------------------------------------------------------------

def token_log_ratio(log_prob: Tensor, old_log_prob: Tensor, response_mask: Tensor, ratio: str = "token") -> Tensor:
    """The log-ratio each token uses, ``(B, T)`` float32 or wider, 0 where masked (``ratio``: module docstring)."""
    if ratio not in RATIOS:
        raise ValueError(f"unknown ratio {ratio!r}; choose one of: {', '.join(RATIOS)}")
    keep = bool_mask(response_mask)
    dt = torch.promote_types(log_prob.dtype, torch.float32)
    d = zero_masked(log_prob.to(dt) - old_log_prob.to(dt).detach(), keep)
    if ratio == "token":
        return d
    seq = d.sum(-1, keepdim=True)
    if ratio == "sequence-mean":
        seq = seq / keep.sum(-1, keepdim=True).clamp(min=1).to(dt)
    return zero_masked(seq.expand_as(d), keep)


# --- terms and loss -------------------------------------------------------------------------------------

def objective_token_terms(objective: str, log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor,
                          response_mask: Tensor, *, params: Any = None, ratio: str = "token") -> Tensor:
    """Per-token loss terms ``(B, T)`` of ``objective`` (float32 or wider, 0 where masked; to minimize).

    The valid tokens form one row (module docstring); ``params``: ``None``, a mapping or the parameters object.
    """
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask)
    params = make_token_params(objective, params)
    keep = bool_mask(response_mask)
    dt = torch.promote_types(torch.promote_types(log_prob.dtype, old_log_prob.dtype), torch.float32)
    old = old_log_prob.to(dt).detach()
    if ratio == "token":
        logp = log_prob.to(dt)
    else:
        logp = old + token_log_ratio(log_prob, old_log_prob, response_mask, ratio)
    adv = expand_advantages(advantages, log_prob.shape).to(dt)
    row = _terms(objective, params, logp[keep][None], old[keep][None], adv[keep][None])[0]
    out = torch.zeros(log_prob.shape, dtype=row.dtype, device=row.device)
    return out.index_put((keep,), row)


def objective_token_loss(objective: str, log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor,
                         response_mask: Tensor, *, params: Any = None, loss_agg_mode: str = "token-mean",
                         ratio: str = "token", token_weights: Tensor | None = None,
                         norm_length: float | None = None, n_tokens: float | None = None,
                         n_seqs: float | None = None, empty_rows: str = "exclude", scale: float = 1.0) -> Tensor:
    """``objective``'s loss of a token batch: its per-token terms, times ``token_weights``, aggregated.

    ``loss = sum_{b,t} w_bt * c_bt * l_bt`` with ``l`` from :func:`objective_token_terms`, ``c`` the
    ``token_weights`` ``(B, T)`` (default 1; no gradient flows into them) and ``w`` the aggregation weights of
    :func:`ladsim.llm.token_loss.agg_weights` for ``loss_agg_mode`` and the conventions ``norm_length``,
    ``n_tokens``, ``n_seqs``, ``empty_rows``, ``scale`` (defaults: this batch alone, empty rows excluded).
    """
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(AGG_MODES)}")
    terms = objective_token_terms(objective, log_prob, old_log_prob, advantages, response_mask, params=params,
                                  ratio=ratio)
    if token_weights is not None:
        check_float("token_weights", token_weights)
        if tuple(token_weights.shape) != tuple(terms.shape):
            raise ValueError(f"token_weights shape {tuple(token_weights.shape)} != log_prob shape "
                             f"{tuple(terms.shape)}")
        keep = bool_mask(response_mask)
        terms = terms * zero_masked(token_weights.detach().to(terms.dtype), keep)
    return agg_loss(terms, response_mask, loss_agg_mode, norm_length, n_tokens=n_tokens, n_seqs=n_seqs,
                    empty_rows=empty_rows, scale=scale)
