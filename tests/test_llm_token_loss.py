"""Token-level LAD/GRPO: aggregation modes by hand, agreement with the shared core, errors.

(The verl adapter lives in ladsim.integrations.verl and is tested against verl itself: tests/integration/verl.)"""

from __future__ import annotations

import math

import pytest
import torch

from ladsim.divergences import DIVERGENCES
from ladsim.llm.token_loss import (
    LOSS_AGG_MODES,
    agg_loss,
    agg_weights,
    grpo_token_loss,
    lad_token_loss,
)
from ladsim.losses import lad_loss

NAN, INF = float("nan"), float("inf")


def _batch(b=5, t=6, dtype=torch.float64, seed=0, adv_1d=False):
    g = torch.Generator().manual_seed(seed)
    lp = -3.0 * torch.rand(b, t, generator=g, dtype=dtype)
    old = lp + 0.4 * torch.randn(b, t, generator=g, dtype=dtype)
    adv = torch.randn(b, generator=g, dtype=dtype) if adv_1d else torch.randn(b, t, generator=g, dtype=dtype)
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[0] = False           # an all-masked row
    mask[1] = False
    mask[1, 0] = True         # a length-1 response
    return lp, old, adv, mask


# --- aggregation, by hand ----------------------------------------------------------------------------

LOSS_MAT = torch.tensor([[1.0, 2.0, NAN], [4.0, INF, NAN], [NAN, NAN, NAN]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize(("mode", "norm", "expected"), [
    ("token-mean", None, (1 + 2 + 4) / 3),
    ("seq-mean-token-sum", None, ((1 + 2) + 4) / 2),          # the empty row is not a sequence
    ("seq-mean-token-mean", None, ((1 + 2) / 2 + 4 / 1) / 2),
    ("seq-mean-token-sum-norm", None, ((1 + 2) + 4) / (2 * 3)),  # norm_length defaults to T = 3
    ("seq-mean-token-sum-norm", 10.0, ((1 + 2) + 4) / (2 * 10)),
])
def test_agg_modes_by_hand(mode, norm, expected):
    loss = agg_loss(LOSS_MAT, MASK, mode, norm)
    assert loss.item() == pytest.approx(expected, rel=1e-7)
    w = agg_weights(MASK, mode, norm)
    assert w.dtype == torch.float32 and bool((w[MASK == 0] == 0).all())


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_all_masked_batch_is_zero(mode):
    loss = agg_loss(torch.full((2, 3), NAN), torch.zeros(2, 3, dtype=torch.bool), mode)
    assert loss.item() == 0.0


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_length_one_responses(mode):
    lm = torch.tensor([[2.0], [5.0], [7.0]])
    mask = torch.tensor([[True], [True], [False]])
    assert agg_loss(lm, mask, mode).item() == pytest.approx(3.5)  # T = 1: every mode is the mean of 2 and 5


# --- LAD on the core ---------------------------------------------------------------------------------

@pytest.mark.parametrize("div", list(DIVERGENCES))
def test_token_mean_equals_core_masked_mean(div):
    lp, old, adv, mask = _batch()
    got = lad_token_loss(lp, old, adv, mask, eta=0.7, div=div, loss_agg_mode="token-mean")
    ref = lad_loss(lp.reshape(-1), old.reshape(-1), adv.reshape(-1), eta=0.7, div=div, mask=mask.reshape(-1))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_seq_mean_token_mean_equals_core_rowwise():
    lp, old, adv, mask = _batch()
    got = lad_token_loss(lp, old, adv, mask, eta=2.0, div="hd", loss_agg_mode="seq-mean-token-mean")
    rows = lad_loss(lp, old, adv, eta=2.0, div="hd", mask=mask)
    nonempty = mask.any(-1)
    torch.testing.assert_close(got, rows[nonempty].mean(), rtol=1e-12, atol=1e-12)


def test_kl_token_loss_by_hand():
    # KL: e^u f(r e^{-u}) = r (log r - u)
    lp = torch.tensor([[math.log(0.5), math.log(0.2)]], dtype=torch.float64)
    old = torch.tensor([[math.log(0.25), math.log(0.4)]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    eta = 2.0
    terms = [2.0 * (math.log(2.0) - 0.5), 0.5 * (math.log(0.5) + 0.5)]
    got = lad_token_loss(lp, old, adv, mask, eta=eta, div="kl", loss_agg_mode="seq-mean-token-sum")
    assert got.item() == pytest.approx(sum(terms), rel=1e-12)


def test_sequence_ratio_by_hand():
    lp = torch.tensor([[-1.0, -2.0, 9.0], [-0.5, 9.0, 9.0]], dtype=torch.float64)
    old = torch.tensor([[-1.5, -1.0, 9.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([0.5, -1.0], dtype=torch.float64)
    eta = 1.0
    lr = [(-1.0 - 2.0) - (-1.5 - 1.0), -0.5 + 1.0]           # summed log-ratios: -0.5, 0.5
    terms = [math.exp(t) * (t - a / eta) for t, a in zip(lr, adv.tolist())]  # KL: r (log r - u)
    got = lad_token_loss(lp, old, adv, mask, eta=eta, div="kl", ratio="sequence")
    assert got.item() == pytest.approx(sum(terms) / 2, rel=1e-12)
    # (B, T) advantages constant over a response give the same answer as (B,)
    got2 = lad_token_loss(lp, old, adv[:, None].expand(2, 3), mask, eta=eta, div="kl", ratio="sequence")
    torch.testing.assert_close(got, got2)
    # the -norm mode divides by norm_length
    got3 = lad_token_loss(lp, old, adv, mask, eta=eta, div="kl", ratio="sequence",
                          loss_agg_mode="seq-mean-token-sum-norm", norm_length=4.0)
    assert got3.item() == pytest.approx(sum(terms) / 2 / 4.0, rel=1e-12)


def test_padding_values_do_not_leak():
    lp, old, adv, mask = _batch()
    lp_bad = lp.masked_fill(~mask, -INF).requires_grad_()
    old_bad = old.masked_fill(~mask, NAN)
    lp_good = lp.clone().requires_grad_()
    for ratio in ("token", "sequence"):
        a = lad_token_loss(lp_bad, old_bad, adv, mask, eta=1.0, div="kl", ratio=ratio)
        b = lad_token_loss(lp_good, old, adv, mask, eta=1.0, div="kl", ratio=ratio)
        ga, = torch.autograd.grad(a, lp_bad)
        gb, = torch.autograd.grad(b, lp_good)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)
        assert bool((ga[~mask] == 0).all())


@pytest.mark.parametrize("div", list(DIVERGENCES))
def test_bfloat16_inputs_accumulate_in_float32(div):
    lp, old, adv, mask = _batch(dtype=torch.float32)
    lpb, oldb, advb = lp.bfloat16().requires_grad_(), old.bfloat16(), adv.bfloat16()
    lpf = lpb.detach().float().requires_grad_()
    a = lad_token_loss(lpb, oldb, advb, mask, eta=1.0, div=div)
    b = lad_token_loss(lpf, oldb.float(), advb.float(), mask, eta=1.0, div=div)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # the same float32 arithmetic
    ga, = torch.autograd.grad(a, lpb)
    gb, = torch.autograd.grad(b, lpf)
    assert ga.dtype == torch.bfloat16
    torch.testing.assert_close(ga.float(), gb, rtol=1e-2, atol=1e-5)  # one bfloat16 rounding of the gradient


# --- GRPO ----------------------------------------------------------------------------------------------

def test_grpo_token_loss_by_hand():
    # ratios 1.5 (A = +1, clipped to 1.2) and 0.5 (A = -1, clipped to 0.8: min(-0.5, -0.8) = -0.8)
    lp = torch.tensor([[math.log(1.5), math.log(0.5)]], dtype=torch.float64)
    old = torch.zeros(1, 2, dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    got = grpo_token_loss(lp, old, adv, torch.ones(1, 2), loss_agg_mode="token-mean")
    assert got.item() == pytest.approx((-1.2 + 0.8) / 2, rel=1e-12)


def test_grpo_sequence_ratio_clips_the_response_ratio():
    lp = torch.tensor([[0.3, 0.3]], dtype=torch.float64)   # summed log-ratio 0.6: r = e^0.6 > 1.2
    got = grpo_token_loss(lp, torch.zeros_like(lp), torch.tensor([2.0], dtype=torch.float64),
                          torch.ones(1, 2), ratio="sequence")
    assert got.item() == pytest.approx(-1.2 * 2.0, rel=1e-12)


# --- errors ----------------------------------------------------------------------------------------------

def _bad_calls():
    lp, old, adv, mask = _batch(dtype=torch.float32)
    yield "response_length", lambda: lad_token_loss(lp[0], old[0], adv[0], mask[0])
    yield "old_log_prob shape", lambda: lad_token_loss(lp, old[:, :-1], adv, mask)
    yield "response_mask shape", lambda: lad_token_loss(lp, old, adv, mask[:, :-1])
    yield "advantages must be", lambda: lad_token_loss(lp, old, adv[:, :2], mask)
    yield "float16, bfloat16", lambda: lad_token_loss(lp.long(), old, adv, mask)
    yield "float16, bfloat16", lambda: lad_token_loss(lp, old, adv.int(), mask)
    yield "torch.Tensor", lambda: lad_token_loss(lp.tolist(), old, adv, mask)
    yield "loss_agg_mode", lambda: lad_token_loss(lp, old, adv, mask, loss_agg_mode="seq-sum")
    yield "ratio", lambda: lad_token_loss(lp, old, adv, mask, ratio="group")
    yield "eta", lambda: lad_token_loss(lp, old, adv, mask, eta=0.0)
    yield "unknown divergence", lambda: lad_token_loss(lp, old, adv, mask, div="renyi")
    yield "empty batch", lambda: lad_token_loss(lp[:0], old[:0], adv[:0], mask[:0])
    yield "norm_length", lambda: agg_loss(lp, mask, "seq-mean-token-sum-norm", norm_length=0.0)
    yield "ref_log_prob shape", lambda: grpo_token_loss(lp, old, adv, mask, beta=0.1, ref_log_prob=lp[:1])


@pytest.mark.parametrize(("match", "call"), list(_bad_calls()))
def test_bad_inputs_raise_value_error(match, call):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
