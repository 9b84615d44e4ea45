"""The chunked LM-head path against the materialized reference: values, gradients for h and W, memory."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ladsim.llm.linear import (
    chunked_token_logprobs,
    fused_linear_lad_loss,
    materialized_lad_loss,
    materialized_token_logprobs,
)
from ladsim.llm.token_loss import LOSS_AGG_MODES, lad_token_loss


def _problem(b=3, t=7, d=8, v=37, dtype=torch.float64, seed=0, adv_1d=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    w = torch.randn(v, d, generator=g, dtype=torch.float64) / d ** 0.5
    y = torch.randint(0, v, (b, t), generator=g)
    old = materialized_token_logprobs(h, w, y) + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)
    adv = torch.randn(b if adv_1d else (b, t), generator=g, dtype=torch.float64)
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[1] = False
    mask[2, 0] = True
    return h.to(dtype), w.to(dtype), y, old, adv, mask


def _grads(loss_fn, h, w):
    h = h.clone().requires_grad_()
    w = w.clone().requires_grad_()
    loss = loss_fn(h, w)
    gh, gw = torch.autograd.grad(loss, (h, w))
    return loss, gh, gw


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("div", ["js", "kl", "hd", "neyman"])
def test_fused_linear_equals_materialized_float64(mode, div):
    h, w, y, old, adv, mask = _problem(adv_1d=(mode == "token-mean"))
    kw = {"eta": 0.8, "div": div, "loss_agg_mode": mode, "temperature": 0.7}
    ref = _grads(lambda h, w: materialized_lad_loss(h, w, y, old, adv, mask, **kw), h, w)
    for chunk in (1, 5, 64):  # 5 does not divide 21 tokens; 64 is one chunk
        got = _grads(lambda h, w, c=chunk: fused_linear_lad_loss(h, w, y, old, adv, mask, chunk_size=c, **kw), h, w)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_chunked_logprobs_with_sequence_ratio_float64():
    h, w, y, old, adv, mask = _problem()
    ref = _grads(lambda h, w: lad_token_loss(materialized_token_logprobs(h, w, y, temperature=1.3), old, adv,
                                             mask, eta=1.0, div="js", ratio="sequence"), h, w)
    got = _grads(lambda h, w: lad_token_loss(chunked_token_logprobs(h, w, y, chunk_size=4, temperature=1.3), old,
                                             adv, mask, eta=1.0, div="js", ratio="sequence"), h, w)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_float32_within_tolerance():
    h, w, y, old, adv, mask = _problem(b=4, t=16, d=32, v=300)
    ref = _grads(lambda h, w: materialized_lad_loss(h, w, y, old, adv, mask, eta=1.0), h, w)
    got = _grads(lambda h, w: fused_linear_lad_loss(h, w, y, old.float(), adv.float(), mask, eta=1.0,
                                                    chunk_size=7), h.float(), w.float())
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)


def test_bfloat16_inputs():
    h, w, y, old, adv, mask = _problem(b=4, t=16, d=32, v=300, dtype=torch.bfloat16)
    old, adv = old.float(), adv.float()
    ref = _grads(lambda h, w: materialized_lad_loss(h, w, y, old, adv, mask, eta=1.0), h.float(), w.float())
    got = _grads(lambda h, w: fused_linear_lad_loss(h, w, y, old, adv, mask, eta=1.0, chunk_size=7), h, w)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16 and got[2].dtype == torch.bfloat16
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)   # float32 arithmetic on the same inputs
    torch.testing.assert_close(got[1].float(), ref[1], rtol=1e-2, atol=1e-4)  # one bfloat16 rounding
    torch.testing.assert_close(got[2].float(), ref[2], rtol=1e-2, atol=1e-4)


def test_frozen_head_gives_hidden_gradient_only():
    h, w, y, old, adv, mask = _problem()
    hh = h.clone().requires_grad_()
    loss = fused_linear_lad_loss(hh, w, y, old, adv, mask, eta=1.0, chunk_size=4)
    loss.backward()
    ref_h = h.clone().requires_grad_()
    materialized_lad_loss(ref_h, w, y, old, adv, mask, eta=1.0).backward()
    torch.testing.assert_close(hh.grad, ref_h.grad, rtol=1e-10, atol=1e-13)


class _MaxNumel(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                self.max_numel = max(self.max_numel, o.numel())
        return out


def test_no_tensor_of_tokens_by_vocab_is_ever_built():
    b, t, d, v, chunk = 4, 32, 16, 1000, 8          # N x V = 128,000; a chunk is 8,000; W is 16,000
    h, w, y, old, adv, mask = _problem(b=b, t=t, d=d, v=v, dtype=torch.float32)
    h.requires_grad_()
    w.requires_grad_()
    with _MaxNumel() as fused_mode:
        fused_linear_lad_loss(h, w, y, old.float(), adv.float(), mask, eta=1.0, chunk_size=chunk).backward()
    assert fused_mode.max_numel <= max(chunk * v, v * d)
    with _MaxNumel() as ref_mode:
        materialized_lad_loss(h, w, y, old.float(), adv.float(), mask, eta=1.0).backward()
    assert ref_mode.max_numel >= b * t * v  # the check can see a materialized N x V tensor


def _bad_calls():
    h, w, y, old, adv, mask = _problem()
    yield "weight must be", lambda: fused_linear_lad_loss(h, w[0], y, old, adv, mask)
    yield "hidden must be", lambda: fused_linear_lad_loss(h[..., :-1], w, y, old, adv, mask)
    yield "targets shape", lambda: fused_linear_lad_loss(h, w, y[:, :-1], old, adv, mask)
    yield "targets must lie", lambda: fused_linear_lad_loss(h, w, y + 100, old, adv, mask)
    yield "targets must be", lambda: fused_linear_lad_loss(h, w, y.double(), old, adv, mask)
    yield "chunk_size", lambda: fused_linear_lad_loss(h, w, y, old, adv, mask, chunk_size=0)
    yield "temperature", lambda: chunked_token_logprobs(h, w, y, temperature=0.0)
    yield "hidden must be \\(batch", lambda: fused_linear_lad_loss(h.reshape(-1, h.shape[-1]), w,
                                                                   y.reshape(-1), old, adv, mask)
    yield "response_mask shape", lambda: fused_linear_lad_loss(h, w, y, old, adv, mask[:, :2])
    yield "floating-point", lambda: chunked_token_logprobs(h.long(), w, y)


@pytest.mark.parametrize(("match", "call"), list(_bad_calls()))
def test_bad_inputs_raise_value_error(match, call):
    with pytest.raises(ValueError, match=match):
        call()
