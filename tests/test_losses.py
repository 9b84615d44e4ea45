"""Tests of the shared loss core (ladsim.losses) against naive references written from LAD_SPEC.

The references below never call ladsim's perspective functions: they evaluate the generators' x-space
formulas from the LAD_SPEC table with numpy in float64 and reduce with explicit loops. Every formula check has
a companion that runs the same comparison against a planted error and asserts that it fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_formulas import FPRIME, F

from ladsim.losses import grpo_loss, grpo_terms, lad_loss, lad_terms, lad_theory_loss

KEYS = ("kl", "rkl", "jf", "js", "hd", "tv", "pearson", "neyman")
STRICT = tuple(k for k in KEYS if k != "tv")
F64 = torch.float64

# --- references (numpy, x-space formulas from LAD_SPEC) ---------------------------------------------

# F, FPRIME: tests/spec_formulas.py


def ref_lad_terms(logp, logp_old, adv, eta, key, sign_u=1.0):
    """exp(u) f(r exp(-u)), r = pi/pi_old, u = A/eta (sign_u = -1 plants an error)."""
    r = np.exp(logp - logp_old)
    u = sign_u * adv / eta
    return np.exp(u) * F[key](r * np.exp(-u))


def ref_reduce(terms, weights=None, mask=None):
    """Loop over the leading indices: weighted sum, or mean over unmasked entries (0 if none)."""
    terms = np.asarray(terms, dtype=np.float64)
    n = terms.shape[-1]
    w = None if weights is None else np.broadcast_to(weights, terms.shape)
    m = np.ones(terms.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask) > 0, terms.shape)
    out = np.zeros(terms.shape[:-1])
    for idx in np.ndindex(*terms.shape[:-1]):
        total, count = 0.0, 0
        for y in range(n):
            if not m[idx + (y,)]:
                continue
            total += terms[idx + (y,)] * (1.0 if w is None else w[idx + (y,)])
            count += 1
        out[idx] = total if w is not None else (total / count if count else 0.0)
    return out


def ref_theory(logp, logp_old, adv, eta, key, mask=None, normalize=True):
    """sum_y P_A f(P_pi / P_A) over the unmasked actions of each row, by loops (normalize=False plants an error)."""
    logp, logp_old, adv = np.broadcast_arrays(logp, logp_old, adv)
    m = np.ones(logp.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask) > 0, logp.shape)
    out = np.zeros(logp.shape[:-1])
    for idx in np.ndindex(*logp.shape[:-1]):
        keep = m[idx]
        if not keep.any():
            continue
        ratio = np.exp(logp[idx][keep] - logp_old[idx][keep])
        ea = np.exp(adv[idx][keep] / eta)
        p_pi = ratio / ratio.sum() if normalize else ratio
        p_a = ea / ea.sum() if normalize else ea
        out[idx] = sum(qa * F[key](pp / qa) for pp, qa in zip(p_pi, p_a))
    return out


def ref_grpo_terms(logp, logp_old, adv, eps_low=0.2, eps_high=0.2, beta=0.0, logp_ref=None, flip_clip=False):
    """Elementwise loop over -min(r A, clip(r) A) + beta k3 (flip_clip=True plants max instead of min)."""
    arrays = [logp, logp_old, adv] + ([logp_ref] if logp_ref is not None else [])
    arrays = np.broadcast_arrays(*arrays)
    out = np.zeros(arrays[0].shape)
    lo = -math.inf if eps_low is None else 1.0 - eps_low
    hi = math.inf if eps_high is None else 1.0 + eps_high
    for idx in np.ndindex(*out.shape):
        lp, lo_old, a = arrays[0][idx], arrays[1][idx], arrays[2][idx]
        r = math.exp(lp - lo_old)
        rc = min(max(r, lo), hi) if (eps_low is not None or eps_high is not None) else r
        pick = max if flip_clip else min
        term = -pick(r * a, rc * a)
        if beta:
            d = arrays[3][idx] - lp
            term += beta * (math.exp(d) - d - 1.0)
        out[idx] = term
    return out


# --- input generators -------------------------------------------------------------------------------

def _inputs(seed=0, shape=(3, 4, 6)):
    rng = np.random.default_rng(seed)
    n = shape[-1]
    logp = np.log(rng.dirichlet(np.ones(n), size=shape[:-1]))
    logp_old = np.log(rng.dirichlet(np.ones(n), size=shape[:-1]))
    adv = rng.normal(0.0, 1.0, size=shape)
    pi_old = np.exp(logp_old)
    return logp, logp_old, adv, pi_old


def _t(a, requires_grad=False, dtype=F64):
    return torch.tensor(np.asarray(a), dtype=dtype, requires_grad=requires_grad)


def _close(a, b, rtol=1e-10, atol=1e-12) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol))


# --- practical LAD vs reference ----------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
def test_lad_terms_match_reference(key):
    logp, logp_old, adv, _ = _inputs(1)
    got = lad_terms(_t(logp), _t(logp_old), _t(adv), eta=0.7, div=key)
    assert got.shape == logp.shape and got.dtype == F64
    assert _close(got.numpy(), ref_lad_terms(logp, logp_old, adv, 0.7, key))


@pytest.mark.parametrize("key", KEYS)
def test_lad_loss_matches_reference_weights_mask_and_mean(key):
    logp, logp_old, adv, pi_old = _inputs(2)
    rng = np.random.default_rng(20)
    mask = rng.random(logp.shape) > 0.3
    mask[1, 2, :] = False  # an all-masked row
    terms = ref_lad_terms(logp, logp_old, adv, 1.3, key)
    args = (_t(logp), _t(logp_old), _t(adv))
    for weights in (None, pi_old):
        for m in (None, mask):
            got = lad_loss(*args, eta=1.3, div=key, weights=None if weights is None else _t(weights),
                           mask=None if m is None else torch.tensor(m))
            assert got.shape == (3, 4)
            assert _close(got.numpy(), ref_reduce(terms, weights, m)), (weights is None, m is None)
    got = lad_loss(*args, eta=1.3, div=key, mask=torch.tensor(mask))
    assert got[1, 2].item() == 0.0
    # 0/1 float mask is the same as a bool mask
    got_f = lad_loss(*args, eta=1.3, div=key, mask=torch.tensor(mask, dtype=F64))
    assert torch.equal(got, got_f)


def test_lad_reference_check_detects_planted_error():
    logp, logp_old, adv, pi_old = _inputs(2)
    got = lad_loss(_t(logp), _t(logp_old), _t(adv), eta=1.3, div="js", weights=_t(pi_old)).numpy()
    assert not _close(got, ref_reduce(ref_lad_terms(logp, logp_old, adv, 1.3, "js", sign_u=-1.0), pi_old))
    # a reference that forgets the mask, on a masked call, must not match either
    mask = np.random.default_rng(3).random(logp.shape) > 0.5
    got_m = lad_loss(_t(logp), _t(logp_old), _t(adv), eta=1.3, div="js", mask=torch.tensor(mask)).numpy()
    assert not _close(got_m, ref_reduce(ref_lad_terms(logp, logp_old, adv, 1.3, "js")))


@pytest.mark.parametrize("key", ["js", "kl", "neyman"])
def test_lad_loss_broadcasting(key):
    rng = np.random.default_rng(4)
    n = 5
    logp = np.log(rng.dirichlet(np.ones(n), size=(3, 4)))  # (3, 4, n)
    logp_old = np.log(rng.dirichlet(np.ones(n), size=(4,)))  # (4, n)
    adv = rng.normal(size=(3, 1, n))  # (3, 1, n)
    weights = rng.random(n)  # (n,)
    mask = rng.random((4, n)) > 0.2  # (4, n)
    got = lad_loss(_t(logp), _t(logp_old), _t(adv), eta=0.9, div=key, weights=_t(weights),
                   mask=torch.tensor(mask))
    assert got.shape == (3, 4)
    b = np.broadcast_arrays(logp, logp_old, adv)
    want = ref_reduce(ref_lad_terms(*b, 0.9, key), weights, mask)
    assert _close(got.numpy(), want)
    terms = lad_terms(_t(logp), _t(logp_old), _t(adv), eta=0.9, div=key)
    assert terms.shape == (3, 4, n)


# --- theoretical LAD vs reference ----------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
def test_lad_theory_loss_matches_reference(key):
    logp, logp_old, adv, _ = _inputs(5)
    mask = np.random.default_rng(50).random(logp.shape) > 0.3
    mask[0, 1, :] = False
    mask[2, 3, :] = False
    mask[2, 3, 4] = True  # a row with a single action: P_pi = P_A = 1, loss 0
    for m in (None, mask):
        got = lad_theory_loss(_t(logp), _t(logp_old), _t(adv), eta=0.8, div=key,
                              mask=None if m is None else torch.tensor(m))
        assert got.shape == (3, 4)
        assert _close(got.numpy(), ref_theory(logp, logp_old, adv, 0.8, key, m))
    got = lad_theory_loss(_t(logp), _t(logp_old), _t(adv), eta=0.8, div=key, mask=torch.tensor(mask))
    assert got[0, 1].item() == 0.0
    assert abs(got[2, 3].item()) < 1e-14


def test_lad_theory_broadcasting():
    rng = np.random.default_rng(6)
    n = 4
    logp = np.log(rng.dirichlet(np.ones(n)))  # (n,)
    logp_old = np.log(rng.dirichlet(np.ones(n), size=(2, 3)))  # (2, 3, n)
    adv = rng.normal(size=(3, n))  # (3, n)
    got = lad_theory_loss(_t(logp), _t(logp_old), _t(adv), eta=1.1, div="hd")
    assert got.shape == (2, 3)
    assert _close(got.numpy(), ref_theory(logp, logp_old, adv, 1.1, "hd"))


def test_lad_theory_check_detects_planted_error():
    logp, logp_old, adv, _ = _inputs(5)
    got = lad_theory_loss(_t(logp), _t(logp_old), _t(adv), eta=0.8, div="js").numpy()
    assert not _close(got, ref_theory(logp, logp_old, adv, 0.8, "js", normalize=False))
    assert not _close(got, ref_theory(logp, logp_old, -adv, 0.8, "js"))


# --- GRPO vs reference --------------------------------------------------------------------------------

GRPO_SETTINGS = [
    {"eps_low": 0.2, "eps_high": 0.2},
    {"eps_low": 0.2, "eps_high": 0.28},
    {"eps_low": None, "eps_high": None},
    {"eps_low": None, "eps_high": 0.3},
    {"eps_low": 0.1, "eps_high": None},
]


@pytest.mark.parametrize("cfg", GRPO_SETTINGS)
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_grpo_matches_reference(cfg, beta):
    rng = np.random.default_rng(7)
    shape = (3, 4, 6)
    logp_old = np.log(rng.dirichlet(np.ones(6), size=shape[:-1]))
    logp = logp_old + rng.uniform(-0.6, 0.6, size=shape)  # ratios in [0.55, 1.8]: both sides of every clip
    logp_ref = np.log(rng.dirichlet(np.ones(6), size=shape[:-1]))
    adv = rng.normal(size=shape)
    pi_old = np.exp(logp_old)
    mask = rng.random(shape) > 0.3
    mask[2, 0, :] = False
    kw = dict(cfg, beta=beta, logp_ref=_t(logp_ref) if beta else None)
    terms = grpo_terms(_t(logp), _t(logp_old), _t(adv), **kw)
    want_terms = ref_grpo_terms(logp, logp_old, adv, beta=beta, logp_ref=logp_ref if beta else None, **cfg)
    assert terms.shape == shape
    assert _close(terms.numpy(), want_terms)
    for weights in (None, pi_old):
        for m in (None, mask):
            got = grpo_loss(_t(logp), _t(logp_old), _t(adv), **kw,
                            weights=None if weights is None else _t(weights),
                            mask=None if m is None else torch.tensor(m))
            assert _close(got.numpy(), ref_reduce(want_terms, weights, m))
    got = grpo_loss(_t(logp), _t(logp_old), _t(adv), **kw, mask=torch.tensor(mask))
    assert got[2, 0].item() == 0.0


def test_grpo_broadcasting():
    rng = np.random.default_rng(8)
    logp = np.log(rng.dirichlet(np.ones(5), size=(2, 3)))
    logp_old = np.log(rng.dirichlet(np.ones(5)))
    adv = rng.normal(size=(2, 1, 5))
    logp_ref = np.log(rng.dirichlet(np.ones(5), size=(3,)))
    got = grpo_loss(_t(logp), _t(logp_old), _t(adv), beta=0.1, logp_ref=_t(logp_ref))
    assert got.shape == (2, 3)
    want = ref_reduce(ref_grpo_terms(logp, logp_old, adv, beta=0.1, logp_ref=logp_ref))
    assert _close(got.numpy(), want)


def test_grpo_check_detects_planted_error():
    rng = np.random.default_rng(7)
    logp_old = np.log(rng.dirichlet(np.ones(6), size=(3,)))
    logp = logp_old + rng.uniform(-0.6, 0.6, size=(3, 6))
    adv = rng.normal(size=(3, 6))
    got = grpo_terms(_t(logp), _t(logp_old), _t(adv)).numpy()
    assert _close(got, ref_grpo_terms(logp, logp_old, adv))
    assert not _close(got, ref_grpo_terms(logp, logp_old, adv, flip_clip=True))
    assert not _close(got, ref_grpo_terms(logp, logp_old, adv, eps_low=None, eps_high=None))


# --- masks: garbage in masked entries must not leak --------------------------------------------------

@pytest.mark.parametrize("loss", ["lad", "theory", "grpo"])
@pytest.mark.parametrize("key", ["kl", "js", "neyman", "pearson"])
def test_masked_entries_do_not_affect_value_or_gradient(loss, key):
    # masked entries hold garbage: padding log-probs of -inf, huge ratios, huge advantages
    logp = torch.tensor([[-1.0, -2.0, 300.0, -math.inf], [-0.5, -1.5, -1.0, -math.inf]], dtype=F64,
                        requires_grad=True)
    logp_old = torch.tensor([[-1.2, -1.1, -1.0, -0.7], [-1.0, -1.0, -1.0, -1.0]], dtype=F64)
    adv = torch.tensor([[0.5, -0.5, 1e6, 3.0], [1.0, 0.0, -1.0, 2.0]], dtype=F64)
    logp_ref = torch.full_like(logp_old, -1.0)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    clean = logp.detach().clone()
    clean[..., 2:] = torch.where(mask[..., 2:] > 0, clean[..., 2:], torch.tensor(-1.0, dtype=F64))
    clean.requires_grad_(True)
    adv_clean = torch.where(mask > 0, adv, torch.zeros_like(adv))

    def run(lp, a):
        if loss == "lad":
            return lad_loss(lp, logp_old, a, eta=1.0, div=key, mask=mask)
        if loss == "theory":
            return lad_theory_loss(lp, logp_old, a, eta=1.0, div=key, mask=mask)
        return grpo_loss(lp, logp_old, a, beta=0.1, logp_ref=logp_ref, mask=mask)

    val = run(logp, adv)
    val_clean = run(clean, adv_clean)
    assert torch.isfinite(val).all()
    assert torch.allclose(val, val_clean, rtol=1e-12, atol=1e-14)
    (g,) = torch.autograd.grad(val.sum(), logp)
    (g_clean,) = torch.autograd.grad(val_clean.sum(), clean)
    assert torch.isfinite(g).all(), g
    assert torch.equal(g[mask == 0], torch.zeros_like(g[mask == 0]))
    assert torch.allclose(g, g_clean, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss", ["lad", "theory", "grpo"])
def test_all_masked_row_is_zero_with_zero_gradient(loss):
    gen = torch.Generator().manual_seed(15)
    logits = torch.randn(2, 5, dtype=F64, generator=gen)
    logp = torch.log_softmax(logits, -1).detach().requires_grad_(True)
    # ratios within the clip range, so that GRPO's unmasked row has a nonzero gradient
    logp_old = torch.log_softmax(logits + 0.05 * torch.randn(2, 5, dtype=F64, generator=gen), -1)
    adv = torch.randn(2, 5, dtype=F64, generator=gen)
    mask = torch.tensor([[True] * 5, [False] * 5])
    for weights in (None, logp_old.exp()):
        if loss == "lad":
            val = lad_loss(logp, logp_old, adv, eta=1.0, weights=weights, mask=mask)
        elif loss == "theory":
            val = lad_theory_loss(logp, logp_old, adv, eta=1.0, mask=mask)
        else:
            val = grpo_loss(logp, logp_old, adv, weights=weights, mask=mask)
        assert val[1].item() == 0.0 and val[0].item() != 0.0
        (g,) = torch.autograd.grad(val.sum(), logp)
        assert torch.equal(g[1], torch.zeros(5, dtype=F64))
        assert torch.isfinite(g).all() and g[0].abs().sum() > 0


# --- autograd -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["kl", "rkl", "js", "hd", "pearson", "neyman"])
def test_gradcheck_lad_and_theory(key):
    rng = np.random.default_rng(9)
    logp = _t(np.log(rng.dirichlet(np.ones(5), size=(2,))), requires_grad=True)
    logp_old = _t(np.log(rng.dirichlet(np.ones(5), size=(2,))))
    adv = _t(rng.normal(size=(2, 5)), requires_grad=True)
    weights = logp_old.exp()
    mask = torch.tensor([[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]])
    assert torch.autograd.gradcheck(
        lambda lp, a: lad_loss(lp, logp_old, a, eta=0.7, div=key, weights=weights), (logp, adv))
    assert torch.autograd.gradcheck(
        lambda lp, a: lad_loss(lp, logp_old, a, eta=0.7, div=key, mask=mask), (logp, adv))
    assert torch.autograd.gradcheck(
        lambda lp, a: lad_theory_loss(lp, logp_old, a, eta=0.7, div=key, mask=mask), (logp, adv))


def test_gradcheck_tv_away_from_kinks():
    logp_old = torch.log(torch.full((4,), 0.25, dtype=F64))
    logp = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5], dtype=F64)  # x = r e^-u far from 1
    assert torch.autograd.gradcheck(lambda lp: lad_loss(lp, logp_old, adv, eta=1.0, div="tv"), (logp,))


def test_gradcheck_grpo():
    rng = np.random.default_rng(10)
    logp_old = _t(np.log(rng.dirichlet(np.ones(6))))
    # ratios away from the clip boundaries 0.8 and 1.2 (finite differences straddling a kink would fail)
    log_ratio = np.log(np.array([0.5, 0.9, 1.05, 1.1, 1.5, 0.7]))
    logp = (logp_old + _t(log_ratio)).detach().requires_grad_(True)
    adv = _t(np.array([1.0, -1.0, 0.3, -2.0, 0.7, -0.4]), requires_grad=True)
    logp_ref = _t(np.log(rng.dirichlet(np.ones(6))))
    assert torch.autograd.gradcheck(
        lambda lp, a: grpo_loss(lp, logp_old, a, beta=0.2, logp_ref=logp_ref), (logp, adv))
    assert torch.autograd.gradcheck(
        lambda lp, a: grpo_loss(lp, logp_old, a, eps_low=None, eps_high=None, weights=logp_old.exp()),
        (logp, adv))


def test_no_gradient_through_logp_old_or_logp_ref():
    torch.manual_seed(16)
    logp = torch.log_softmax(torch.randn(5, dtype=F64), -1).detach().requires_grad_(True)
    logp_old = torch.log_softmax(torch.randn(5, dtype=F64), -1).detach().requires_grad_(True)
    logp_ref = torch.log_softmax(torch.randn(5, dtype=F64), -1).detach().requires_grad_(True)
    adv = torch.randn(5, dtype=F64)
    for val in (lad_loss(logp, logp_old, adv, eta=1.0), lad_theory_loss(logp, logp_old, adv, eta=1.0),
                grpo_loss(logp, logp_old, adv, beta=0.1, logp_ref=logp_ref)):
        g = torch.autograd.grad(val, (logp, logp_old, logp_ref), allow_unused=True)
        assert g[0] is not None and g[1] is None and g[2] is None


# --- the LAD gradient identity (LAD_SPEC "practical LAD loss") ------------------------------------------

def _identity_setup(seed, n=7):
    rng = np.random.default_rng(seed)
    pi_old = rng.dirichlet(np.full(n, 0.7))
    pi_old = np.clip(pi_old, 1e-9, None)
    pi_old /= pi_old.sum()
    theta = rng.normal(size=n)
    adv = rng.normal(size=n)
    return theta, pi_old, adv


def _lad_grad(theta, pi_old, adv, eta, key):
    th = _t(theta, requires_grad=True)
    val = lad_loss(torch.log_softmax(th, -1), _t(np.log(pi_old)), _t(adv), eta=eta, div=key, weights=_t(pi_old))
    (g,) = torch.autograd.grad(val, th)
    return g.numpy()


def _identity_rhs(theta, pi_old, adv, eta, key, sign_u=1.0):
    pi = np.exp(theta - theta.max())
    pi /= pi.sum()
    x = pi / pi_old * np.exp(-sign_u * adv / eta)
    w = pi * FPRIME[key](x)  # sum_y pi(y) f'(x_y) (e_y - pi) = w - pi sum(w)
    return w - pi * w.sum()


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lad_gradient_identity(key, seed):
    theta, pi_old, adv = _identity_setup(seed)
    g = _lad_grad(theta, pi_old, adv, 0.8, key)
    assert _close(g, _identity_rhs(theta, pi_old, adv, 0.8, key), rtol=1e-9, atol=1e-12)


def test_lad_gradient_identity_detects_planted_error():
    theta, pi_old, adv = _identity_setup(0)
    g = _lad_grad(theta, pi_old, adv, 0.8, "js")
    assert not _close(g, _identity_rhs(theta, pi_old, adv, 0.8, "js", sign_u=-1.0), rtol=1e-9, atol=1e-12)
    assert not _close(g, _identity_rhs(theta, pi_old, adv, 0.8, "kl"), rtol=1e-9, atol=1e-12)


# --- GRPO special cases ----------------------------------------------------------------------------------

def test_grpo_unclipped_equals_minus_expected_advantage_under_pi_theta():
    rng = np.random.default_rng(11)
    n = 6
    pi_old = rng.dirichlet(np.ones(n))
    adv = rng.normal(size=n)
    th = _t(rng.normal(size=n), requires_grad=True)
    val = grpo_loss(torch.log_softmax(th, -1), _t(np.log(pi_old)), _t(adv), eps_low=None, eps_high=None,
                    weights=_t(pi_old))
    (g,) = torch.autograd.grad(val, th)
    pi = torch.softmax(th.detach(), -1).numpy()
    assert val.item() == pytest.approx(-(pi * adv).sum(), rel=1e-12)
    assert _close(g.numpy(), -pi * (adv - (pi * adv).sum()))  # grad of -E_pi[A] wrt logits
    # planted error: E_{pi_old}[A] instead of E_{pi_theta}[A]
    assert val.item() != pytest.approx(-(pi_old * adv).sum(), rel=1e-6)


def _clip_case():
    ratios = np.array([0.5, 0.75, 0.85, 0.95, 1.05, 1.2, 1.3, 2.0])
    return np.concatenate([ratios, ratios]), np.concatenate([np.full(8, 1.5), np.full(8, -0.7)])


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28), (None, 0.28), (0.2, None), (None, None)])
def test_grpo_clipping_zero_gradient_where_clipped(eps_low, eps_high):
    ratios, adv = _clip_case()
    logp_old = np.log(np.full(16, 1.0 / 16))
    logp = _t(logp_old + np.log(ratios), requires_grad=True)
    terms = grpo_terms(logp, _t(logp_old), _t(adv), eps_low=eps_low, eps_high=eps_high)
    (g,) = torch.autograd.grad(terms.sum(), logp)
    lo = -math.inf if eps_low is None else 1.0 - eps_low
    hi = math.inf if eps_high is None else 1.0 + eps_high
    clipped = ((adv > 0) & (ratios > hi)) | ((adv < 0) & (ratios < lo))
    want_grad = np.where(clipped, 0.0, -adv * ratios)  # d(-r A)/d logp = -r A where unclipped
    want_val = np.where(clipped, -np.clip(ratios, lo, hi) * adv, -ratios * adv)
    assert _close(g.numpy(), want_grad)
    assert _close(terms.detach().numpy(), want_val)
    if eps_low is not None and eps_high is not None:
        assert clipped.sum() >= 3  # the case exercises clipping on both sides
        # planted error: clipping applied on the wrong side (A > 0 with r < lo) is detected
        wrong = ((adv > 0) & (ratios < lo)) | ((adv < 0) & (ratios > hi))
        assert not _close(g.numpy(), np.where(wrong, 0.0, -adv * ratios))


def test_k3_kl_term_matches_direct_formula_and_is_kl_in_expectation():
    rng = np.random.default_rng(12)
    n = 6
    logp = np.log(rng.dirichlet(np.ones(n)))
    logp_ref = np.log(rng.dirichlet(np.ones(n)))
    beta = 0.3
    lp = _t(logp, requires_grad=True)
    terms = grpo_terms(lp, _t(logp), _t(np.zeros(n)), beta=beta, logp_ref=_t(logp_ref))
    d = logp_ref - logp
    want = beta * (np.exp(d) - d - 1.0)
    assert _close(terms.detach().numpy(), want)
    assert np.all(terms.detach().numpy() >= 0.0)
    (g,) = torch.autograd.grad(terms.sum(), lp)
    assert _close(g.numpy(), beta * (1.0 - np.exp(d)))
    # E_{pi}[k3] = KL(pi || pi_ref)
    pi = np.exp(logp)
    val = grpo_loss(_t(logp), _t(logp), _t(np.zeros(n)), beta=beta, logp_ref=_t(logp_ref), weights=_t(pi))
    assert val.item() == pytest.approx(beta * (pi * (logp - logp_ref)).sum(), rel=1e-12)
    # planted error: the k3 estimator with the log-ratio's sign flipped
    assert not _close(terms.detach().numpy(), beta * (np.exp(-d) + d - 1.0))
    # and zero where pi = pi_ref
    same = grpo_terms(_t(logp), _t(logp), _t(np.zeros(n)), beta=beta, logp_ref=_t(logp))
    assert torch.equal(same, torch.zeros(n, dtype=F64))


# --- dtypes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_promoted(half):
    rng = np.random.default_rng(13)
    logp = torch.tensor(np.log(rng.dirichlet(np.ones(8), size=(4,))), dtype=half)
    logp_old = torch.tensor(np.log(rng.dirichlet(np.ones(8), size=(4,))), dtype=half)
    adv = torch.tensor(rng.normal(size=(4, 8)), dtype=half)
    logp_ref = torch.tensor(np.log(rng.dirichlet(np.ones(8), size=(4,))), dtype=half)
    weights = logp_old.exp()
    calls = [
        lambda lp, lo, a, r, w: lad_loss(lp, lo, a, eta=0.5, weights=w),
        lambda lp, lo, a, r, w: lad_loss(lp, lo, a, eta=0.5, div="neyman"),
        lambda lp, lo, a, r, w: lad_terms(lp, lo, a, eta=0.5, div="kl"),
        lambda lp, lo, a, r, w: lad_theory_loss(lp, lo, a, eta=0.5, div="hd"),
        lambda lp, lo, a, r, w: grpo_loss(lp, lo, a, beta=0.1, logp_ref=r, weights=w),
        lambda lp, lo, a, r, w: grpo_terms(lp, lo, a, beta=0.1, logp_ref=r),
    ]
    for call in calls:
        low = call(logp, logp_old, adv, logp_ref, weights)
        ref = call(logp.double(), logp_old.double(), adv.double(), logp_ref.double(), weights.double())
        assert low.dtype == torch.float32
        assert torch.allclose(low.double(), ref, rtol=1e-5, atol=1e-6)
        # the same call evaluated in half precision would not be this close (the check can fail)


def test_half_precision_check_can_fail():
    # evaluating the loss *in* bfloat16 misses the float64 value by far more than the tolerance above
    rng = np.random.default_rng(13)
    logp = torch.tensor(np.log(rng.dirichlet(np.ones(8), size=(4,))), dtype=torch.bfloat16)
    logp_old = torch.tensor(np.log(rng.dirichlet(np.ones(8), size=(4,))), dtype=torch.bfloat16)
    adv = torch.tensor(rng.normal(size=(4, 8)), dtype=torch.bfloat16)
    ref = lad_loss(logp.double(), logp_old.double(), adv.double(), eta=0.5)
    r = torch.exp(logp - logp_old)
    u = adv / 0.5
    x = r * torch.exp(-u)
    naive = (torch.exp(u) * 0.5 * (x * torch.log(x) - (x + 1) * torch.log((x + 1) / 2))).mean(-1)
    assert naive.dtype == torch.bfloat16
    assert not torch.allclose(naive.double(), ref, rtol=1e-5, atol=1e-6)


# --- bad inputs -------------------------------------------------------------------------------------------

def _ok():
    return torch.zeros(4, 5, dtype=F64), torch.zeros(4, 5, dtype=F64), torch.ones(4, 5, dtype=F64)


def test_non_broadcasting_shapes_raise_value_error():
    lp, lo, a = _ok()
    bad = torch.zeros(3, 5, dtype=F64)
    with pytest.raises(ValueError):
        lad_loss(lp, bad, a, eta=1.0)
    with pytest.raises(ValueError):
        lad_terms(lp, lo, torch.zeros(4, 6, dtype=F64), eta=1.0)
    with pytest.raises(ValueError):
        lad_theory_loss(lp, lo, bad, eta=1.0)
    with pytest.raises(ValueError):
        grpo_loss(bad, lo, a)
    with pytest.raises(ValueError):
        grpo_terms(lp, lo, a, beta=0.1, logp_ref=bad)
    # weights or mask that broadcast with logp but not with the other inputs
    lp1 = torch.zeros(5, dtype=F64)
    with pytest.raises(ValueError):
        lad_loss(lp1, lo, a, eta=1.0, weights=bad)
    with pytest.raises(ValueError):
        lad_loss(lp1, lo, a, eta=1.0, mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        grpo_loss(lp1, lo, a, weights=bad)
    with pytest.raises(ValueError):
        grpo_loss(lp1, lo, a, mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        lad_theory_loss(lp1, lo, a, eta=1.0, mask=torch.ones(3, 5, dtype=torch.bool))


def test_integer_dtypes_raise_value_error():
    lp, lo, a = _ok()
    i = torch.zeros(4, 5, dtype=torch.int64)
    for args in ((i, lo, a), (lp, i, a), (lp, lo, i)):
        with pytest.raises(ValueError):
            lad_loss(*args, eta=1.0)
        with pytest.raises(ValueError):
            lad_theory_loss(*args, eta=1.0)
        with pytest.raises(ValueError):
            grpo_loss(*args)
    with pytest.raises(ValueError):
        lad_loss(lp, lo, a, eta=1.0, weights=i)
    with pytest.raises(ValueError):
        grpo_loss(lp, lo, a, weights=i)
    with pytest.raises(ValueError):
        grpo_loss(lp, lo, a, beta=0.1, logp_ref=i)
    # integer (0/1) masks are allowed
    assert lad_loss(lp, lo, a, eta=1.0, mask=torch.ones(4, 5, dtype=torch.int64)).shape == (4,)


@pytest.mark.parametrize("eta", [0.0, -1.0, math.inf, math.nan])
def test_bad_eta_raises_value_error(eta):
    lp, lo, a = _ok()
    with pytest.raises(ValueError):
        lad_loss(lp, lo, a, eta=eta)
    with pytest.raises(ValueError):
        lad_terms(lp, lo, a, eta=eta)
    with pytest.raises(ValueError):
        lad_theory_loss(lp, lo, a, eta=eta)


def test_numpy_scalar_eta_is_accepted():
    # an eta read from a numpy sweep (np.float32 is not a Python float) must be accepted
    lp, lo, a = _ok()
    for eta in (np.float32(0.5), np.float64(0.5), 0.5, 1):
        assert torch.isfinite(lad_loss(lp, lo, a, eta=eta)).all()
        assert torch.isfinite(lad_theory_loss(lp, lo, a, eta=eta)).all()


def test_beta_without_reference_raises_and_unknown_divergence_raises():
    lp, lo, a = _ok()
    with pytest.raises(ValueError):
        grpo_loss(lp, lo, a, beta=0.1)
    with pytest.raises(ValueError):
        grpo_terms(lp, lo, a, beta=0.1)
    with pytest.raises(ValueError):
        lad_loss(lp, lo, a, eta=1.0, div="nope")
    with pytest.raises(ValueError):
        lad_theory_loss(lp, lo, a, eta=1.0, div="nope")


# --- property tests -----------------------------------------------------------------------------------------

@st.composite
def bandit_problems(draw):
    n = draw(st.integers(2, 8))
    alpha = draw(st.sampled_from([0.05, 0.2, 1.0, 5.0]))  # 0.05 and 0.2: peaked pi_old
    seed = draw(st.integers(0, 2**31 - 1))
    eta = draw(st.floats(0.3, 4.0))
    adv_scale = draw(st.floats(0.1, 3.0))
    rng = np.random.default_rng(seed)
    pi_old = np.clip(rng.dirichlet(np.full(n, alpha)), 1e-12, None)
    pi_old /= pi_old.sum()
    adv = rng.normal(0.0, adv_scale, size=n)
    return pi_old, adv, eta, rng


def _target(pi_old, adv, eta):
    logits = np.log(pi_old) + adv / eta
    return logits - np.logaddexp.reduce(logits)  # log of pi_old exp(A/eta) / Z


def _loss_and_grad(kind, theta, pi_old, adv, eta, key):
    th = _t(theta, requires_grad=True)
    lp = torch.log_softmax(th, -1)
    if kind == "lad":
        val = lad_loss(lp, _t(np.log(pi_old)), _t(adv), eta=eta, div=key, weights=_t(pi_old))
    else:
        val = lad_theory_loss(lp, _t(np.log(pi_old)), _t(adv), eta=eta, div=key)
    (g,) = torch.autograd.grad(val, th)
    return val.item(), g.numpy()


def _grad_tol(theta, pi_old, adv, eta, key):
    x = np.exp(theta) / (pi_old * np.exp(adv / eta))
    return 1e-9 * (1.0 + np.abs(FPRIME[key](x)).max())


@settings(max_examples=40, deadline=None)
@given(prob=bandit_problems(), key=st.sampled_from(STRICT), kind=st.sampled_from(["lad", "theory"]))
def test_property_minimizer_is_tilted_pi_old(prob, key, kind):
    pi_old, adv, eta, rng = prob
    theta_star = _target(pi_old, adv, eta)
    val_star, g = _loss_and_grad(kind, theta_star, pi_old, adv, eta, key)
    assert np.abs(g).max() <= _grad_tol(theta_star, pi_old, adv, eta, key)
    if kind == "theory":
        assert abs(val_star) <= 1e-10  # D_f(P || P) = 0
    for _ in range(5):
        theta = theta_star + rng.normal(0.0, rng.choice([1e-3, 0.1, 1.0]), size=theta_star.shape)
        val, _ = _loss_and_grad(kind, theta, pi_old, adv, eta, key)
        assert val >= val_star - 1e-10 * (1.0 + abs(val_star))


@settings(max_examples=30, deadline=None)
@given(prob=bandit_problems(), key=st.sampled_from(KEYS), shift=st.floats(-5.0, 5.0))
def test_property_theory_lad_invariant_to_advantage_shift(prob, key, shift):
    pi_old, adv, eta, rng = prob
    theta = rng.normal(size=adv.shape)
    v0, g0 = _loss_and_grad("theory", theta, pi_old, adv, eta, key)
    v1, g1 = _loss_and_grad("theory", theta, pi_old, adv + shift, eta, key)
    assert v1 == pytest.approx(v0, rel=1e-8, abs=1e-12)
    assert np.allclose(g1, g0, rtol=1e-7, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(prob=bandit_problems(), key=st.sampled_from(STRICT), shift=st.floats(-5.0, 5.0))
def test_property_practical_lad_minimizer_invariant_to_advantage_shift(prob, key, shift):
    pi_old, adv, eta, rng = prob
    theta_star = _target(pi_old, adv, eta)  # the minimizer for the unshifted advantages
    shifted = adv + shift
    _, g = _loss_and_grad("lad", theta_star, pi_old, shifted, eta, key)
    assert np.abs(g).max() <= _grad_tol(theta_star, pi_old, shifted, eta, key)
    val_star, _ = _loss_and_grad("lad", theta_star, pi_old, shifted, eta, key)
    for _ in range(3):
        theta = theta_star + rng.normal(0.0, 0.3, size=theta_star.shape)
        val, _ = _loss_and_grad("lad", theta, pi_old, shifted, eta, key)
        assert val >= val_star - 1e-10 * (1.0 + abs(val_star))


def test_minimizer_checks_detect_planted_errors():
    rng = np.random.default_rng(14)
    pi_old = rng.dirichlet(np.ones(6))
    adv = rng.normal(size=6)
    eta = 0.7
    for key in ("js", "kl", "hd"):
        # the wrong target pi_old exp(-A/eta) / Z: the gradient does not vanish, a perturbation lowers the loss
        wrong = _target(pi_old, -adv, eta)
        for kind in ("lad", "theory"):
            val_w, g = _loss_and_grad(kind, wrong, pi_old, adv, eta, key)
            assert np.abs(g).max() > 1e3 * _grad_tol(wrong, pi_old, adv, eta, key)
            right, _ = _loss_and_grad(kind, _target(pi_old, adv, eta), pi_old, adv, eta, key)
            assert right < val_w
    # practical LAD's *value* is not shift-invariant (only its minimizer is): the invariance check can fail
    theta = rng.normal(size=6)
    v0, _ = _loss_and_grad("lad", theta, pi_old, adv, eta, "js")
    v1, _ = _loss_and_grad("lad", theta, pi_old, adv + 1.0, eta, "js")
    assert v1 != pytest.approx(v0, rel=1e-8, abs=1e-12)
