"""Mutation tests: plant a wrong formula in each theory check and assert that the check fails.

Each test first runs the unmutated check on the same small sizes (so a failure of the mutant is due to the
planted formula, not to the sizes), then the mutant.
"""

import numpy as np
import pytest
import torch

from ladsim.divergences import Divergence, get_divergence
from ladsim.theory import b1, gradient, lemma31, lemma32
from ladsim.theory.common import log_softmax, single_threaded


@pytest.fixture(autouse=True)
def _one_thread():
    with single_threaded():  # tiny problems: threaded BLAS only adds wake-up cost
        yield


def rng():
    return np.random.default_rng(123)


# --- Lemma 3.1 -----------------------------------------------------------------------------------

L31 = dict(n_instances=6, n_max=20)


def test_lemma31_baseline_passes():
    assert lemma31.check_lemma31(rng(), **L31).passed


@pytest.mark.parametrize("wrong", [
    lambda lpo, a, eta: log_softmax(lpo - a / eta),            # wrong sign of A
    lambda lpo, a, eta: lpo + a / eta,                          # dropped partition function
    lambda lpo, a, eta: log_softmax(a / eta),                   # pi_old forgotten
])
def test_lemma31_fails_on_wrong_closed_form(wrong):
    assert not lemma31.check_lemma31(rng(), closed_form=wrong, **L31).passed


def test_lemma31_fails_on_other_kl_direction_for_eta():
    assert not lemma31.check_lemma31(rng(), root_kl=lemma31.kl_reverse, **L31).passed


def test_lemma31_fails_when_solver_uses_other_kl_direction():
    assert not lemma31.check_lemma31(rng(), solver_direction="reverse", **{**L31, "n_instances": 3}).passed


TRPO = dict(n_instances=3, deltas=np.logspace(-4, -1, 4), n_boot=200)


def test_trpo_baseline_passes():
    assert lemma31.check_trpo_direction(rng(), **TRPO).passed


def test_trpo_fails_on_wrong_sign_of_advantage():
    # comparing with pi_old exp(-A/eta)/Z: the distance no longer shrinks with delta
    wrong = lambda lpo, a, eta: log_softmax(lpo - a / eta)  # noqa: E731
    assert not lemma31.check_trpo_direction(rng(), closed_form=wrong, **TRPO).passed


def test_trpo_fails_on_wrong_derived_order():
    assert not lemma31.check_trpo_direction(rng(), expected_order=0.5, **TRPO).passed


# --- Lemma 3.2 -----------------------------------------------------------------------------------

L32 = dict(n_instances=1, n_max=8, n_starts=1, divs=("js", "pearson"))


def test_lemma32_baseline_passes():
    assert lemma32.check_lemma32(rng(), **L32).passed


def test_lemma32_fails_on_wrong_sign_target():
    assert not lemma32.check_lemma32(rng(), target=lambda lpo, a, eta: log_softmax(lpo - a / eta), **L32).passed


def test_lemma32_fails_on_wrong_generator():
    js = get_divergence("js")
    # a concave "generator" (-(x log x)): its minimizer is not the target
    concave = Divergence("js", "planted", "-x log x", lambda lp, lq: -torch.exp(lp) * (lp - lq),
                         lambda t: -(t + 1.0), bounded=False)
    assert not lemma32.check_lemma32(rng(), div_override={"js": concave}, **L32).passed
    assert js is get_divergence("js")


GEN = dict(n_instances=2, n_starts=1, divs=("js", "hd"))


def test_general_form_baseline_passes():
    assert lemma32.check_general_form(rng(), **GEN).passed


def test_general_form_fails_when_varying_ratio_is_constant():
    assert not lemma32.check_general_form(rng(), log_ratio_fn=lambda r, n: np.full(n, 0.7), **GEN).passed


def test_tv_baseline_passes():
    assert lemma32.check_tv(rng(), n_instances=2).passed


def test_tv_fails_on_wrong_generator():
    # a strictly convex generator under TV's name: its minimizer is a single point with another value
    assert not lemma32.check_tv(rng(), n_instances=2, div="hd").passed


# --- the gradient ----------------------------------------------------------------------------------

def test_gradient_baseline_passes():
    assert gradient.check_gradient(rng(), n_instances=2).passed


def test_gradient_fails_on_wrong_derivative():
    js = get_divergence("js")
    wrong = Divergence("js", js.name, js.formula, js.perspective,
                       lambda t: 0.5 * (np.log(2.0) - torch.nn.functional.softplus(t)), bounded=True)
    assert not gradient.check_gradient(rng(), n_instances=2, div_override={"js": wrong}).passed


def test_gradient_fails_when_weight_ignores_advantage():
    # f'(r) instead of f'(r exp(-u))
    assert not gradient.check_gradient(rng(), n_instances=2, weight_arg=lambda lp, lo, u: lp - lo).passed


def test_linear_term_baseline_passes():
    assert gradient.check_linear_term(rng(), n_instances=2, reps=500).passed


def test_linear_term_fails_on_nonlinear_addition():
    def quad(div, c):  # c (x - 1)^2 is not a linear term: the exact gradient moves
        return Divergence(div.key, div.name, div.formula,
                          lambda lp, lq: div.perspective(lp, lq) + c * torch.exp(lq) * torch.expm1(lp - lq) ** 2,
                          lambda t: div.derivative(t) + 2 * c * torch.expm1(t), bounded=False)
    assert not gradient.check_linear_term(rng(), n_instances=2, reps=500, add_term=quad).passed


def test_linear_term_fails_when_term_does_nothing():
    assert not gradient.check_linear_term(rng(), n_instances=2, reps=500, add_term=lambda d, c: d).passed


# --- Theorem B.1 -----------------------------------------------------------------------------------

B1 = dict(n_instances=2, n_points=2, deltas=np.logspace(-5, -2, 4), divs=("js", "pearson"),
          check_uncentred=False, n_boot=200)


def test_b1_baseline_passes():
    assert b1.check_b1(rng(), **B1).passed


def test_b1_fails_on_dropped_partition_function():
    assert not b1.check_b1(rng(), log_partition=lambda lpo, u: 0.0, **B1).passed


def test_b1_fails_on_wrong_partition_function():
    # log-mean-exp over actions (uniform weights) instead of under pi_old: off by O(sqrt(delta))
    from scipy.special import logsumexp
    wrong = lambda lpo, u: float(logsumexp(u) - np.log(len(u)))  # noqa: E731
    assert not b1.check_b1(rng(), log_partition=wrong, **{**B1, "n_instances": 4}).passed


def test_b1_fails_on_wrong_derived_order():
    assert not b1.check_b1(rng(), expected_order=2.0, **B1).passed
