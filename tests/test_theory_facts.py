"""Mutation tests of the issue-9 facts checks (kl_estimators, entropy_covariance, kl_penalty_fixed_points,
flowrl_fixed_point): each baseline passes on the sizes used here, and each planted error makes its check fail.

kl_penalty_fixed_points and flowrl_fixed_point run the project's own code (the registry's KL penalty and
``flowrl`` objective, the bandit trainer), so their mutants are planted there: a wrong estimator patched into
``ladsim.objectives.modifiers``, a FlowRL variant registered under another name.
"""

import numpy as np
import pytest
import torch

import ladsim.objectives.modifiers as modifiers
from ladsim.objectives import Batch, register_objective, unregister_objective
from ladsim.objectives.flowrl import FlowRLParams
from ladsim.theory import entropy_covariance as ec
from ladsim.theory import flowrl_fixed_point as ff
from ladsim.theory import kl_estimators as ke
from ladsim.theory import kl_penalty as kp
from ladsim.theory.common import single_threaded
from ladsim.theory.report import to_json


@pytest.fixture(autouse=True)
def _one_thread():
    with single_threaded():
        yield


def rng():
    return np.random.default_rng(7)


# --- kl_estimators -----------------------------------------------------------------------------------

KE = dict(n_samples=200_000)


def test_kl_estimators_baseline_passes_and_json_has_the_table():
    res = ke.check_kl_estimators(rng(), **KE)
    assert res.passed, res.failures
    entry = to_json([res], 0, True, 0.0)["checks"][0]
    rows = entry["table"]
    assert len(rows) == 6
    for row in rows:
        assert {"mu", "true_kl", "estimator", "bias_over_kl", "std_over_kl"} <= set(row)
    k2 = {row["mu"]: row for row in rows if row["estimator"] == "k2"}
    assert k2[1.0]["bias_over_kl"] == pytest.approx(0.25, abs=0.02)  # mu^2/4, Schulman's table


def test_kl_estimators_derived_moments_match_schulman():
    m = ke.derived_moments(0.1)
    assert m["k1"][1] / 0.005 == pytest.approx(20.0)
    assert m["k3"][1] / 0.005 == pytest.approx(1.42, abs=0.005)
    assert ke.derived_moments(1.0)["k3"][1] / 0.5 == pytest.approx(1.70, abs=0.01)


def test_kl_estimators_fail_on_wrong_sign_of_log_r_in_k3():
    wrong = {**ke.ESTIMATORS, "k3": lambda lr: np.expm1(lr) + lr}
    res = ke.check_kl_estimators(rng(), estimators=wrong, **KE)
    assert not res.passed and any("k3" in f for f in res.failures)


def test_kl_estimators_fail_on_k2_without_the_half():
    wrong = {**ke.ESTIMATORS, "k2": lambda lr: lr**2}
    assert not ke.check_kl_estimators(rng(), estimators=wrong, **KE).passed


def test_kl_estimators_fail_when_sampling_from_p():
    res = ke.check_kl_estimators(rng(), sampler=lambda g, mu, n: g.normal(mu, 1.0, n), **KE)
    assert not res.passed and any("k1" in f for f in res.failures)


# --- entropy_covariance ----------------------------------------------------------------------------------

EC = dict(n_instances=6, steps=np.logspace(-4, -1, 4), n_boot=300)


def test_entropy_covariance_baseline_passes():
    res = ec.check_entropy_covariance(rng(), **EC)
    assert res.passed, res.failures


@pytest.mark.parametrize("wrong", [
    lambda lp, d: -ec.neg_cov_first_order(lp, d),                              # wrong sign
    lambda lp, d: float(-(np.exp(lp) @ (lp * d))),                             # covariance without centring
    lambda lp, d: float(-np.mean((lp - lp.mean()) * (d - d.mean()))),          # covariance under uniform weights
])
def test_entropy_covariance_fails_on_wrong_first_order_term(wrong):
    res = ec.check_entropy_covariance(rng(), first_order=wrong, **EC)
    assert not res.passed
    assert res.details["slope"] < 1.5  # the residual keeps a first-order term: slope ~1


# --- kl_penalty_fixed_points --------------------------------------------------------------------------------

KP = dict(n_identity=4, n_train=1, steps=1500, seeds=2)


def test_kl_penalty_baseline_passes():
    res = kp.check_kl_penalty_fixed_points(rng(), **KP)
    assert res.passed, res.failures


def _patched_kl_terms(k3=None, k3plus=None, k2=None):
    real = modifiers.kl_terms

    def planted(logp, logp_ref, estimator="k3", *, clamp=False):
        t = logp - logp_ref.detach()
        if estimator == "k3" and k3 is not None:
            return k3(t)
        if estimator == "k3+" and k3plus is not None:
            return k3plus(t)
        if estimator == "k2" and k2 is not None:
            return k2(t)
        return real(logp, logp_ref, estimator, clamp=clamp)
    return planted


@pytest.mark.parametrize("planted, broken", [
    (_patched_kl_terms(k3=lambda t: torch.expm1(t) - t), "k3"),      # k3 with the sign of t flipped
    (_patched_kl_terms(k3plus=lambda t: torch.expm1(-t) + t), "k3+"),  # k3+ without the straight-through k2 gradient
    (_patched_kl_terms(k2=lambda t: t * t), "k2"),                     # k2 without the 1/2
])
def test_kl_penalty_fails_on_wrong_estimator_in_project_code(monkeypatch, planted, broken):
    monkeypatch.setattr(modifiers, "kl_terms", planted)
    res = kp.check_kl_penalty_fixed_points(rng(), **KP)
    assert not res.passed
    assert any(f", {broken}:" in f for f in res.failures), res.failures


def test_kl_penalty_fails_on_swapped_fixed_points():
    def swapped(est, log_ref, rewards, beta):
        return kp.fixed_point({"k2": "k3", "k3": "k2", "k3+": "k3"}.get(est, est), log_ref, rewards, beta)
    res = kp.check_kl_penalty_fixed_points(rng(), fixed_point_fn=swapped, **KP)
    assert not res.passed and any("not stationary" in f for f in res.failures)


def test_kl_penalty_fixed_point_forward_solves_its_stationarity():
    g = np.random.default_rng(0)
    log_ref = np.log(g.dirichlet(np.ones(6)))
    rewards = g.uniform(0, 1, 6)
    log_pi, lam = kp.fixed_point_forward(log_ref, rewards, 0.3)
    assert lam > rewards.max()
    assert np.exp(log_pi).sum() == pytest.approx(1.0, abs=1e-14)
    assert kp.stationarity_error("k3", log_pi, log_ref, rewards, 0.3) < 1e-12


# --- flowrl_fixed_point -------------------------------------------------------------------------------------

FF = dict(n_instances=2, steps=1500, seeds=2)


def test_flowrl_baseline_passes():
    res = ff.check_flowrl_fixed_point(rng(), **FF)
    assert res.passed, res.failures


def test_flowrl_fails_on_wrong_sign_of_beta_in_closed_form():
    wrong = lambda lpo, a, beta: ff.flowrl_closed_form(lpo, -a, beta)  # noqa: E731
    res = ff.check_flowrl_fixed_point(rng(), closed_form=wrong, **FF)
    assert not res.passed and any("trainer_vs_closed_form" in f for f in res.failures)


def _planted_flowrl(name, sign, with_log_z):
    """FlowRL with ``+ sign * beta A`` in the residual and, optionally, no log Z."""
    @register_objective(name, FlowRLParams, formula="planted", reference="test",
                        init_state=(lambda p, shape, dtype: {"log_z": torch.zeros(shape, dtype=dtype)})
                        if with_log_z else None, needs=("logp_ref",))
    def terms(batch: Batch, params, state):
        delta = batch.logp - batch.logp_ref - sign * params.beta * batch.advantages
        if with_log_z:
            delta = delta + state["log_z"].unsqueeze(-1)
        return torch.exp(batch.logp - batch.logp_old).detach().clamp(0.8, 1.2) * delta * delta
    return name


@pytest.mark.parametrize("sign, with_log_z", [(-1.0, True), (1.0, False)])
def test_flowrl_fails_on_planted_objective(sign, with_log_z):
    name = _planted_flowrl("flowrl-planted", sign, with_log_z)
    try:
        res = ff.check_flowrl_fixed_point(rng(), objective=name, **FF)
    finally:
        unregister_objective(name)
    assert not res.passed
    assert any("trainer_vs_closed_form" in f for f in res.failures), res.failures
