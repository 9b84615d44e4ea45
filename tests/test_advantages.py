"""Tests of group-relative advantages (ladsim.advantages) against the LAD_SPEC "GRPO" formulas.

References are written with explicit loops over groups (numpy, float64). Planted-error companions show that
each comparison can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladsim.advantages import SCALES, dr_grpo_advantages, group_advantages


def ref_advantages(rewards, scale="std", eps=1e-6, mask=None, ddof=1):
    """Loop over groups: A_i = (R_i - mean) / (std + eps) over the group's unmasked samples, 0 elsewhere."""
    rewards = np.asarray(rewards, dtype=np.float64)
    m = np.ones(rewards.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask) > 0, rewards.shape)
    out = np.zeros(rewards.shape)
    for idx in np.ndindex(*rewards.shape[:-1]):
        keep = m[idx]
        r = rewards[idx][keep]
        if r.size == 0:
            continue
        centered = r - r.mean()
        if scale == "std":
            std = r.std(ddof=ddof) if r.size > ddof else 0.0
            centered = centered / (std + eps)
        row = np.zeros(rewards.shape[-1])
        row[keep] = centered
        out[idx] = row
    return out


def _rewards(seed=0, shape=(5, 7, 8)):
    rng = np.random.default_rng(seed)
    # a mix of continuous rewards and 0/1 rewards (the common case, with some constant groups)
    cont = rng.normal(size=shape)
    binary = (rng.random(shape) > 0.5).astype(np.float64)
    pick = rng.random(shape[:-1] + (1,)) > 0.5
    return np.where(pick, cont, binary)


def _close(a, b, rtol=1e-12, atol=1e-12) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol))


def _t(a, dtype=torch.float64):
    return torch.tensor(np.asarray(a), dtype=dtype)


@pytest.mark.parametrize("eps", [1e-6, 0.1])
def test_grpo_advantages_match_direct_formula(eps):
    rew = _rewards(1)
    got = group_advantages(_t(rew), scale="std", eps=eps)
    assert got.shape == rew.shape and got.dtype == torch.float64
    assert _close(got.numpy(), ref_advantages(rew, "std", eps))
    # vectorized: the same as one call per group
    for idx in [(0, 0), (4, 6), (2, 3)]:
        one = group_advantages(_t(rew[idx]), scale="std", eps=eps)
        assert torch.allclose(one, got[idx], rtol=1e-14, atol=1e-14)


def test_grpo_advantages_use_unbiased_std():
    r = _t([0.0, 1.0, 2.0, 3.0])
    got = group_advantages(r, eps=0.0)
    std_unbiased = np.std([0, 1, 2, 3], ddof=1)
    assert _close(got.numpy(), (np.arange(4) - 1.5) / std_unbiased)
    assert _close(got.numpy(), ((r - r.mean()) / r.std()).numpy())  # torch.std is unbiased by default


def test_grpo_formula_check_detects_planted_error():
    rew = _rewards(1)
    got = group_advantages(_t(rew), scale="std").numpy()
    assert not _close(got, ref_advantages(rew, "std", ddof=0))  # biased std
    assert not _close(got, -ref_advantages(rew, "std"))  # wrong sign
    assert not _close(got, ref_advantages(rew, "none"))  # std dropped


def test_dr_grpo_advantages_match_direct_formula():
    rew = _rewards(2)
    want = ref_advantages(rew, "none")
    assert _close(group_advantages(_t(rew), scale="none").numpy(), want)
    assert _close(dr_grpo_advantages(_t(rew)).numpy(), want)
    assert _close(want.sum(-1), 0.0)
    assert not _close(dr_grpo_advantages(_t(rew)).numpy(), ref_advantages(rew, "std"))


@pytest.mark.parametrize("scale", SCALES)
def test_masked_groups(scale):
    rew = _rewards(3)
    rng = np.random.default_rng(30)
    mask = rng.random(rew.shape) > 0.3
    mask[0, 0, :] = False  # empty group
    mask[1, 1, :] = False
    mask[1, 1, 3] = True  # a single sample: no spread, advantage 0
    got = group_advantages(_t(rew), scale=scale, mask=torch.tensor(mask))
    want = ref_advantages(rew, scale, mask=mask)
    assert torch.isfinite(got).all()
    assert _close(got.numpy(), want)
    assert np.all(got.numpy()[~mask] == 0.0)
    assert np.all(got.numpy()[0, 0] == 0.0) and np.all(got.numpy()[1, 1] == 0.0)
    # masked rewards may hold anything (even huge values) without changing the result
    garbage = np.where(mask, rew, 1e30)
    got_g = group_advantages(_t(garbage), scale=scale, mask=torch.tensor(mask))
    assert _close(got_g.numpy(), want)
    # a float 0/1 mask and a broadcasting mask behave the same
    assert _close(group_advantages(_t(rew), scale=scale, mask=_t(mask.astype(float))).numpy(), want)
    mask_b = mask[0, 2]  # (G,), broadcast over all groups
    want_b = ref_advantages(rew, scale, mask=np.broadcast_to(mask_b, rew.shape))
    assert _close(group_advantages(_t(rew), scale=scale, mask=torch.tensor(mask_b)).numpy(), want_b)
    # planted error: statistics over all samples, masked ones included
    if scale == "std":
        assert not _close(got.numpy(), np.where(mask, ref_advantages(rew, scale), 0.0))


@pytest.mark.parametrize("scale", SCALES)
def test_constant_groups_get_zero(scale):
    rew = np.broadcast_to(np.arange(12.0).reshape(3, 4, 1), (3, 4, 6)).copy()
    for dtype in (torch.float32, torch.float64):
        got = group_advantages(_t(rew, dtype), scale=scale)
        assert got.dtype == dtype
        assert torch.equal(got, torch.zeros_like(got))
    # float32 binary rewards with one constant group and one mixed group
    r = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]], dtype=torch.float32)
    got = group_advantages(r, scale=scale)
    assert torch.equal(got[0], torch.zeros(4))
    assert torch.all(got[1] != 0)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_groups_with_inexact_mean_get_exactly_zero(scale, dtype):
    # equal rewards whose rounded mean is not the reward itself (0.7 * 7 / 7 != 0.7 in float32): the
    # advantage must still be exactly 0, not rounding error amplified by 1 / (std + eps)
    values = torch.tensor([0.1, 0.3, 0.7, 1.0 / 3.0, 2.2, 100000.1], dtype=dtype)
    for g in (3, 6, 7, 16):
        rew = values[:, None].expand(-1, g).contiguous()
        got = group_advantages(rew, scale=scale)
        assert torch.equal(got, torch.zeros_like(got)), (g, got.abs().max())
        mask = torch.ones(g, dtype=torch.bool)
        mask[0] = False
        rew_m = rew.clone()
        rew_m[:, 0] = 5.0  # a different, masked reward does not make the group non-constant
        got_m = group_advantages(rew_m, scale=scale, mask=mask)
        assert torch.equal(got_m, torch.zeros_like(got_m))


def test_constant_group_check_can_fail():
    # the plain formula, computed in float32, is visibly nonzero on such a group: the check above has teeth
    r = torch.full((7,), 0.7, dtype=torch.float32)
    centered = r - r.mean()
    naive = centered / (centered.std() + 1e-6)
    assert naive.abs().max() > 1e-3


def test_group_smaller_than_two_raises():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5, 1))
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(3, 0))
    with pytest.raises(ValueError):
        dr_grpo_advantages(torch.zeros(1))
    assert group_advantages(torch.zeros(5, 2)).shape == (5, 2)


def test_unknown_scale_raises():
    with pytest.raises(ValueError) as exc:
        group_advantages(torch.zeros(4), scale="mad")
    for s in SCALES:
        assert s in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), s=st.integers(1, 4), b=st.integers(1, 4), g=st.integers(2, 9),
       scale=st.sampled_from(SCALES), eps=st.sampled_from([1e-6, 1e-3]), masked=st.booleans())
def test_property_matches_reference_and_invariances(seed, s, b, g, scale, eps, masked):
    rng = np.random.default_rng(seed)
    rew = rng.normal(size=(s, b, g)) * rng.choice([1e-3, 1.0, 100.0])
    mask = rng.random((s, b, g)) > 0.3 if masked else None
    m_t = None if mask is None else torch.tensor(mask)
    got = group_advantages(_t(rew), scale=scale, eps=eps, mask=m_t)
    assert _close(got.numpy(), ref_advantages(rew, scale, eps, mask), rtol=1e-10, atol=1e-10)
    # shift invariance (both scales) and, for Dr.GRPO, linearity in the rewards
    shifted = group_advantages(_t(rew + 3.7), scale=scale, eps=eps, mask=m_t)
    assert torch.allclose(shifted, got, rtol=1e-8, atol=1e-8 * (1.0 + np.abs(rew).max()))
    if scale == "none":
        assert torch.allclose(group_advantages(_t(2.5 * rew), scale=scale, mask=m_t), 2.5 * got, rtol=1e-12,
                              atol=1e-12)
        assert torch.allclose(got.sum(-1), torch.zeros(s, b, dtype=torch.float64),
                              atol=1e-10 * (1.0 + np.abs(rew).max()))
