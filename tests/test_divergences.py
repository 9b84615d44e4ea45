"""Tests of the eight log-space f-generators (ladsim.divergences) against LAD_SPEC "f-divergences".

Every formula check is paired with a mutation check: the same comparison run against a planted wrong
reference must fail, so the comparison itself is shown to be able to fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_formulas import FPRIME, F

from ladsim.divergences import DIVERGENCES, LOG2, NON_STRICT_CLASS, STRICT_CLASS, Divergence, get_divergence

KEYS = ("kl", "rkl", "jf", "js", "hd", "tv", "pearson", "neyman")
F32_MAX = torch.finfo(torch.float32).max


# --- direct references (x-space, from LAD_SPEC's table): tests/spec_formulas.py ------------------------

F_DIRECT, FPRIME_DIRECT = F, FPRIME

# Planted errors: plausible slips (wrong sign, dropped factor, swapped argument).
F_MUTANTS = {
    "kl": lambda x: -np.log(x),                                   # kl <-> rkl swapped
    "rkl": lambda x: x * np.log(x),
    "jf": lambda x: (x + 1.0) * np.log(x),                        # sign slip
    "js": lambda x: x * np.log(x) - (x + 1.0) * np.log((x + 1.0) / 2.0),  # dropped 1/2
    "hd": lambda x: (np.sqrt(x) - 1.0) ** 2,                       # dropped 1/2
    "tv": lambda x: np.abs(x - 1.0),                               # dropped 1/2
    "pearson": lambda x: (1.0 - x) ** 2 / x,                       # pearson <-> neyman swapped
    "neyman": lambda x: (x - 1.0) ** 2,
}


def _close(a, b, rtol=1e-9, atol=1e-12) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol))


def _t64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


@pytest.fixture(scope="module")
def log_x_grid() -> np.ndarray:
    rng = np.random.default_rng(0)
    # a grid through the interesting region plus random points; avoid exactly 0 (TV's kink)
    t = np.concatenate([np.linspace(-20.0, 20.0, 401) + 1e-3, rng.uniform(-30.0, 30.0, 500)])
    return t


# --- registry -------------------------------------------------------------------------------------

def test_registry_has_exactly_the_eight_spec_generators():
    assert tuple(DIVERGENCES) == KEYS
    for k, d in DIVERGENCES.items():
        assert d.key == k
        assert get_divergence(k) is d
        assert get_divergence(d) is d


def test_unknown_name_raises_value_error_listing_keys():
    with pytest.raises(ValueError) as exc:
        get_divergence("chi2")
    msg = str(exc.value)
    assert "chi2" in msg
    for k in KEYS:
        assert k in msg


def test_paper_classes_and_strictness_flags():
    assert set(STRICT_CLASS) == {"tv", "hd", "js"}
    assert set(NON_STRICT_CLASS) == {"kl", "rkl", "jf"}
    assert [k for k, d in DIVERGENCES.items() if not d.strictly_convex] == ["tv"]
    assert {k for k, d in DIVERGENCES.items() if d.bounded} == {"js", "hd", "tv"}


# --- f(1) = 0 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_f_at_one_is_zero(key, dtype):
    val = DIVERGENCES[key].f(torch.zeros(3, dtype=dtype))
    assert val.dtype == dtype
    assert torch.equal(val, torch.zeros(3, dtype=dtype))


# --- f agrees with the LAD_SPEC formula -----------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
def test_f_matches_direct_formula_float64(key, log_x_grid):
    got = DIVERGENCES[key].f(_t64(log_x_grid)).numpy()
    want = F_DIRECT[key](np.exp(log_x_grid))
    # relative tolerance on |f| plus a tiny absolute term for the direct formulas' cancellation near x = 1
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("key", KEYS)
def test_f_formula_check_detects_planted_error(key, log_x_grid):
    got = DIVERGENCES[key].f(_t64(log_x_grid)).numpy()
    assert not _close(got, F_MUTANTS[key](np.exp(log_x_grid)))


# --- derivative -------------------------------------------------------------------------------------

def _autograd_dfdt(div: Divergence, t: torch.Tensor) -> torch.Tensor:
    t = t.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(div.f(t).sum(), t)
    return g


@pytest.mark.parametrize("key", KEYS)
def test_derivative_matches_autograd_of_f(key, log_x_grid):
    div = DIVERGENCES[key]
    t = _t64(log_x_grid)
    dfdt = _autograd_dfdt(div, t)  # d f(e^t)/dt = x f'(x)
    fprime = div.derivative(t)
    assert fprime.dtype == torch.float64 and fprime.shape == t.shape
    # compared as d f/dt = x f'(x) (not f' = (d f/dt) / x): torch's expm1 backward computes exp(t) as
    # expm1(t) + 1, which is exact in absolute but not in relative terms for t << 0, and dividing by x = e^t
    # would blow that rounding up.
    assert torch.allclose(torch.exp(t) * fprime, dfdt, rtol=1e-9, atol=1e-14)
    # and with the hand-differentiated table
    assert _close(fprime.numpy(), FPRIME_DIRECT[key](np.exp(log_x_grid)))


@pytest.mark.parametrize("key", KEYS)
def test_derivative_check_detects_planted_error(key, log_x_grid):
    div = DIVERGENCES[key]
    t = _t64(log_x_grid)
    dfdt = _autograd_dfdt(div, t)
    # the common slip: forgetting the chain-rule factor x (comparing f' to d f/d log x)
    assert not torch.allclose(div.derivative(t), dfdt, rtol=1e-9, atol=1e-12)
    # and a planted sign error
    assert not torch.allclose(-torch.exp(t) * div.derivative(t), dfdt, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("key", [k for k in KEYS if k != "tv"])
def test_derivative_at_one(key):
    # f'(1): 1 for KL, -1 for rKL, 0 for the others (normalized generators)
    want = {"kl": 1.0, "rkl": -1.0}.get(key, 0.0)
    assert DIVERGENCES[key].derivative(torch.zeros((), dtype=torch.float64)).item() == pytest.approx(want, abs=1e-15)


def _js_accurate(x):
    # the LAD_SPEC JS formula with log((x + 1)/2) = log1p(x) - log 2: no rounding of 1 + x for tiny x
    return 0.5 * (x * np.log(x) - (x + 1.0) * (np.log1p(x) - np.log(2.0)))


def test_js_is_accurate_beyond_softplus_threshold():
    # torch's softplus returns its argument above 20; a JS written as log 2 - softplus(-t) - t cancels for
    # t << 0 and loses log1p(e^t) ~ 2e-9 there (a regression once seen in the core). Checked tightly.
    t = np.linspace(-40.0, -15.0, 251)
    got = DIVERGENCES["js"].f(_t64(t)).numpy()
    assert np.allclose(got, _js_accurate(np.exp(t)), rtol=1e-13, atol=0.0)
    lp, lq = t - 5.0, np.full_like(t, -5.0)
    got_p = DIVERGENCES["js"].perspective(_t64(lp), _t64(lq)).numpy()
    assert np.allclose(got_p, np.exp(lq) * _js_accurate(np.exp(lp - lq)), rtol=1e-13, atol=0.0)


def test_js_accuracy_check_detects_the_cancelling_form():
    t = _t64(np.linspace(-40.0, -15.0, 251))
    s = torch.nn.functional.softplus(-t)
    cancelling = 0.5 * (torch.exp(t) * (LOG2 - s) + (LOG2 - s - t))
    assert not np.allclose(cancelling.numpy(), _js_accurate(np.exp(t.numpy())), rtol=1e-13, atol=0.0)


# --- perspective ------------------------------------------------------------------------------------

def _random_pairs(n=400, seed=1, span=30.0, gap=30.0):
    rng = np.random.default_rng(seed)
    lq = rng.uniform(-span, span, n)
    lp = lq + rng.uniform(-gap, gap, n)
    return lp, lq


@pytest.mark.parametrize("key", KEYS)
def test_perspective_equals_q_f_of_ratio_float64(key):
    lp, lq = _random_pairs()
    got = DIVERGENCES[key].perspective(_t64(lp), _t64(lq)).numpy()
    want = np.exp(lq) * F_DIRECT[key](np.exp(lp - lq))
    assert np.all(np.isfinite(want))
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12 * np.exp(lq))


@pytest.mark.parametrize("key", KEYS)
def test_perspective_check_detects_planted_error(key):
    lp, lq = _random_pairs()
    got = DIVERGENCES[key].perspective(_t64(lp), _t64(lq)).numpy()
    # planted error: the perspective's factor q dropped, f(p/q) instead of q f(p/q)
    wrong = F_DIRECT[key](np.exp(lp - lq))
    assert not np.allclose(got, wrong, rtol=1e-9, atol=1e-12 * np.exp(lq))


@pytest.mark.parametrize("key", KEYS)
def test_perspective_float32_where_product_is_representable(key):
    # q = e^-50 and p/q = e^100: the factors over/underflow separately in float32, the product often does not
    lq = np.array([-50.0, -50.0, 20.0, -30.0, 0.0])
    lp = np.array([50.0, -40.0, -30.0, 10.0, 40.0])
    want = np.exp(lq) * F_DIRECT[key](np.exp(lp - lq))  # float64 truth (e^100 is fine in float64)
    got = DIVERGENCES[key].perspective(torch.tensor(lp, dtype=torch.float32),
                                       torch.tensor(lq, dtype=torch.float32)).double().numpy()
    ok = np.abs(want) < F32_MAX / 4  # representable with room
    assert ok.sum() >= 3
    assert np.all(np.isfinite(got[ok]))
    assert np.allclose(got[ok], want[ok], rtol=1e-4, atol=1e-30)


def test_kl_perspective_overflow_case_is_finite_in_float32():
    # the docstring's example: q = e^-50, p/q = e^100 for KL -> q f(p/q) = p log(p/q) = 100 e^50
    got = DIVERGENCES["kl"].perspective(torch.tensor(50.0), torch.tensor(-50.0))
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(100.0 * math.exp(50.0), rel=1e-5)


def test_divergence_sums_perspective_over_dim():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(6), size=(3,))
    q = rng.dirichlet(np.ones(6), size=(3,))
    for key in KEYS:
        got = DIVERGENCES[key].divergence(_t64(np.log(p)), _t64(np.log(q)), dim=-1).numpy()
        want = (q * F_DIRECT[key](p / q)).sum(-1)
        assert got.shape == (3,)
        assert _close(got, want)
        got0 = DIVERGENCES[key].divergence(_t64(np.log(p.T)), _t64(np.log(q.T)), dim=0).numpy()
        assert _close(got0, want)


# --- convexity ------------------------------------------------------------------------------------

def _midpoint_gap(div: Divergence, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """(f(x1) + f(x2))/2 - f((x1 + x2)/2), computed from logs; >= 0 iff midpoint convex at (x1, x2)."""
    a, b = _t64(t1), _t64(t2)
    mid = torch.logaddexp(a, b) - LOG2
    return (0.5 * (div.f(a) + div.f(b)) - div.f(mid)).numpy()


def _pairs_for_convexity(seed=3, n=2000):
    rng = np.random.default_rng(seed)
    t1 = rng.uniform(-6.0, 6.0, n)
    t2 = rng.uniform(-6.0, 6.0, n)
    return t1, t2


@pytest.mark.parametrize("key", KEYS)
def test_midpoint_convexity(key):
    t1, t2 = _pairs_for_convexity()
    gap = _midpoint_gap(DIVERGENCES[key], t1, t2)
    scale = 1.0 + np.abs(DIVERGENCES[key].f(_t64(t1)).numpy()) + np.abs(DIVERGENCES[key].f(_t64(t2)).numpy())
    assert np.all(gap >= -1e-12 * scale)


@pytest.mark.parametrize("key", [k for k in KEYS if k != "tv"])
def test_strict_convexity(key):
    t1, t2 = _pairs_for_convexity()
    keep = np.abs(np.exp(t1) - np.exp(t2)) > 1e-3 * (np.exp(t1) + np.exp(t2))
    gap = _midpoint_gap(DIVERGENCES[key], t1[keep], t2[keep])
    assert DIVERGENCES[key].strictly_convex
    assert np.all(gap > 0.0)


def test_tv_is_not_strictly_convex():
    # both points on the same side of x = 1: TV is linear there, the midpoint gap is zero
    t1 = np.array([0.1, -2.0, 3.0])
    t2 = np.array([0.5, -0.3, 1.0])
    gap = _midpoint_gap(DIVERGENCES["tv"], t1, t2)
    assert np.allclose(gap, 0.0, atol=1e-12)
    assert not DIVERGENCES["tv"].strictly_convex
    # but straddling 1 the gap is positive (convex, not linear)
    assert _midpoint_gap(DIVERGENCES["tv"], np.array([-1.0]), np.array([1.0]))[0] > 0.1


def test_convexity_check_detects_planted_concave_function():
    # the same check applied to a concave "generator" (-KL) must fail
    t1, t2 = _pairs_for_convexity()
    neg_kl = Divergence("negkl", "neg", "-x log x", lambda lp, lq: -torch.exp(lp) * (lp - lq),
                        lambda t: -(t + 1.0), bounded=False)
    gap = _midpoint_gap(neg_kl, t1, t2)
    assert not np.all(gap >= -1e-12)


# --- bounded flags --------------------------------------------------------------------------------

BOUNDS = {"js": LOG2, "hd": 1.0, "tv": 1.0}


def _random_distribution_pairs(seed=4, n_pairs=300, k=8):
    rng = np.random.default_rng(seed)
    alphas = rng.choice([0.05, 0.3, 1.0, 5.0], size=n_pairs)
    p = np.stack([rng.dirichlet(np.full(k, a)) for a in alphas])
    q = np.stack([rng.dirichlet(np.full(k, a)) for a in alphas[::-1]])
    # nearly disjoint supports, where the bounded divergences approach their bound
    eps = 1e-30
    p_dis = np.array([[1.0 - eps, eps], [eps, 1.0 - eps]])
    q_dis = p_dis[::-1].copy()
    p = np.clip(p, 1e-300, None)
    q = np.clip(q, 1e-300, None)
    return np.log(p), np.log(q), np.log(p_dis), np.log(q_dis)


@pytest.mark.parametrize("key", KEYS)
def test_bounded_flags(key):
    div = DIVERGENCES[key]
    lp, lq, lp_dis, lq_dis = _random_distribution_pairs()
    d = div.divergence(_t64(lp), _t64(lq)).numpy()
    d_dis = div.divergence(_t64(lp_dis), _t64(lq_dis)).numpy()
    assert np.all(np.isfinite(d)) and np.all(d >= -1e-12)
    if div.bounded:
        bound = BOUNDS[key]
        assert np.all(d <= bound + 1e-12)
        assert np.all(d_dis <= bound + 1e-12)
        assert np.all(d_dis >= 0.999 * bound)  # and the bound is tight: the constant is the right one
    else:
        assert key not in BOUNDS
        assert d_dis.max() > 30.0  # grows without bound as the supports separate


def test_bound_check_detects_planted_wrong_bound():
    # JS reaches log 2 on disjoint supports: a planted bound of 0.5 would be violated
    _, _, lp_dis, lq_dis = _random_distribution_pairs()
    d = DIVERGENCES["js"].divergence(_t64(lp_dis), _t64(lq_dis)).numpy()
    assert not np.all(d <= 0.5)


# --- float32 range: |log x| <= 50 ---------------------------------------------------------------

# Pearson's true value (x - 1)^2 at log x = 50 is about e^100 > float32 max (~3.4e38 = e^88.7): no log-space
# trick can represent it. It is tested finite only for |log x| <= 44 (e^88 < float32 max), and the test
# below asserts that its true value at 50 is indeed out of float32 range.
F_RANGE = {k: 50.0 for k in KEYS} | {"pearson": 44.0}
# Neyman's f'(x) = 1 - x^-2 is -e^100 at log x = -50, likewise out of float32 range: tested up to 44.
FPRIME_RANGE = {k: 50.0 for k in KEYS} | {"neyman": 44.0}


@pytest.mark.parametrize("key", KEYS)
def test_f_and_grad_finite_in_float32(key):
    bound = F_RANGE[key]
    t = torch.linspace(-bound, bound, 2001, dtype=torch.float32).requires_grad_(True)
    val = DIVERGENCES[key].f(t)
    (grad,) = torch.autograd.grad(val.sum(), t)
    assert val.dtype == torch.float32
    assert torch.isfinite(val).all(), t[~torch.isfinite(val)]
    assert torch.isfinite(grad).all(), t[~torch.isfinite(grad)]
    # and accurate, not merely finite (float64 as the reference)
    want = DIVERGENCES[key].f(t.detach().double())
    assert torch.allclose(val.detach().double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_derivative_finite_in_float32(key):
    bound = FPRIME_RANGE[key]
    t = torch.linspace(-bound, bound, 2001, dtype=torch.float32)
    fp = DIVERGENCES[key].derivative(t)
    assert fp.dtype == torch.float32
    assert torch.isfinite(fp).all(), t[~torch.isfinite(fp)]
    assert torch.allclose(fp.double(), DIVERGENCES[key].derivative(t.double()), rtol=1e-4, atol=1e-5)


def test_pearson_value_at_50_is_beyond_float32_range():
    true = math.expm1(50.0) ** 2
    assert true > F32_MAX
    assert math.expm1(44.0) ** 2 < F32_MAX
    # hence the float32 evaluation cannot be finite there (documented limitation, not a bug)
    assert not torch.isfinite(DIVERGENCES["pearson"].f(torch.tensor(50.0)))


def test_neyman_derivative_at_minus_50_is_beyond_float32_range():
    true = 1.0 - math.exp(100.0)
    assert abs(true) > F32_MAX
    assert abs(1.0 - math.exp(88.0)) < F32_MAX
    assert not torch.isfinite(DIVERGENCES["neyman"].derivative(torch.tensor(-50.0)))


def test_naive_x_space_evaluation_would_fail_the_float32_check():
    # shows the finiteness test can fail: evaluating x log x from x = exp(t) at t = -50..50 in float32 is fine,
    # but the Neyman formula (1 - x)^2 / x from x is not (x = e^-50 -> 1/x = e^50 ok, x = e^50 -> (x)^2 = inf)
    t = torch.linspace(-50, 50, 101, dtype=torch.float32)
    x = torch.exp(t)
    naive = (1 - x) ** 2 / x
    assert not torch.isfinite(naive).all()
    assert torch.isfinite(DIVERGENCES["neyman"].f(t)).all()


# --- property test ----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(KEYS),
       t1=st.floats(-25.0, 25.0, allow_nan=False), t2=st.floats(-25.0, 25.0, allow_nan=False),
       lam=st.floats(0.0, 1.0))
def test_property_generator_axioms(key, t1, t2, lam):
    div = DIVERGENCES[key]
    a, b = torch.tensor(t1, dtype=torch.float64), torch.tensor(t2, dtype=torch.float64)
    fa, fb = div.f(a).item(), div.f(b).item()
    x1, x2 = math.exp(t1), math.exp(t2)
    scale = 1.0 + abs(fa) + abs(fb)
    # f matches the table
    assert fa == pytest.approx(float(F_DIRECT[key](np.float64(x1))), rel=1e-9, abs=1e-12)
    # Jensen on a random chord: f(lam x1 + (1 - lam) x2) <= lam f(x1) + (1 - lam) f(x2)
    xm = lam * x1 + (1.0 - lam) * x2
    fm = div.f(torch.tensor(math.log(xm), dtype=torch.float64)).item()
    assert fm <= lam * fa + (1.0 - lam) * fb + 1e-10 * scale
    # supporting line: f(x2) >= f(x1) + f'(x1) (x2 - x1)
    fp1 = div.derivative(a).item()
    if key != "tv" or t1 != 0.0:
        assert fb >= fa + fp1 * (x2 - x1) - 1e-10 * (scale + abs(fp1 * (x2 - x1)))
    # normalized generator is nonnegative: f(x) - f'(1)(x - 1) >= 0
    fp_one = div.derivative(torch.zeros((), dtype=torch.float64)).item()
    assert fa - fp_one * (x1 - 1.0) >= -1e-12 * scale
