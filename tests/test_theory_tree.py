"""The token tree's theory checks (``ladsim.theory.tree``) pass, and fail when the formula they check is wrong.

Each mutation runs on the sizes of the unmutated baseline beside it, so a failure is the planted formula's.
"""

from __future__ import annotations

import numpy as np
import pytest

from ladsim.theory import tree as checks
from ladsim.theory.common import single_threaded


@pytest.fixture(autouse=True)
def _one_thread():
    with single_threaded():
        yield


SEQ = dict(n_instances=4)


def test_sequence_lad_baseline_passes():
    assert checks.check_tree_sequence_lad(1, **SEQ).passed


@pytest.mark.parametrize("wrong", [
    lambda lpo, a, eta: checks.p_a(lpo, -a, eta),                       # wrong sign of A
    lambda lpo, a, eta: checks.p_a(np.zeros_like(lpo), a, eta),         # pi_old forgotten
    lambda lpo, a, eta: checks.p_a(lpo, a, 2.0 * eta),                  # another temperature
])
def test_sequence_lad_fails_on_a_wrong_target(wrong):
    assert not checks.check_tree_sequence_lad(1, target=wrong, **SEQ).passed


def test_sequence_lad_fails_when_the_loss_is_token_level():
    # per-token ratios: another minimizer (question 2), so "P_A" must not be found
    assert not checks.check_tree_sequence_lad(1, ratio="token", divs=("js", "hd", "kl"), **SEQ).passed


TOKEN = dict(n_instances=5, n_train=1)


def test_token_lad_baseline_passes():
    assert checks.check_tree_token_lad(2, **TOKEN).passed


def _p_a_conditionals(tree, log_old, adv, eta, div, agg):
    """The sequence-level answer (P_A's node conditionals) planted as the token-level minimizer."""
    lpo = checks.response_log_probs_np(tree, log_old)
    return checks.node_conditionals(tree, checks.p_a(lpo, adv, eta))


def _no_length_weighting(agg, lengths, pi_old, L):
    return checks.agg_weight_factors("token-sum" if agg == "seq-mean-token-mean" else agg, lengths, pi_old, L)


def _mean_advantage(tree, log_old, adv, eta, div, agg):
    """KL's answer for every generator: pi(a|s) ∝ pi_old(a|s) exp(E[A | s, a] / eta)."""
    return checks.token_lad_minimizer(tree, log_old, adv, eta, "kl", agg)


@pytest.mark.parametrize("wrong", [_p_a_conditionals, _mean_advantage,
                                   lambda *a: checks.token_lad_minimizer(*a, factors=_no_length_weighting)])
def test_token_lad_fails_on_a_wrong_minimizer(wrong):
    assert not checks.check_tree_token_lad(2, minimizer=wrong, **TOKEN).passed


AGG = dict(n_instances=2)


def test_agg_gradient_baseline_passes():
    assert checks.check_tree_agg_gradient(3, **AGG).passed


def _length_weighted_token_mean(agg, lengths, pi_old, L):
    if agg == "token-mean":
        return 1.0 / lengths
    return checks.agg_weight_factors(agg, lengths, pi_old, L)


@pytest.mark.parametrize("wrong", [_no_length_weighting, _length_weighted_token_mean])
def test_agg_gradient_fails_on_wrong_length_weights(wrong):
    assert not checks.check_tree_agg_gradient(3, factors=wrong, **AGG).passed
