"""Per-token log-probs and the LAD loss from hidden states and the LM head, chunk by chunk.

An LLM's response tokens have hidden states ``h (N, d)``; the LM head ``W (V, d)`` gives logits ``h W^T / tau``
(``tau`` the sampling temperature) and ``logp_i = logits_i[y_i] - logsumexp(logits_i)``. Materializing the
``N x V`` logits (and their softmax and gradient) dominates memory at LLM vocabulary sizes. Here the tokens are
processed ``chunk_size`` at a time, so at most a few ``chunk_size x V`` blocks exist at once:

* :func:`chunked_token_logprobs` - differentiable ``logp (N,)``; backward recomputes each chunk's logits
  (4 matmuls in all instead of 3) and composes with any loss (token- or sequence-level, LAD or GRPO);
* :func:`fused_linear_lad_loss` - token-level LAD computed with its gradients in the forward pass, chunk by
  chunk (3 matmuls, like the materialized path): ``dL/dlogits_i = g_i (onehot(y_i) - softmax_i)`` with
  ``g_i = dL/dlogp_i`` from :func:`ladsim.llm.fused.lad_grad_weight`; it saves only ``dL/dh (N, d)`` and
  ``dL/dW (V, d)``, which backward scales by the incoming gradient;
* :func:`materialized_lad_loss` - the reference that builds the full logits.

Matmuls and softmax run in float32 (float64 for float64 inputs); bfloat16 ``h``/``W`` are upcast (``W`` once,
a ``V x d`` float32 copy). Gradients are returned in the inputs' dtypes. No bias term (LM heads have none).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ladsim.divergences import Divergence, get_divergence
from ladsim.llm.fused import lad_kernel, value_and_grad_fn
from ladsim.llm.token_loss import (
    FLOAT_DTYPES,
    bool_mask,
    expand_advantages,
    agg_weights,
    check_token_inputs,
    lad_token_loss,
)
from ladsim.losses import check_eta

CHUNK_ELEMENTS = 1 << 24  # auto chunk: one chunk of logits holds about 2^24 values (64 MiB in float32)


def auto_chunk_size(vocab: int, n_tokens: int) -> int:
    """Tokens per chunk so that ``chunk x vocab`` is about :data:`CHUNK_ELEMENTS` (at least 16, at most N)."""
    return max(1, min(n_tokens, max(16, CHUNK_ELEMENTS // max(vocab, 1))))


def _check_linear(hidden: Tensor, weight: Tensor, targets: Tensor, chunk_size: int | None,
                  temperature: float) -> None:
    for name, x in (("hidden", hidden), ("weight", weight)):
        if not isinstance(x, Tensor) or x.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be a floating-point torch.Tensor, got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(targets, Tensor) or targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be an int64/int32 tensor of token ids, got "
                         f"{getattr(targets, 'dtype', type(targets).__name__)}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be the LM head (vocab, dim), got shape {tuple(weight.shape)}")
    if hidden.dim() < 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden must be (..., {weight.shape[1]}) to match weight {tuple(weight.shape)}, "
                         f"got {tuple(hidden.shape)}")
    if tuple(targets.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"targets shape {tuple(targets.shape)} != hidden's leading shape "
                         f"{tuple(hidden.shape[:-1])}")
    if hidden.numel() == 0:
        raise ValueError(f"empty batch: hidden has shape {tuple(hidden.shape)}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= weight.shape[0]):
        raise ValueError(f"targets must lie in [0, {weight.shape[0]}), got range "
                         f"[{int(targets.min())}, {int(targets.max())}]")


def _compute_dtype(*xs: Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def _chunk_logits(h_c: Tensor, w: Tensor, dt: torch.dtype, temperature: float) -> Tensor:
    logits = h_c.to(dt) @ w.T
    if temperature != 1.0:
        logits.div_(temperature)
    return logits


def _softmax_grad_(logits: Tensor, lse: Tensor, g: Tensor, tgt: Tensor, temperature: float) -> Tensor:
    """In place: ``logits -> g (onehot(tgt) - softmax) / tau``, the gradient of ``g * logp`` wrt ``h W^T``."""
    logits.sub_(lse[:, None]).exp_().mul_(-g[:, None])
    logits.scatter_add_(1, tgt[:, None], g[:, None])
    if temperature != 1.0:
        logits.div_(temperature)
    return logits


class _ChunkedLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, tgt: Tensor, chunk: int, temperature: float) -> Tensor:
        dt = _compute_dtype(h, w)
        wc = w.to(dt)
        n = h.shape[0]
        logp = torch.empty(n, dtype=dt, device=h.device)
        lse = torch.empty(n, dtype=dt, device=h.device)
        for s in range(0, n, chunk):
            logits = _chunk_logits(h[s:s + chunk], wc, dt, temperature)
            lse[s:s + chunk] = torch.logsumexp(logits, dim=-1)
            logp[s:s + chunk] = logits.gather(1, tgt[s:s + chunk, None])[:, 0] - lse[s:s + chunk]
            del logits
        ctx.save_for_backward(h, w, tgt, lse)
        ctx.chunk, ctx.temperature = chunk, temperature
        return logp

    @staticmethod
    def backward(ctx, grad_logp: Tensor):
        h, w, tgt, lse = ctx.saved_tensors
        dt = lse.dtype
        wc = w.to(dt)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty(h.shape, dtype=dt, device=h.device) if need_h else None
        grad_w = torch.zeros(wc.shape, dtype=dt, device=w.device) if need_w else None
        g_all = grad_logp.to(dt)
        for s in range(0, h.shape[0], ctx.chunk):
            h_c = h[s:s + ctx.chunk].to(dt)
            gl = _softmax_grad_(_chunk_logits(h_c, wc, dt, ctx.temperature), lse[s:s + ctx.chunk],
                                g_all[s:s + ctx.chunk], tgt[s:s + ctx.chunk], ctx.temperature)
            if need_h:
                grad_h[s:s + ctx.chunk] = gl @ wc
            if need_w:
                grad_w.addmm_(gl.T, h_c)
            del gl
        return (None if grad_h is None else grad_h.to(h.dtype),
                None if grad_w is None else grad_w.to(w.dtype), None, None, None)


def chunked_token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, *, chunk_size: int | None = None,
                           temperature: float = 1.0) -> Tensor:
    """``log softmax(h W^T / tau)[y]`` per token, differentiable, without the full logits.

    Shapes: ``hidden (..., d)``, ``weight (V, d)``, ``targets (...)`` int -> ``(...)`` float32 (float64 if an
    input is float64). ``chunk_size`` tokens per chunk (default :func:`auto_chunk_size`).
    """
    _check_linear(hidden, weight, targets, chunk_size, temperature)
    lead = hidden.shape[:-1]
    h = hidden.reshape(-1, hidden.shape[-1])
    tgt = targets.reshape(-1).long()
    chunk = chunk_size or auto_chunk_size(weight.shape[0], h.shape[0])
    return _ChunkedLogProb.apply(h, weight, tgt, chunk, float(temperature)).reshape(lead)


def materialized_token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, *,
                                temperature: float = 1.0) -> Tensor:
    """The reference: full ``(..., V)`` logits in float32 (float64), ``log_softmax``, gather. Shapes as above."""
    _check_linear(hidden, weight, targets, None, temperature)
    dt = _compute_dtype(hidden, weight)
    logits = hidden.to(dt) @ weight.to(dt).T / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.long()[..., None])[..., 0]


def materialized_lad_loss(hidden: Tensor, weight: Tensor, targets: Tensor, old_log_prob: Tensor,
                          advantages: Tensor, response_mask: Tensor, *, eta: float = 1.0,
                          div: str | Divergence = "js", loss_agg_mode: str = "token-mean",
                          ratio: str = "token", norm_length: float | None = None,
                          temperature: float = 1.0) -> Tensor:
    """Reference LAD from hidden states: materialized log-probs, then :func:`lad_token_loss` (autograd).

    Shapes: ``hidden (B, T, d)``, ``weight (V, d)``, ``targets, old_log_prob, response_mask (B, T)``,
    ``advantages (B, T)`` or ``(B,)``; returns a scalar.
    """
    logp = materialized_token_logprobs(hidden, weight, targets, temperature=temperature)
    return lad_token_loss(logp, old_log_prob, advantages, response_mask, eta=eta, div=div,
                          loss_agg_mode=loss_agg_mode, ratio=ratio, norm_length=norm_length)


class _FusedLinearLAD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, tgt: Tensor, old: Tensor, adv: Tensor, weights: Tensor, keep: Tensor,
                eta: float, div: Divergence, chunk: int, temperature: float, need_h: bool,
                need_w: bool) -> Tensor:
        dt = _compute_dtype(h, w, old)
        wc = w.to(dt)
        n = h.shape[0]
        grad_h = torch.empty(h.shape, dtype=dt, device=h.device) if need_h else None
        grad_w = torch.zeros(wc.shape, dtype=dt, device=w.device) if need_w else None
        loss = torch.zeros((), dtype=dt, device=h.device)
        value_and_grad = value_and_grad_fn(div)
        for s in range(0, n, chunk):
            sl = slice(s, s + chunk)
            h_c = h[sl].to(dt)
            logits = _chunk_logits(h_c, wc, dt, temperature)
            lse = torch.logsumexp(logits, dim=-1)
            logp = logits.gather(1, tgt[sl, None])[:, 0] - lse
            chunk_loss, g = lad_kernel(logp, old[sl], adv[sl], weights[sl].to(dt), keep[sl], eta, value_and_grad)
            loss += chunk_loss
            gl = _softmax_grad_(logits, lse, g, tgt[sl], temperature)
            if need_h:
                grad_h[sl] = gl @ wc
            if need_w:
                grad_w.addmm_(gl.T, h_c)
            del logits, gl
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.need = (need_h, need_w)
        ctx.dtypes = (h.dtype, w.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        saved = list(ctx.saved_tensors)
        need_h, need_w = ctx.need
        gh = saved.pop(0) if need_h else None
        gw = saved.pop(0) if need_w else None
        gh = None if gh is None else gh * grad_out.to(gh.dtype)
        gw = None if gw is None else gw * grad_out.to(gw.dtype)
        return (None if gh is None else gh.to(ctx.dtypes[0]), None if gw is None else gw.to(ctx.dtypes[1]),
                *([None] * 11))


def fused_linear_lad_loss(hidden: Tensor, weight: Tensor, targets: Tensor, old_log_prob: Tensor,
                          advantages: Tensor, response_mask: Tensor, *, eta: float = 1.0,
                          div: str | Divergence = "js", loss_agg_mode: str = "token-mean",
                          norm_length: float | None = None, chunk_size: int | None = None,
                          temperature: float = 1.0) -> Tensor:
    """Token-level practical LAD from hidden states and the LM head, chunked, gradients computed in forward.

    Equal in value and in gradients (for ``hidden`` and ``weight``) to :func:`materialized_lad_loss` with
    ``ratio="token"``; the ``N x V`` logits never exist at once. For sequence-level ratios use
    :func:`chunked_token_logprobs` followed by ``lad_token_loss(..., ratio="sequence")``.

    Shapes: ``hidden (B, T, d)``, ``weight (V, d)``, ``targets, old_log_prob, response_mask (B, T)``,
    ``advantages (B, T)`` or ``(B,)``; returns a scalar (float32, or float64 for float64 inputs).
    """
    _check_linear(hidden, weight, targets, chunk_size, temperature)
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be (batch, response_length, dim), got shape {tuple(hidden.shape)}")
    check_token_inputs(old_log_prob, old_log_prob, advantages, response_mask, loss_agg_mode)
    if tuple(old_log_prob.shape) != tuple(targets.shape):
        raise ValueError(f"old_log_prob shape {tuple(old_log_prob.shape)} != targets shape {tuple(targets.shape)}")
    check_eta(eta)
    d = get_divergence(div)
    w_agg = agg_weights(response_mask, loss_agg_mode, norm_length, _compute_dtype(hidden, weight, old_log_prob))
    w_agg = w_agg.reshape(-1)
    keep = bool_mask(response_mask).reshape(-1)
    adv = expand_advantages(advantages, old_log_prob.shape).reshape(-1)
    h = hidden.reshape(-1, hidden.shape[-1])
    chunk = chunk_size or auto_chunk_size(weight.shape[0], h.shape[0])
    return _FusedLinearLAD.apply(h, weight, targets.reshape(-1).long(), old_log_prob.reshape(-1), adv, w_agg, keep,
                                 float(eta), d, chunk, float(temperature),
                                 bool(hidden.requires_grad), bool(weight.requires_grad))
