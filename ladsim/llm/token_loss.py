"""Token-level LAD and GRPO over ``(batch, response_length)`` tensors, with verl's aggregation modes.

Every loss here is built on the shared core (:func:`ladsim.losses.lad_terms`, :func:`ladsim.losses.grpo_terms`),
so a token batch and a bandit compute the very same numbers. Shapes, throughout:

* ``log_prob``, ``old_log_prob``  ``(B, T)``  log pi_theta and log pi_old of each response token;
* ``advantages``                  ``(B, T)`` or ``(B,)`` (one outcome advantage per response);
* ``response_mask``               ``(B, T)``  bool or 0/1; 0 marks padding (a row may be entirely 0);

Aggregation (``loss_agg_mode``), ``m`` the mask, ``l`` the per-token loss, ``S`` the set of responses with at
least one unmasked token (fully masked rows are excluded from every sequence mean; a batch with no unmasked
token has loss 0):

* ``token-mean``               ``sum_{b,t} m l / sum_{b,t} m``
* ``seq-mean-token-sum``       ``1/|S| sum_{b in S} sum_t m l``
* ``seq-mean-token-mean``      ``1/|S| sum_{b in S} (sum_t m l / sum_t m)``
* ``seq-mean-token-sum-norm``  ``1/|S| sum_{b in S} (sum_t m l) / norm_length`` (Dr.GRPO; ``norm_length``
  defaults to ``T``, the padded response length; pass a constant for a length-independent normalizer)

Ratios. ``ratio="token"``: per-token ratios ``r_t = exp(logp_t - logp_old_t)``, one LAD summand per token (what
verl and TRL do for PPO/GRPO). ``ratio="sequence"``: one ratio per response, ``r = pi_theta(y|x)/pi_old(y|x)
= exp(sum_t m (logp_t - logp_old_t))``, with the response's advantage (the masked token mean of
``advantages``). LAD's objective is written over whole responses ``y`` (LAD_SPEC, "practical LAD loss"), so the
sequence-level ratio is the one the formula states; the token-level form is the usual practical surrogate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ladsim.divergences import Divergence, get_divergence
from ladsim.losses import check_eta, grpo_terms, lad_terms

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
AGG_MODES = LOSS_AGG_MODES + ("token-sum",)  # verl's fifth mode: ``sum m l`` (aggregation only)
RATIO_KINDS = ("token", "sequence")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --- validation -------------------------------------------------------------------------------------

def check_float(name: str, x: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``x`` is a float16/bfloat16/float32/float64 tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")  # noqa: TRY004
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")


def check_like_log_prob(name: str, x: Any, log_prob: Tensor) -> None:
    """``check_float`` and the shape of ``log_prob``, for an optional per-token input (``ValueError`` naming it)."""
    check_float(name, x)
    if tuple(x.shape) != tuple(log_prob.shape):
        raise ValueError(f"{name} shape {tuple(x.shape)} != log_prob shape {tuple(log_prob.shape)}")


def check_token_inputs(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                       loss_agg_mode: str = "token-mean") -> None:
    """Raise ``ValueError`` (one line) unless the inputs have the shapes and dtypes described in the module."""
    check_float("log_prob", log_prob)
    check_float("old_log_prob", old_log_prob)
    check_float("advantages", advantages)
    if not isinstance(response_mask, Tensor):
        raise ValueError(  # noqa: TRY004 - the API promises ValueError
            f"response_mask must be a torch.Tensor, got {type(response_mask).__name__}")
    if response_mask.is_complex():
        raise ValueError(f"response_mask must be bool or real 0/1, got {response_mask.dtype}")
    if log_prob.dim() != 2:
        raise ValueError(f"log_prob must be (batch, response_length), got shape {tuple(log_prob.shape)}")
    if log_prob.numel() == 0:
        raise ValueError(f"empty batch: log_prob has shape {tuple(log_prob.shape)}")
    shape = tuple(log_prob.shape)
    if tuple(old_log_prob.shape) != shape:
        raise ValueError(f"old_log_prob shape {tuple(old_log_prob.shape)} != log_prob shape {shape}")
    if tuple(response_mask.shape) != shape:
        raise ValueError(f"response_mask shape {tuple(response_mask.shape)} != log_prob shape {shape}")
    if tuple(advantages.shape) not in (shape, shape[:1]):
        raise ValueError(f"advantages must be {shape} or {shape[:1]}, got {tuple(advantages.shape)}")
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(LOSS_AGG_MODES)}")


def bool_mask(response_mask: Tensor) -> Tensor:
    """The response mask as bool (``!= 0`` for 0/1 masks)."""
    return response_mask if response_mask.dtype == torch.bool else response_mask != 0


def expand_advantages(advantages: Tensor, shape: torch.Size) -> Tensor:
    """``(B,)`` outcome advantages broadcast to ``(B, T)``; ``(B, T)`` ones unchanged."""
    return advantages[:, None].expand(shape) if advantages.dim() == 1 else advantages



# --- aggregation ------------------------------------------------------------------------------------

EMPTY_ROWS = ("exclude", "include")


def _check_count(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def agg_weights(response_mask: Tensor, loss_agg_mode: str = "token-mean",
                norm_length: float | None = None, dtype: torch.dtype = torch.float32, *,
                n_tokens: float | None = None, n_seqs: float | None = None, empty_rows: str = "exclude",
                scale: float = 1.0) -> Tensor:
    """Per-token weights ``w (B, T)`` (``dtype``, 0 where masked) with ``loss = sum_{b,t} w * l``.

    Every mode of the module docstring is linear in the per-token losses, so one weight tensor describes it;
    the fused paths use these weights directly. ``norm_length`` is used by ``seq-mean-token-sum-norm`` only.
    ``token-sum`` (verl) is ``sum m l``.

    Global normalizers (the conventions a trainer needs when one loss is split into micro-batches whose
    gradients are summed; all default to this batch alone):

    * ``n_tokens``: the ``token-mean`` denominator (default ``sum m``): verl's ``batch_num_tokens``, TRL's
      ``dapo`` token count of the accumulation window;
    * ``n_seqs``: the sequence-mean denominator (default: the number of responses counted by ``empty_rows``):
      verl's ``global_batch_size``;
    * ``empty_rows``: ``"exclude"`` (default) leaves fully masked rows out of the local sequence count;
      ``"include"`` counts every row (TRL divides by the batch size ``B``);
    * ``scale``: a final factor (verl's ``dp_size``: data-parallel ranks average gradients).
    """
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(AGG_MODES)}")
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask must be (batch, response_length), got {tuple(response_mask.shape)}")
    if empty_rows not in EMPTY_ROWS:
        raise ValueError(f"empty_rows must be one of {', '.join(EMPTY_ROWS)}, got {empty_rows!r}")
    scale = _check_count("scale", scale)
    m = bool_mask(response_mask).to(dtype)
    if loss_agg_mode == "token-sum":
        return m * scale
    if loss_agg_mode == "token-mean":
        denom = m.sum().clamp(min=1.0) if n_tokens is None else _check_count("n_tokens", n_tokens)
        return m * (scale / denom)
    lengths = m.sum(-1, keepdim=True)
    if n_seqs is not None:
        seqs = _check_count("n_seqs", n_seqs)
    elif empty_rows == "include":
        seqs = float(response_mask.shape[0])
    else:
        seqs = (lengths > 0).sum().clamp(min=1).to(dtype)
    if loss_agg_mode == "seq-mean-token-sum":
        return m * (scale / seqs)
    if loss_agg_mode == "seq-mean-token-mean":
        return m / lengths.clamp(min=1.0) * (scale / seqs)
    norm = float(response_mask.shape[-1] if norm_length is None else norm_length)
    if not norm > 0:
        raise ValueError(f"norm_length must be > 0, got {norm_length!r}")
    return m * (scale / (seqs * norm))


def agg_loss(loss_mat: Tensor, response_mask: Tensor, loss_agg_mode: str = "token-mean",
             norm_length: float | None = None, *, n_tokens: float | None = None, n_seqs: float | None = None,
             empty_rows: str = "exclude", scale: float = 1.0) -> Tensor:
    """Aggregate a per-token loss matrix ``(B, T)`` to a scalar by ``loss_agg_mode`` (float32 or wider).

    Masked entries are replaced by 0 before weighting, so padding holding ``inf``/``nan`` is harmless.
    ``n_tokens``, ``n_seqs``, ``empty_rows``, ``scale``: the global normalizers of :func:`agg_weights`.
    """
    if tuple(loss_mat.shape) != tuple(response_mask.shape):
        raise ValueError(f"loss_mat shape {tuple(loss_mat.shape)} != response_mask shape "
                         f"{tuple(response_mask.shape)}")
    keep = bool_mask(response_mask)
    dtype = torch.promote_types(loss_mat.dtype, torch.float32)
    w = agg_weights(response_mask, loss_agg_mode, norm_length, dtype, n_tokens=n_tokens, n_seqs=n_seqs,
                    empty_rows=empty_rows, scale=scale)
    lm = torch.where(keep, loss_mat.to(dtype), torch.zeros((), dtype=dtype, device=loss_mat.device))
    return (lm * w).sum()


def zero_masked(x: Tensor, keep: Tensor) -> Tensor:
    """Zero masked entries (through ``where``, so no gradient or NaN leaks from padding)."""
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def sequence_log_ratio(log_prob: Tensor, old_log_prob: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_t m logp_t, sum_t m logp_old_t)``, each ``(B,)`` float64: log pi(y|x), log pi_old(y|x).

    float64 because a response's log-ratio sums T tokens: 1000 tokens of log-ratio 0.5 give ``exp(500)``, past
    float32 (the loss was ``inf``); the sequence terms, one per response, are cheap in float64.
    """
    keep = bool_mask(response_mask)
    return (zero_masked(log_prob.to(torch.float64), keep).sum(-1),
            zero_masked(old_log_prob.to(torch.float64), keep).sum(-1))


def sequence_advantages(advantages: Tensor, response_mask: Tensor) -> Tensor:
    """One advantage per response ``(B,)``: ``advantages`` itself if ``(B,)``, else its masked token mean."""
    if advantages.dim() == 1:
        return advantages.to(torch.promote_types(advantages.dtype, torch.float32))
    keep = bool_mask(response_mask)
    a = zero_masked(advantages.to(torch.promote_types(advantages.dtype, torch.float32)), keep)
    return a.sum(-1) / keep.sum(-1).clamp(min=1).to(a.dtype)


def _sequence_aggregate(seq_terms: Tensor, response_mask: Tensor, loss_agg_mode: str,
                        norm_length: float | None) -> Tensor:
    """One term per response: the mean over non-empty responses (``/ norm_length`` for the ``-norm`` mode)."""
    nonempty = bool_mask(response_mask).any(-1, keepdim=True)
    mode = "seq-mean-token-sum-norm" if loss_agg_mode == "seq-mean-token-sum-norm" else "seq-mean-token-sum"
    norm = response_mask.shape[-1] if norm_length is None else norm_length
    return agg_loss(seq_terms[:, None], nonempty, mode, norm)


# --- losses -----------------------------------------------------------------------------------------

def lad_token_terms(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor, *,
                    eta: float, div: str | Divergence = "js") -> Tensor:
    """Per-token practical LAD summands ``exp(u) f(r exp(-u))`` ``(B, T)`` (0 where masked), via the core."""
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask)
    keep = bool_mask(response_mask)
    adv = expand_advantages(advantages, log_prob.shape)
    terms = lad_terms(zero_masked(log_prob, keep), zero_masked(old_log_prob, keep), zero_masked(adv, keep),
                      eta=eta, div=div)
    return zero_masked(terms, keep)


def lad_token_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor, *,
                   eta: float = 1.0, div: str | Divergence = "js", loss_agg_mode: str = "token-mean",
                   ratio: str = "token", norm_length: float | None = None) -> Tensor:
    """Practical LAD loss of a token batch (the eager reference; to minimize), a float32 (or float64) scalar.

    ``ratio="token"``: ``agg_{b,t}[ exp(u_bt) f(r_bt exp(-u_bt)) ]``, ``u = A/eta``, ``r_bt = exp(logp - logp_old)``.
    ``ratio="sequence"``: ``mean_{b in S}[ exp(u_b) f(r_b exp(-u_b)) ]`` with ``r_b = exp(sum_t m (logp - logp_old))``
    and ``u_b`` the response's advantage over ``eta`` (see the module docstring).
    Inputs: see the module docstring; any float dtype, accumulated in float32 (float64 stays float64).
    """
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask, loss_agg_mode)
    check_eta(eta)
    get_divergence(div)
    if ratio == "token":
        terms = lad_token_terms(log_prob, old_log_prob, advantages, response_mask, eta=eta, div=div)
        return agg_loss(terms, response_mask, loss_agg_mode, norm_length)
    if ratio == "sequence":
        lp, lp_old = sequence_log_ratio(log_prob, old_log_prob, response_mask)
        seq_terms = lad_terms(lp, lp_old, sequence_advantages(advantages, response_mask), eta=eta, div=div)
        return _sequence_aggregate(seq_terms, response_mask, loss_agg_mode, norm_length)
    raise ValueError(f"unknown ratio {ratio!r}; choose one of: {', '.join(RATIO_KINDS)}")


def grpo_token_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor, *,
                    eps_low: float | None = 0.2, eps_high: float | None = 0.2, beta: float = 0.0,
                    ref_log_prob: Tensor | None = None, loss_agg_mode: str = "token-mean",
                    ratio: str = "token", norm_length: float | None = None) -> Tensor:
    """GRPO loss ``-J_GRPO`` of a token batch via the core's ``grpo_terms`` (clipped surrogate + k3 KL).

    ``ratio="sequence"`` clips the response-level ratio ``exp(sum_t m (logp - logp_old))`` (GSPO-like without
    length normalization); ``beta`` then uses the summed reference log-probs. Shapes as in the module docstring.
    """
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask, loss_agg_mode)
    if ref_log_prob is not None:
        check_like_log_prob("ref_log_prob", ref_log_prob, log_prob)
    keep = bool_mask(response_mask)
    if ratio == "token":
        ref = None if ref_log_prob is None else zero_masked(ref_log_prob, keep)
        terms = grpo_terms(zero_masked(log_prob, keep), zero_masked(old_log_prob, keep),
                           zero_masked(expand_advantages(advantages, log_prob.shape), keep), eps_low=eps_low,
                           eps_high=eps_high, beta=beta, logp_ref=ref)
        return agg_loss(terms, response_mask, loss_agg_mode, norm_length)
    if ratio == "sequence":
        lp, lp_old = sequence_log_ratio(log_prob, old_log_prob, response_mask)
        ref = None if ref_log_prob is None else sequence_log_ratio(ref_log_prob, old_log_prob, response_mask)[0]
        seq_terms = grpo_terms(lp, lp_old, sequence_advantages(advantages, response_mask), eps_low=eps_low,
                               eps_high=eps_high, beta=beta, logp_ref=ref)
        return _sequence_aggregate(seq_terms, response_mask, loss_agg_mode, norm_length)
    raise ValueError(f"unknown ratio {ratio!r}; choose one of: {', '.join(RATIO_KINDS)}")
