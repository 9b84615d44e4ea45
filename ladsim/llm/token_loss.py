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
from ladsim.losses import _check_eta, grpo_terms, lad_terms

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
RATIO_KINDS = ("token", "sequence")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --- validation -------------------------------------------------------------------------------------

def _check_float(name: str, x: Any) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")  # noqa: TRY004
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")


def check_token_inputs(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                       loss_agg_mode: str = "token-mean") -> None:
    """Raise ``ValueError`` (one line) unless the inputs have the shapes and dtypes described in the module."""
    _check_float("log_prob", log_prob)
    _check_float("old_log_prob", old_log_prob)
    _check_float("advantages", advantages)
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


def _bool_mask(response_mask: Tensor) -> Tensor:
    return response_mask if response_mask.dtype == torch.bool else response_mask != 0


def _expand_adv(advantages: Tensor, shape: torch.Size) -> Tensor:
    return advantages[:, None].expand(shape) if advantages.dim() == 1 else advantages


# --- aggregation ------------------------------------------------------------------------------------

def agg_weights(response_mask: Tensor, loss_agg_mode: str = "token-mean",
                norm_length: float | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-token weights ``w (B, T)`` (``dtype``, 0 where masked) with ``loss = sum_{b,t} w * l``.

    Every mode of the module docstring is linear in the per-token losses, so one weight tensor describes it;
    the fused paths use these weights directly. ``norm_length`` is used by ``seq-mean-token-sum-norm`` only.
    """
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(LOSS_AGG_MODES)}")
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask must be (batch, response_length), got {tuple(response_mask.shape)}")
    m = _bool_mask(response_mask).to(dtype)
    if loss_agg_mode == "token-mean":
        return m / m.sum().clamp(min=1.0)
    lengths = m.sum(-1, keepdim=True)
    n_seq = (lengths > 0).sum().clamp(min=1).to(dtype)
    if loss_agg_mode == "seq-mean-token-sum":
        return m / n_seq
    if loss_agg_mode == "seq-mean-token-mean":
        return m / lengths.clamp(min=1.0) / n_seq
    norm = float(response_mask.shape[-1] if norm_length is None else norm_length)
    if not norm > 0:
        raise ValueError(f"norm_length must be > 0, got {norm_length!r}")
    return m / (n_seq * norm)


def agg_loss(loss_mat: Tensor, response_mask: Tensor, loss_agg_mode: str = "token-mean",
             norm_length: float | None = None) -> Tensor:
    """Aggregate a per-token loss matrix ``(B, T)`` to a scalar by ``loss_agg_mode`` (float32 or wider).

    Masked entries are replaced by 0 before weighting, so padding holding ``inf``/``nan`` is harmless.
    """
    if tuple(loss_mat.shape) != tuple(response_mask.shape):
        raise ValueError(f"loss_mat shape {tuple(loss_mat.shape)} != response_mask shape "
                         f"{tuple(response_mask.shape)}")
    keep = _bool_mask(response_mask)
    dtype = torch.promote_types(loss_mat.dtype, torch.float32)
    w = agg_weights(response_mask, loss_agg_mode, norm_length, dtype)
    lm = torch.where(keep, loss_mat.to(dtype), torch.zeros((), dtype=dtype, device=loss_mat.device))
    return (lm * w).sum()


def _sanitize(x: Tensor, keep: Tensor) -> Tensor:
    """Zero masked entries (through ``where``, so no gradient or NaN leaks from padding)."""
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def sequence_log_ratio(log_prob: Tensor, old_log_prob: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_t m logp_t, sum_t m logp_old_t)``, each ``(B,)`` float64: log pi(y|x), log pi_old(y|x).

    float64 because a response's log-ratio sums T tokens: 1000 tokens of log-ratio 0.5 give ``exp(500)``, past
    float32 (the loss was ``inf``); the sequence terms, one per response, are cheap in float64.
    """
    keep = _bool_mask(response_mask)
    return (_sanitize(log_prob.to(torch.float64), keep).sum(-1),
            _sanitize(old_log_prob.to(torch.float64), keep).sum(-1))


def sequence_advantages(advantages: Tensor, response_mask: Tensor) -> Tensor:
    """One advantage per response ``(B,)``: ``advantages`` itself if ``(B,)``, else its masked token mean."""
    if advantages.dim() == 1:
        return advantages.to(torch.promote_types(advantages.dtype, torch.float32))
    keep = _bool_mask(response_mask)
    a = _sanitize(advantages.to(torch.promote_types(advantages.dtype, torch.float32)), keep)
    return a.sum(-1) / keep.sum(-1).clamp(min=1).to(a.dtype)


def _sequence_aggregate(seq_terms: Tensor, response_mask: Tensor, loss_agg_mode: str,
                        norm_length: float | None) -> Tensor:
    """One term per response: the mean over non-empty responses (``/ norm_length`` for the ``-norm`` mode)."""
    nonempty = _bool_mask(response_mask).any(-1, keepdim=True)
    mode = "seq-mean-token-sum-norm" if loss_agg_mode == "seq-mean-token-sum-norm" else "seq-mean-token-sum"
    norm = response_mask.shape[-1] if norm_length is None else norm_length
    return agg_loss(seq_terms[:, None], nonempty, mode, norm)


# --- losses -----------------------------------------------------------------------------------------

def lad_token_terms(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor, *,
                    eta: float, div: str | Divergence = "js") -> Tensor:
    """Per-token practical LAD summands ``exp(u) f(r exp(-u))`` ``(B, T)`` (0 where masked), via the core."""
    check_token_inputs(log_prob, old_log_prob, advantages, response_mask)
    keep = _bool_mask(response_mask)
    adv = _expand_adv(advantages, log_prob.shape)
    terms = lad_terms(_sanitize(log_prob, keep), _sanitize(old_log_prob, keep), _sanitize(adv, keep),
                      eta=eta, div=div)
    return _sanitize(terms, keep)


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
    _check_eta(eta)
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
        _check_float("ref_log_prob", ref_log_prob)
        if tuple(ref_log_prob.shape) != tuple(log_prob.shape):
            raise ValueError(f"ref_log_prob shape {tuple(ref_log_prob.shape)} != log_prob shape "
                             f"{tuple(log_prob.shape)}")
    keep = _bool_mask(response_mask)
    if ratio == "token":
        ref = None if ref_log_prob is None else _sanitize(ref_log_prob, keep)
        terms = grpo_terms(_sanitize(log_prob, keep), _sanitize(old_log_prob, keep),
                           _sanitize(_expand_adv(advantages, log_prob.shape), keep), eps_low=eps_low,
                           eps_high=eps_high, beta=beta, logp_ref=ref)
        return agg_loss(terms, response_mask, loss_agg_mode, norm_length)
    if ratio == "sequence":
        lp, lp_old = sequence_log_ratio(log_prob, old_log_prob, response_mask)
        ref = None if ref_log_prob is None else sequence_log_ratio(ref_log_prob, old_log_prob, response_mask)[0]
        seq_terms = grpo_terms(lp, lp_old, sequence_advantages(advantages, response_mask), eps_low=eps_low,
                               eps_high=eps_high, beta=beta, logp_ref=ref)
        return _sequence_aggregate(seq_terms, response_mask, loss_agg_mode, norm_length)
    raise ValueError(f"unknown ratio {ratio!r}; choose one of: {', '.join(RATIO_KINDS)}")


# --- verl's policy-loss signature -------------------------------------------------------------------

def _cfg_get(config: Any, key: str, default: Any) -> Any:
    """Look ``key`` up in ``config.policy_loss`` then ``config`` (attributes or mapping keys)."""
    for scope in (getattr(config, "policy_loss", None) if config is not None else None, config):
        if scope is None:
            continue
        if isinstance(scope, dict):
            if key in scope:
                return scope[key]
        else:
            val = getattr(scope, key, None)
            if val is None and hasattr(scope, "get"):
                try:
                    val = scope.get(key)
                except Exception:  # noqa: BLE001 - any mapping-like object without this key
                    val = None
            if val is not None:
                return val
    return default


def make_verl_policy_loss(eta: float = 1.0, div: str = "js", ratio: str = "token", fused: bool = False):
    """A policy loss with verl's signature, with LAD's settings fixed here unless the config overrides them.

    The returned function is
    ``(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None)
    -> (loss, clipfrac, approx_kl, clipfrac_lower)``. Config keys (looked up in ``config.policy_loss`` then
    ``config``): ``lad_eta``, ``lad_divergence``, ``lad_ratio`` (``token``/``sequence``), ``lad_fused``.
    LAD clips nothing, so ``clipfrac`` and ``clipfrac_lower`` are 0; ``approx_kl`` is the masked token mean of
    ``old_log_prob - log_prob`` (detached), the quantity verl logs as ``ppo_kl``.
    """
    def lad_policy_loss(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                        loss_agg_mode: str = "token-mean", config: Any = None, **_: Any):
        e = float(_cfg_get(config, "lad_eta", eta))
        d = str(_cfg_get(config, "lad_divergence", div))
        r = str(_cfg_get(config, "lad_ratio", ratio))
        use_fused = bool(_cfg_get(config, "lad_fused", fused))
        if use_fused and r == "token":
            from ladsim.llm.fused import fused_lad_loss
            loss = fused_lad_loss(log_prob, old_log_prob, advantages, response_mask, eta=e, div=d,
                                  loss_agg_mode=loss_agg_mode)
        else:
            loss = lad_token_loss(log_prob, old_log_prob, advantages, response_mask, eta=e, div=d,
                                  loss_agg_mode=loss_agg_mode, ratio=r)
        with torch.no_grad():
            keep = _bool_mask(response_mask)
            diff = _sanitize(old_log_prob.float() - log_prob.float(), keep)
            approx_kl = diff.sum() / keep.sum().clamp(min=1)
            zero = torch.zeros((), device=log_prob.device)
        return loss, zero, approx_kl, zero.clone()

    lad_policy_loss.__doc__ = make_verl_policy_loss.__doc__
    return lad_policy_loss


verl_lad_policy_loss = make_verl_policy_loss()
"""LAD with verl's policy-loss signature; defaults eta=1, JS, token ratios (override via the config keys)."""
