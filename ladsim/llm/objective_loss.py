"""A registered objective (:mod:`ladsim.objectives`) on a token batch ``(B, T)``: the entry point of the trainer
adapters (verl, TRL).

Shapes (as in :mod:`ladsim.llm.token_loss`): ``log_prob``, ``old_log_prob``, ``response_mask`` ``(B, T)``;
``advantages`` ``(B, T)`` or ``(B,)``; optional per-token ``entropy``, ``ref_log_prob`` ``(B, T)``.

How a token batch becomes the objective's :class:`Batch`: the valid tokens (``response_mask`` true) are
flattened, in row-major order, into ONE row of ``N`` entries, as verl flattens them for its batch statistics:
the covariances and top-n selections of clip-cov and kl-cov are taken over every valid token of the batch.
Objectives that cannot run on sampled tokens are refused with the reason (:func:`token_blocker`): ``lad-theory``
needs the whole action set, ``flowrl`` a learned log Z per prompt; ``entadv`` needs per-token entropies.
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

from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

from ladsim.llm.token_loss import (
    AGG_MODES,
    agg_loss,
    bool_mask,
    check_like_log_prob,
    check_token_inputs,
    expand_advantages,
    zero_masked,
)
from ladsim.objectives import Batch, Objective, get_objective, list_objectives, make_params, objective_terms
from ladsim.objectives.catalogue import token_inputs

RATIOS = ("token", "sequence", "sequence-mean")
TOKEN_INPUTS = ("entropy", "logp_ref")  # optional per-token inputs a trainer may provide


# --- which objectives a token batch can run ----------------------------------------------------------------

def token_blocker(objective: str | Objective, provides: Iterable[str] = TOKEN_INPUTS) -> str | None:
    """Why ``objective`` cannot run on a token batch whose trainer provides ``provides``, or ``None`` if it can."""
    obj = get_objective(objective)
    if obj.full_support:
        return (f"objective {obj.name!r} needs the whole action set (exact partition functions over every "
                "response), which a batch of sampled tokens does not have")
    if obj.init_state is not None:
        return (f"objective {obj.name!r} has trainable state of its own (FlowRL: a learned log Z per prompt), "
                "which a trainer's token loss cannot hold or optimize")
    missing = sorted(set(obj.needs) & set(TOKEN_INPUTS) - set(provides))
    if missing:
        return f"objective {obj.name!r} needs per-token {' and '.join(missing)}, which this trainer does not pass"
    return None


def token_objectives(provides: Iterable[str] = TOKEN_INPUTS) -> list[str]:
    """The registered objectives that run on token batches whose trainer provides ``provides``."""
    provides = tuple(provides)
    return [name for name in list_objectives() if token_blocker(name, provides) is None]


def check_token_objective(objective: str, provides: Iterable[str] = TOKEN_INPUTS) -> Objective:
    """The objective, or a ``ValueError`` saying why it cannot run on a token batch (:func:`token_blocker`)."""
    obj = get_objective(objective)
    why = token_blocker(obj, provides)
    if why is not None:
        raise ValueError(why)
    return obj


def make_token_params(objective: str, params: Any = None) -> Any:
    """``objective``'s parameters from ``None`` (defaults), a mapping of overrides, or a parameters object."""
    obj = get_objective(objective)
    if isinstance(params, obj.params):
        return params
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"params of {obj.name!r} must be a mapping or {obj.params.__name__}, "
                        f"got {type(params).__name__}")
    return make_params(obj, params)


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
                          response_mask: Tensor, *, params: Any = None, ratio: str | None = None,
                          entropy: Tensor | None = None, ref_log_prob: Tensor | None = None,
                          generator: torch.Generator | None = None) -> Tensor:
    """Per-token loss terms ``(B, T)`` of ``objective`` (float32 or wider, 0 where masked; to minimize).

    The valid tokens form one row of the registry's :class:`ladsim.objectives.Batch` (module docstring);
    ``params``: ``None``, a mapping or the parameters object; ``ratio``: ``None`` for the objective's own (the
    token ratio, or the sequence-mean ratio of a response-unit objective such as GSPO:
    :func:`ladsim.objectives.catalogue.token_ratio`); the inputs an objective reads a whole response through
    (GMPO's clipped token log-ratios, VESPO's summed one) are formed here
    (:func:`ladsim.objectives.catalogue.token_inputs`); ``entropy``/``ref_log_prob`` ``(B, T)`` for the
    objectives that read them; ``generator`` for those that draw (clip-cov).
    """
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask)
    provides = [name for name, x in (("entropy", entropy), ("logp_ref", ref_log_prob)) if x is not None]
    obj = check_token_objective(objective, provides)
    params = make_token_params(obj.name, params)
    log_prob, old_log_prob, ratio = token_inputs(obj.name, log_prob, old_log_prob, advantages, response_mask,
                                                 params, ratio)
    keep = bool_mask(response_mask)
    dt = torch.promote_types(torch.promote_types(log_prob.dtype, old_log_prob.dtype), torch.float32)
    old = old_log_prob.to(dt).detach()
    if ratio == "token":
        logp = log_prob.to(dt)
    else:
        logp = old + token_log_ratio(log_prob, old_log_prob, response_mask, ratio)
    adv = expand_advantages(advantages, log_prob.shape).to(dt)
    idx = keep.nonzero(as_tuple=True)  # once: each boolean-mask index would sync with the device again
    extra = {}
    for name, x in (("entropy", entropy), ("logp_ref", ref_log_prob)):
        if x is not None:
            check_like_log_prob(name, x, log_prob)
            extra[name] = x.to(dt)[idx][None]
    batch = Batch(logp=logp[idx][None], logp_old=old[idx][None], advantages=adv[idx][None],
                  generator=generator, **extra)
    row = objective_terms(obj, batch, params)[0]
    out = torch.zeros(log_prob.shape, dtype=row.dtype, device=row.device)
    return out.index_put(idx, row)


def objective_token_loss(objective: str, log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor,
                         response_mask: Tensor, *, params: Any = None, loss_agg_mode: str = "token-mean",
                         ratio: str | None = None, token_weights: Tensor | None = None,
                         norm_length: float | None = None, n_tokens: float | None = None,
                         n_seqs: float | None = None, empty_rows: str = "exclude", scale: float = 1.0,
                         entropy: Tensor | None = None, ref_log_prob: Tensor | None = None,
                         generator: torch.Generator | None = None) -> Tensor:
    """``objective``'s loss of a token batch: its per-token terms, times ``token_weights``, aggregated.

    ``loss = sum_{b,t} w_bt * c_bt * l_bt`` with ``l`` from :func:`objective_token_terms`, ``c`` the
    ``token_weights`` ``(B, T)`` (default 1; no gradient flows into them) and ``w`` the aggregation weights of
    :func:`ladsim.llm.token_loss.agg_weights` for ``loss_agg_mode`` and the conventions ``norm_length``,
    ``n_tokens``, ``n_seqs``, ``empty_rows``, ``scale`` (defaults: this batch alone, empty rows excluded).
    """
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(AGG_MODES)}")
    terms = objective_token_terms(objective, log_prob, old_log_prob, advantages, response_mask, params=params,
                                  ratio=ratio, entropy=entropy, ref_log_prob=ref_log_prob, generator=generator)
    if token_weights is not None:
        check_like_log_prob("token_weights", token_weights, log_prob)
        keep = bool_mask(response_mask)
        terms = terms * zero_masked(token_weights.detach().to(terms.dtype), keep)
    return agg_loss(terms, response_mask, loss_agg_mode, norm_length, n_tokens=n_tokens, n_seqs=n_seqs,
                    empty_rows=empty_rows, scale=scale)
