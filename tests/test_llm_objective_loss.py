"""Objectives on token batches (ladsim.llm.objective_loss) and the trainers' aggregation conventions."""

from __future__ import annotations

import math

import pytest
import torch

from ladsim.llm.objective_loss import objective_token_loss, objective_token_terms, token_log_ratio
from ladsim.llm.token_loss import AGG_MODES, agg_loss, agg_weights, grpo_token_loss, lad_token_loss

NAN = float("nan")


def _batch(b=6, t=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = -3.0 * torch.rand(b, t, generator=g, dtype=dtype)
    old = lp + 0.4 * torch.randn(b, t, generator=g, dtype=dtype)
    adv = torch.randn(b, generator=g, dtype=dtype)
    lengths = torch.tensor([5, 3, 0, 1, 4, 2])[:b]
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return lp, old, adv, mask


# --- aggregation conventions, by hand ------------------------------------------------------------------

L = torch.tensor([[1.0, 2.0, 0.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]], dtype=torch.float64)
M = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(("mode", "kwargs", "expected"), [
    ("token-sum", {}, 7.0),
    ("token-sum", {"scale": 2}, 14.0),
    ("token-mean", {"n_tokens": 14}, 0.5),                       # a global token count
    ("token-mean", {"n_tokens": 14, "scale": 4}, 2.0),           # verl: * dp_size
    ("seq-mean-token-sum", {"empty_rows": "include"}, 7.0 / 3),  # TRL: the empty row counts
    ("seq-mean-token-mean", {"empty_rows": "include"}, (1.5 + 4.0) / 3),
    ("seq-mean-token-mean", {"n_seqs": 11}, (1.5 + 4.0) / 11),   # verl: global_batch_size
    ("seq-mean-token-sum-norm", {"empty_rows": "include"}, 7.0 / (3 * 3)),
    ("seq-mean-token-sum-norm", {"empty_rows": "include", "n_seqs": None}, 7.0 / 9),
])
def test_conventions_by_hand(mode, kwargs, expected):
    assert agg_loss(L, M, mode, **kwargs).item() == pytest.approx(expected, rel=1e-12)
    w = agg_weights(M, mode, dtype=torch.float64, **kwargs)
    assert (w * L).sum().item() == pytest.approx(expected, rel=1e-12)


def test_dr_grpo_constant_normalizer():
    # TRL dr_grpo: sum m l / (B * max_completion_length)
    assert agg_loss(L, M, "seq-mean-token-sum-norm", 10, empty_rows="include").item() == pytest.approx(7.0 / 30)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_micro_batches_sum_to_the_full_batch_with_global_normalizers(mode):
    """verl's contract: with the mini-batch's token and sequence counts, micro-batch losses add up exactly."""
    g = torch.Generator().manual_seed(1)
    loss_mat = torch.randn(8, 7, generator=g, dtype=torch.float64)
    lengths = torch.tensor([7, 1, 0, 4, 6, 2, 3, 5])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    counts = {"n_tokens": int(mask.sum()), "n_seqs": 8, "norm_length": 7}
    full = agg_loss(loss_mat, mask, mode, **counts)
    parts = sum(agg_loss(loss_mat[i:i + 2], mask[i:i + 2], mode, **counts) for i in range(0, 8, 2))
    torch.testing.assert_close(parts, full, rtol=1e-12, atol=0)
    if mode != "token-sum":  # mutation: local normalizers break the sum (token-sum has none)
        local = sum(agg_loss(loss_mat[i:i + 2], mask[i:i + 2], mode, 7) for i in range(0, 8, 2))
        assert not torch.allclose(local, full)


def test_defaults_are_unchanged():
    for mode in AGG_MODES[:4]:
        torch.testing.assert_close(agg_weights(M, mode), agg_weights(M, mode, empty_rows="exclude", scale=1.0))
    assert agg_loss(L, M, "seq-mean-token-sum").item() == pytest.approx(7.0 / 2)  # the empty row is excluded


# --- objectives on token batches ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", AGG_MODES[:4])
def test_lad_and_grpo_equal_the_token_losses(mode):
    lp, old, adv, mask = _batch()
    lp = lp.requires_grad_()
    got = objective_token_loss("lad", lp, old, adv, mask, params={"eta": 0.7, "div": "hd"}, loss_agg_mode=mode)
    ref = lad_token_loss(lp, old, adv, mask, eta=0.7, div="hd", loss_agg_mode=mode)
    g1, = torch.autograd.grad(got, lp)
    g2, = torch.autograd.grad(ref, lp)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-15)
    got = objective_token_loss("grpo", lp, old, adv, mask, params={"eps_low": 0.1, "eps_high": 0.3},
                               loss_agg_mode=mode)
    ref = grpo_token_loss(lp, old, adv, mask, eps_low=0.1, eps_high=0.3, loss_agg_mode=mode)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)


def test_sequence_ratio_matches_the_sequence_level_lad_loss():
    lp, old, adv, mask = _batch()
    got = objective_token_loss("lad", lp, old, adv, mask, ratio="sequence", loss_agg_mode="seq-mean-token-mean")
    ref = lad_token_loss(lp, old, adv, mask, ratio="sequence", loss_agg_mode="seq-mean-token-mean")
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)


def test_sequence_mean_ratio_is_the_mean_token_log_ratio():
    lp = torch.tensor([[0.3, 0.1, NAN]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    d = token_log_ratio(lp, torch.zeros_like(lp), mask, "sequence-mean")
    torch.testing.assert_close(d, torch.tensor([[0.2, 0.2, 0.0]], dtype=torch.float64))
    # GRPO, A = 1, unclipped: loss = -exp(0.2), and the gradient flows through the mean (1/2 per token)
    loss = objective_token_loss("grpo", lp, torch.zeros_like(lp), torch.ones(1, dtype=torch.float64), mask,
                                ratio="sequence-mean", loss_agg_mode="seq-mean-token-mean")
    assert loss.item() == pytest.approx(-math.exp(0.2), rel=1e-12)
    grad, = torch.autograd.grad(loss, lp)
    torch.testing.assert_close(grad, torch.tensor([[-math.exp(0.2) / 2] * 2 + [0.0]], dtype=torch.float64))


def test_token_weights_multiply_each_tokens_loss():
    lp, old, adv, mask = _batch()
    w = torch.rand(lp.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    terms = objective_token_terms("lad", lp, old, adv, mask)
    got = objective_token_loss("lad", lp, old, adv, mask, token_weights=w, loss_agg_mode="seq-mean-token-sum")
    torch.testing.assert_close(got, agg_loss(terms * w, mask, "seq-mean-token-sum"), rtol=1e-12, atol=0)
    assert not torch.allclose(got, agg_loss(terms, mask, "seq-mean-token-sum"))


def test_padding_never_leaks():
    lp, old, adv, mask = _batch()
    lp2, old2 = lp.clone().masked_fill(~mask, NAN), old.clone().masked_fill(~mask, -float("inf"))
    lp2.requires_grad_()
    loss = objective_token_loss("lad", lp2, old2, adv, mask, loss_agg_mode="token-mean")
    torch.testing.assert_close(loss, objective_token_loss("lad", lp, old, adv, mask))
    grad, = torch.autograd.grad(loss, lp2)
    assert bool(torch.isfinite(grad).all()) and bool((grad[~mask] == 0).all())


def _bad_calls():
    lp, old, adv, mask = _batch()
    yield "unknown objective", lambda: objective_token_loss("ppo2", lp, old, adv, mask)
    yield "unknown parameter lad.beta", lambda: objective_token_loss("lad", lp, old, adv, mask, params={"beta": 1})
    yield "eta", lambda: objective_token_loss("lad", lp, old, adv, mask, params={"eta": 0})
    yield "unknown ratio", lambda: objective_token_loss("lad", lp, old, adv, mask, ratio="group")
    yield "token_weights shape", lambda: objective_token_loss("lad", lp, old, adv, mask, token_weights=lp[:1])
    yield "n_tokens", lambda: agg_loss(lp, mask, "token-mean", n_tokens=0)
    yield "n_seqs", lambda: agg_loss(lp, mask, "seq-mean-token-mean", n_seqs=-1)
    yield "empty_rows", lambda: agg_loss(lp, mask, "seq-mean-token-mean", empty_rows="drop")
    yield "loss_agg_mode", lambda: objective_token_loss("lad", lp, old, adv, mask, loss_agg_mode="seq-sum")


@pytest.mark.parametrize(("match", "call"), list(_bad_calls()))
def test_bad_arguments_raise_value_error(match, call):
    with pytest.raises(ValueError, match=match):
        call()


def test_import_ladsim_imports_no_trainer():
    import subprocess
    import sys

    code = ("import sys, ladsim, ladsim.llm, ladsim.integrations; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('verl', 'trl', 'transformers') "
            "or m in ('ladsim.integrations.verl', 'ladsim.integrations.trl')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the registry's objectives on token batches --------------------------------------------------------------

@pytest.mark.parametrize(("objective", "match"), [
    ("lad-theory", "whole action set"),
    ("flowrl", "learned log Z"),
    ("entadv", "needs per-token entropy"),
])
def test_objectives_that_cannot_run_on_tokens_say_why(objective, match):
    lp, old, adv, mask = _batch()
    with pytest.raises(ValueError, match=match):
        objective_token_loss(objective, lp, old, adv, mask)


def test_token_objectives_lists_the_runnable_ones():
    from ladsim.llm.objective_loss import token_objectives

    assert set(token_objectives()) == {"grpo", "lad", "entadv", "clip-cov", "kl-cov",  # and the trainers' catalogue
                                       "cispo", "gspo", "sapo", "gmpo", "dppo-tv", "dppo-kl", "gpg", "dro", "luspo",
                                       "vespo"}
    assert "entadv" not in token_objectives(provides=())


@pytest.mark.parametrize("objective", ["kl-cov", "clip-cov", "entadv"])
def test_batch_statistics_are_over_the_valid_tokens(objective):
    """clip-cov/kl-cov covariances and picks (and entadv's entropy) see exactly the valid tokens, flattened."""
    from ladsim.objectives import Batch, objective_terms

    lp, old, adv, mask = _batch()
    ent = torch.rand(lp.shape, generator=torch.Generator().manual_seed(5), dtype=lp.dtype)
    params = {"ratio": 0.2, "lb": -1.0, "ub": 1.0} if objective == "clip-cov" else (
        {"ratio": 0.2} if objective == "kl-cov" else None)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    got = objective_token_terms(objective, lp, old, adv, mask, params=params, entropy=ent, generator=g1)
    a = adv[:, None].expand_as(lp)
    row = Batch(logp=lp[mask][None], logp_old=old[mask][None], advantages=a[mask][None], entropy=ent[mask][None],
                generator=g2)
    from ladsim.objectives import make_params
    ref = objective_terms(objective, row, make_params(objective, params))[0]
    torch.testing.assert_close(got[mask], ref, rtol=0, atol=0)
    assert bool((got[~mask] == 0).all())
    if objective == "kl-cov":  # the penalty is on: differs from the plain -A r
        assert not torch.allclose(got[mask], -a[mask] * torch.exp(lp - old)[mask])
