"""The objective registry: every objective against an independent formula (numpy, x-space, written from
OBJECTIVES.md and LAD_SPEC.md), the modifiers, the registry's API, the bandit behaviour of each objective, a
user-registered objective through the trainer and a study, and the CLI."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from spec_formulas import F

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import train, train_objective
from ladsim.objectives import (
    Batch,
    EntropyBonus,
    KLPenalty,
    get_objective,
    kl_terms,
    list_objectives,
    make_params,
    objective_loss,
    objective_terms,
    parse_assignments,
    register_objective,
    unregister_objective,
)

BUILTIN = ("grpo", "lad", "lad-theory", "entadv", "clip-cov", "kl-cov", "flowrl")
rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_rng():
    """Every test draws the same inputs whatever ran before it (pytest-xdist changes the order)."""
    global rng
    rng = np.random.default_rng(0)


def random_inputs(rows=3, n=40, spread=1.0):
    """logp (rows, n) from random logits (as tensors with grad), logp_old, A, pi_old weights, logp_ref."""
    def logsoftmax(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    lp = logsoftmax(rng.normal(0, spread, (rows, n)))
    lp_old = logsoftmax(rng.normal(0, spread, (rows, n)))
    lp_ref = logsoftmax(rng.normal(0, spread, (rows, n)))
    adv = rng.normal(0, 1, (rows, n))
    return lp, lp_old, adv, lp_ref


def t(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def test_registry_lists_every_builtin_objective():
    assert set(BUILTIN) <= set(list_objectives())
    for name in BUILTIN:
        obj = get_objective(name)
        assert obj.formula and obj.reference and obj.summary
        make_params(name)  # every default is valid


# --- each objective against its formula ------------------------------------------------------------------

def ppo_reference(lp, lp_old, adv, eps_low, eps_high, c=None, clamp=None):
    d = lp - lp_old
    if clamp is not None:
        d = np.clip(d, -clamp, clamp)
    r = np.exp(d)
    lo = -np.inf if eps_low is None else 1 - eps_low
    hi = np.inf if eps_high is None else 1 + eps_high
    loss = np.maximum(-adv * r, -adv * np.clip(r, lo, hi))
    if c is not None:
        loss = np.where(adv < 0, np.minimum(loss, -adv * c), loss)
    return loss


@pytest.mark.parametrize("eps,c,clamp", [(None, None, None), (0.2, None, None), (0.2, 3.0, None),
                                         (0.1, 3.0, 0.5)])
def test_grpo_terms_match_the_ppo_clip_formula(eps, c, clamp):
    lp, lp_old, adv, _ = random_inputs(spread=1.5)
    params = make_params("grpo", {"eps_low": eps, "eps_high": eps, "clip_ratio_c": c, "log_ratio_clamp": clamp})
    got = objective_terms("grpo", Batch(t(lp), t(lp_old), t(adv)), params).numpy()
    np.testing.assert_allclose(got, ppo_reference(lp, lp_old, adv, eps, eps, c, clamp), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("div", sorted(F))
def test_lad_terms_match_the_perspective_formula(div):
    lp, lp_old, adv, _ = random_inputs()
    eta = 0.7
    got = objective_terms("lad", Batch(t(lp), t(lp_old), t(adv)), make_params("lad", {"eta": eta, "div": div}))
    u = adv / eta
    want = np.exp(u) * F[div](np.exp(lp - lp_old) * np.exp(-u))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-13)


def test_lad_theory_loss_is_the_divergence_between_the_two_induced_distributions():
    lp, lp_old, adv, _ = random_inputs()
    eta = 0.5
    got = objective_loss("lad-theory", Batch(t(lp), t(lp_old), t(adv)), make_params("lad-theory", {"eta": eta}))
    p_pi = np.exp(lp - lp_old) / np.exp(lp - lp_old).sum(-1, keepdims=True)
    p_a = np.exp(adv / eta) / np.exp(adv / eta).sum(-1, keepdims=True)
    np.testing.assert_allclose(got.numpy(), (p_a * F["js"](p_pi / p_a)).sum(-1), rtol=1e-11)
    with pytest.raises(ValueError, match="whole action set"):
        objective_terms("lad-theory", Batch(t(lp), t(lp_old), t(adv)))


def test_entadv_shapes_the_advantage_with_the_detached_entropy():
    lp, lp_old, adv, _ = random_inputs()
    entropy = np.abs(rng.normal(1.0, 0.5, (3, 1)))
    params = make_params("entadv", {"alpha": 0.4, "kappa": 2.0, "eps_low": 0.2, "eps_high": 0.3})
    ent = t(entropy, grad=True)
    got = objective_terms("entadv", Batch(t(lp, grad=True), t(lp_old), t(adv), entropy=ent), params)
    shaped = adv + np.minimum(0.4 * entropy, np.abs(adv) / 2.0)
    np.testing.assert_allclose(got.detach().numpy(), ppo_reference(lp, lp_old, shaped, 0.2, 0.3), rtol=1e-13)
    got.sum().backward()
    assert ent.grad is None or torch.all(ent.grad == 0)  # detached: no gradient into the entropy
    with pytest.raises(ValueError, match="entropy"):
        objective_terms("entadv", Batch(t(lp), t(lp_old), t(adv)))


def covariance(lp, adv, w=None):
    w = np.ones_like(lp) if w is None else w
    w = w / w.sum(-1, keepdims=True)
    return (adv - (w * adv).sum(-1, keepdims=True)) * (lp - (w * lp).sum(-1, keepdims=True))


def test_clip_cov_sampled_cuts_exactly_n_random_eligible_tokens_as_verl():
    lp, lp_old, adv, _ = random_inputs(rows=4, n=64, spread=2.0)
    adv = adv * 3
    params = make_params("clip-cov", {"ratio": 0.05, "lb": 0.5, "ub": 4.0, "eps_low": 0.2, "eps_high": 0.2})
    gen = torch.Generator().manual_seed(1)
    got = objective_terms("clip-cov", Batch(t(lp), t(lp_old), t(adv), generator=gen), params).numpy()
    ppo = ppo_reference(lp, lp_old, adv, 0.2, 0.2)
    cov = covariance(lp, adv)
    clipped = ppo > -adv * np.exp(lp - lp_old) + 1e-15
    eligible = (cov > 0.5) & (cov < 4.0) & ~clipped
    n = max(int(0.05 * 64), 1)
    cut = (got == 0) & (ppo != 0)
    np.testing.assert_allclose(got[~cut], ppo[~cut], rtol=1e-13)  # every other token keeps its PPO-clip term
    assert np.all(eligible[cut])  # only eligible tokens are cut
    np.testing.assert_array_equal(cut.sum(-1), np.minimum(n, eligible.sum(-1)))
    assert eligible.sum() > cut.sum() > 0  # the test exercises the random pick
    # the pick is random: another stream cuts other tokens
    other = objective_terms("clip-cov", Batch(t(lp), t(lp_old), t(adv), generator=torch.Generator().manual_seed(7)),
                            params).numpy()
    assert not np.array_equal(other == 0, got == 0)


def test_clip_cov_exact_keeps_one_minus_rho_over_the_eligible_mass():
    lp, lp_old, adv, _ = random_inputs(rows=3, n=30, spread=2.0)
    adv = adv * 3
    w = np.exp(lp_old)
    params = make_params("clip-cov", {"ratio": 0.05, "lb": 0.5, "ub": 4.0})
    got = objective_terms("clip-cov", Batch(t(lp), t(lp_old), t(adv), weights=t(w)), params).numpy()
    cov = covariance(lp, adv, w)
    eligible = (cov > 0.5) & (cov < 4.0)
    mass = (w * eligible).sum(-1, keepdims=True)
    keep = 1 - np.minimum(1.0, 0.05 / mass)
    plain = -adv * np.exp(lp - lp_old)
    np.testing.assert_allclose(got, np.where(eligible, keep * plain, plain), rtol=1e-13)
    assert eligible.any() and (keep < 1).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lb, ub", [(1.0, 5.0), (-0.5, 0.25), (1.0, 1.0 + 2**-52), (1.0, 1.0 + 1e-9)])
def test_clip_cov_eligible_band_is_open_at_both_ends(dtype, lb, ub):
    # Rows of two arms with A = (1, -1), logp = (x, -x) and equal weights have cov = (x, x) exactly, so x at
    # the band's edges and their neighbouring floats probe the rule lb < cov < ub in this dtype. The last two
    # bands hold no float64 or no float32 number at all.
    one = torch.tensor(1.0, dtype=dtype)
    edges = [torch.tensor(v, dtype=dtype) for v in (lb, ub)]
    xs = torch.stack([e for edge in edges for e in (edge, torch.nextafter(edge, -2 * one * abs(edge) - 1),
                                                      torch.nextafter(edge, 2 * one * abs(edge) + 1))]
                     + [torch.tensor(v, dtype=dtype) for v in (0.0, 3.0, -7.0)])
    lp = torch.stack([xs, -xs], -1)
    adv = torch.tensor([1.0, -1.0], dtype=dtype).expand_as(lp)
    batch = Batch(lp, lp, adv, weights=torch.full_like(lp, 0.5))
    params = make_params("clip-cov", {"ratio": 0.5, "lb": lb, "ub": ub})
    cut = objective_terms("clip-cov", batch, params)[:, 0] != -1.0  # an eligible arm keeps 1 - 0.5 of -A
    expected = (xs > edges[0]) & (xs < edges[1])
    assert torch.equal(cut, expected), (xs[cut != expected], lb, ub)
    assert expected.any() == bool(edges[0] < torch.nextafter(edges[1], edges[0]))


def test_kl_cov_sampled_penalizes_the_top_n_covariance_tokens():
    lp, lp_old, adv, _ = random_inputs(rows=2, n=100, spread=1.5)
    params = make_params("kl-cov", {"ratio": 0.03, "coef": 1.5})
    got = objective_terms("kl-cov", Batch(t(lp), t(lp_old), t(adv)), params).numpy()
    cov = covariance(lp, adv)
    n = max(int(0.03 * 100), 1)
    top = np.zeros_like(cov, dtype=bool)
    for i in range(cov.shape[0]):
        top[i, np.argsort(-cov[i])[:n]] = True
    want = -adv * np.exp(lp - lp_old) + 1.5 * top * np.abs(lp - lp_old)
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_kl_cov_sampled_respects_the_mask():
    lp, lp_old, adv, _ = random_inputs(rows=1, n=50)
    mask = np.ones_like(lp, dtype=bool)
    mask[0, :25] = False
    params = make_params("kl-cov", {"ratio": 0.1})
    got = objective_terms("kl-cov", Batch(t(lp), t(lp_old), t(adv), mask=torch.tensor(mask)), params).numpy()
    cov = covariance(lp[:, 25:], adv[:, 25:])
    top = np.argsort(-cov[0])[:2] + 25  # n = floor(0.1 * 25 valid tokens) = 2
    want = -adv * np.exp(lp - lp_old)
    want[0, top] += np.abs(lp - lp_old)[0, top]
    np.testing.assert_allclose(got[:, 25:], want[:, 25:], rtol=1e-13)


@pytest.mark.parametrize("ratio", [0.3, "below every weight"])
def test_kl_cov_exact_covers_rho_of_the_pi_old_mass_from_the_top(ratio):
    # ratio 0.3 spans several arms (the sort); a ratio below every arm's weight, as verl's default 2e-4 in a
    # bandit, is covered by the top arm alone (the argmax path)
    lp, lp_old, adv, _ = random_inputs(rows=2, n=20, spread=1.0)
    w = np.exp(lp_old)
    ratio = 0.3 if ratio == 0.3 else 0.5 * w.min()
    params = make_params("kl-cov", {"ratio": ratio})
    got = objective_terms("kl-cov", Batch(t(lp), t(lp_old), t(adv), weights=t(w)), params).numpy()
    cov = covariance(lp, adv, w)
    frac = np.zeros_like(w)
    for i in range(2):
        left = ratio
        for j in np.argsort(-cov[i]):
            take = min(1.0, max(left, 0.0) / w[i, j])
            frac[i, j] = take
            left -= w[i, j]
    np.testing.assert_allclose((w * frac).sum(-1), ratio, rtol=1e-12)
    want = -adv * np.exp(lp - lp_old) + frac * np.abs(lp - lp_old)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_flowrl_terms_are_the_weighted_squared_trajectory_balance_residual():
    lp, lp_old, adv, lp_ref = random_inputs()
    params = make_params("flowrl", {"beta": 3.0, "eps_low": 0.2, "eps_high": 0.28, "length": 2.0})
    log_z = rng.normal(0, 1, 3)
    state = {"log_z": t(log_z, grad=True)}
    got = objective_terms("flowrl", Batch(t(lp), t(lp_old), t(adv), logp_ref=t(lp_ref)), params, state)
    delta = log_z[:, None] + lp / 2.0 - 3.0 * adv - lp_ref / 2.0
    w = np.clip(np.exp(lp - lp_old), 0.8, 1.28)
    # delta is a difference of O(1) terms: absolute error ~1e-15, so w delta^2 is compared with an absolute floor
    # too (a tiny delta, 1e-4, measured 4e-20 off where rtol alone asked for 2e-20)
    np.testing.assert_allclose(got.detach().numpy(), w * delta**2, rtol=1e-12, atol=1e-15)
    got.sum().backward()
    np.testing.assert_allclose(state["log_z"].grad.numpy(), (2 * w * delta).sum(-1), rtol=1e-12)
    with pytest.raises(ValueError, match="log_z"):
        objective_terms("flowrl", Batch(t(lp), t(lp_old), t(adv), logp_ref=t(lp_ref)), params)


# --- modifiers ------------------------------------------------------------------------------------------

def test_kl_estimators_values_and_the_straight_through_k3_plus():
    lp, _, _, lp_ref = random_inputs()
    d = lp - lp_ref
    want = {"k1": d, "k2": d**2 / 2, "k3": np.exp(-d) - 1 + d}
    for est, value in want.items():
        np.testing.assert_allclose(kl_terms(t(lp), t(lp_ref), est).numpy(), value, rtol=1e-12, atol=1e-15)
    x = t(lp, grad=True)
    k3p = kl_terms(x, t(lp_ref), "k3+")
    np.testing.assert_allclose(k3p.detach().numpy(), want["k3"], rtol=1e-12, atol=1e-15)
    k3p.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), d, rtol=1e-12)  # d/dlogp of k2 = t
    with pytest.raises(ValueError, match="estimator"):
        kl_terms(t(lp), t(lp_ref), "k4")


def test_modifiers_add_their_reduced_terms_to_any_objective():
    lp, lp_old, adv, lp_ref = random_inputs()
    w = np.exp(lp_old)
    ent = rng.uniform(1, 2, (3, 1))
    batch = Batch(t(lp), t(lp_old), t(adv), weights=t(w), logp_ref=t(lp_ref), entropy=t(ent))
    base = objective_loss("grpo", batch).numpy()
    full = objective_loss("grpo", batch, kl=KLPenalty(0.3, "k2"), entropy_bonus=EntropyBonus(0.05)).numpy()
    want = base + 0.3 * (w * (lp - lp_ref) ** 2 / 2).sum(-1) - 0.05 * ent[:, 0]
    np.testing.assert_allclose(full, want, rtol=1e-12)
    with pytest.raises(ValueError, match="logp_ref"):
        objective_loss("grpo", Batch(t(lp), t(lp_old), t(adv)), kl=KLPenalty(0.1))


# --- parameters and the registry API -------------------------------------------------------------------

def test_make_params_parses_strings_by_type_and_names_bad_values():
    assert make_params("flowrl", {"beta": "10"}).beta == 10.0
    assert make_params("grpo", {"eps_low": "none"}).eps_low is None
    assert make_params("grpo", {"clip_ratio_c": "3"}).clip_ratio_c == 3.0
    assert make_params("lad", {"div": "hd"}).div == "hd"
    with pytest.raises(ValueError, match="flowrl.*beta"):
        make_params("flowrl", {"beta": -1})
    with pytest.raises(ValueError, match="flowrl.gamma"):
        make_params("flowrl", {"gamma": 1})
    with pytest.raises(ValueError, match="lad.eta must be float"):
        make_params("lad", {"eta": "abc"})
    with pytest.raises(ValueError, match="divergence"):
        make_params("lad", {"div": "nope"})
    with pytest.raises(ValueError, match="clip_ratio_c"):
        make_params("grpo", {"clip_ratio_c": 0.5})
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("nope")


def test_parse_assignments():
    assert parse_assignments(["flowrl.beta=10", "grpo.eps_low=0.2"]) == {"flowrl": {"beta": "10"},
                                                                         "grpo": {"eps_low": "0.2"}}
    for bad in ["flowrl.beta", "beta=1", "nope.x=1", "flowrl.beta=-1", "flowrl.nope=1"]:
        with pytest.raises(ValueError):
            parse_assignments([bad])


def test_register_objective_validates_its_arguments():
    @dataclass
    class NotFrozen:
        a: float = 1.0

    with pytest.raises(TypeError, match="frozen"):
        register_objective("bad", NotFrozen, formula="", reference="")
    with pytest.raises(ValueError, match="already registered"):
        register_objective("grpo", make_params("grpo").__class__, formula="", reference="")(lambda *a: None)
    with pytest.raises(ValueError, match="name"):
        register_objective("a.b", make_params("grpo").__class__, formula="", reference="")


@dataclass(frozen=True)
class ScaledParams:
    scale: float = 1.0


@pytest.fixture
def user_objective():
    @register_objective("scaled-pg", ScaledParams, formula="l = -scale A r", reference="a test")
    def scaled(batch, params, state):
        return -params.scale * batch.advantages * torch.exp(batch.logp - batch.logp_old.detach())

    yield "scaled-pg"
    unregister_objective("scaled-pg")


def test_a_user_objective_runs_through_the_trainer_and_a_study(user_objective, tmp_path):
    from ladsim.studies import load_study, run_study

    config = BanditConfig(arms=10, steps=30, seeds=2, log_every=10, objectives=("scaled-pg", "grpo"),
                          params={"scaled-pg": {"scale": 1.0}}, optimizer="sgd", lr=1.0)
    result = train(config)
    np.testing.assert_allclose(result.final_policy["scaled-pg"], result.final_policy["grpo"], rtol=1e-12)
    scaled = train(config.replace(params={"scaled-pg": {"scale": 3.0}})).final_policy["scaled-pg"]
    assert np.abs(scaled - result.final_policy["grpo"]).max() > 1e-4
    study = tmp_path / "mine.toml"
    study.write_text('[study]\nname = "mine"\nfigure = "distribution"\nframes = ["final"]\n'
                     '[base]\narms = 10\nsteps = 30\nseeds = 2\nlog_every = 10\noptimizer = "sgd"\n'
                     '[[grid]]\nobjective = ["scaled-pg"]\n"scaled-pg.scale" = [1.0, 2.0]\n')
    res = run_study(load_study(study), tmp_path / "cache", jobs=1)
    final = res.frames["final"]
    assert set(final["objective"]) == {"scaled-pg"} and list(dict.fromkeys(final["scaled-pg.scale"])) == [1.0, 2.0]


# --- behaviour in the bandit ----------------------------------------------------------------------------

FAST = dict(arms=50, steps=600, lr=0.04, seeds=2, log_every=600, init_std=0.1)


@pytest.mark.parametrize("objective", ["grpo", "entadv", "clip-cov", "kl-cov"])
def test_advantage_maximizers_collapse_on_the_paper_bandit(objective):
    _, final = train_objective(BanditConfig(**FAST, objectives=(objective,)), objective)
    assert final.max(-1).min() > 0.9  # one arm takes the mass, as GRPO in the paper's Figure 1


@pytest.mark.parametrize("objective,params", [("lad", {}), ("lad-theory", {}), ("flowrl", {"beta": 5.0})])
def test_distribution_matchers_reach_the_target(objective, params):
    config = BanditConfig(**FAST, objectives=(objective,), params={objective: params} if params else {})
    traj, _ = train_objective(config, objective)
    assert traj["js_to_target"][-1].max() < 1e-3  # eta = 0.2 = 1/beta: every one keeps the three modes
    assert traj["mode_coverage"][-1].min() == 3


def test_entropy_bonus_and_kl_penalty_change_the_trained_policy():
    config = BanditConfig(**FAST, objectives=("grpo",))
    plain = train_objective(config, "grpo")[0]["entropy"][-1]
    bonus = train_objective(config.replace(entropy_coef=0.1), "grpo")[0]["entropy"][-1]
    kl = train_objective(config.replace(kl="k2", kl_beta=0.2), "grpo")[0]["entropy"][-1]
    assert (bonus > plain + 0.1).all() and (kl > plain + 0.1).all()


def test_sampled_and_refreshed_regimes_run_for_every_objective():
    config = BanditConfig(arms=12, steps=20, seeds=2, log_every=10, mode="sampled", group_size=4,
                          refresh_every=1, objectives=BUILTIN, kl="k3", kl_beta=0.01, entropy_coef=0.01)
    result = train(config)
    assert set(result.final_policy) == set(BUILTIN)
    assert np.isfinite(result.metrics.drop(columns="objective").to_numpy(dtype=float)).all()


def test_config_params_layering_and_validation():
    config = BanditConfig(objectives=("lad", "flowrl", "grpo"), eta=0.3, div="hd", clip=0.1,
                          params={"lad": {"eta": "2"}, "flowrl": {"beta": 7}})
    assert config.objective_params("lad") == make_params("lad", {"eta": 2.0, "div": "hd"})
    assert config.objective_params("flowrl").beta == 7 and config.objective_params("flowrl").eps_low == 0.1
    assert config.objective_params("grpo").eps_high == 0.1
    assert config.params == {"lad": {"eta": 2.0}, "flowrl": {"beta": 7.0}}  # parsed, JSON-able
    json.dumps(dataclasses.asdict(config))
    for bad in [dict(params={"flowrl": {"beta": -1}}), dict(params={"nope": {}}), dict(kl="k9"),
                dict(kl_beta=-1.0), dict(entropy_coef=float("nan")), dict(objectives=("nope",))]:
        with pytest.raises(ValueError):
            BanditConfig(**bad)


# --- the CLI --------------------------------------------------------------------------------------------

def test_cli_runs_every_objective_with_a_kl_penalty(tmp_path):
    from typer.testing import CliRunner

    from ladsim import cli

    out = tmp_path / "run"
    args = ["run", "bandit", "--arms", "12", "--steps", "20", "--seeds", "2", "--log-every", "10", "--out", str(out),
            "--kl", "k3", "--kl-beta", "0.01", "--entropy-coef", "0.01", "--set", "flowrl.beta=5"]
    for name in ("grpo", "lad", "entadv", "clip-cov", "kl-cov", "flowrl"):
        args += ["-o", name]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["objectives"]) == ["grpo", "lad", "entadv", "clip-cov", "kl-cov", "flowrl"]
    config = json.loads((out / "config.json").read_text())["bandit"]
    assert config["kl"] == "k3" and config["params"] == {"flowrl": {"beta": 5.0}}


@pytest.mark.parametrize("bad", [["-o", "flowrl", "--set", "flowrl.beta=-1"], ["-o", "nope"],
                                 ["-o", "flowrl", "--set", "flowrl.nope=1"], ["--set", "flowrl.beta=5"],
                                 ["--kl", "k9"], ["--set", "beta=1"], ["--kl-beta", "-1", "--kl", "k2"]])
def test_cli_refuses_bad_objectives_and_parameters_with_one_line(bad, tmp_path, capsys):
    # in process, through the console entry point (tests/test_cli_startup.py runs one such error as a process)
    out = tmp_path / "run"
    code, _, err = run_main(["run", "bandit", "--steps", "5", "--out", str(out), *bad], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists() and not any(tmp_path.iterdir())


def test_objectives_command_lists_every_entry():
    from typer.testing import CliRunner

    from ladsim import cli

    result = CliRunner().invoke(cli.app, ["objectives"])
    assert result.exit_code == 0
    for name in BUILTIN:
        assert f"\n{name}: " in "\n" + result.output
    assert "flowrl.beta: float = 15" in result.output and "k3+" in result.output


def test_exact_lad_folds_the_weights_into_the_perspective():
    """In float32 the KL term of an arm with pi_old = e^-90 and pi = e^-0.1 overflows (ratio e^90 > 3.4e38)
    while pi_old times it is representable: the registry's exact LAD must stay finite and equal the float64
    value."""
    lp = torch.tensor([[-0.1, -2.4]], dtype=torch.float64)
    old = torch.tensor([[-90.0, -1e-30]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    params = make_params("lad", {"eta": 1.0, "div": "kl"})
    want = objective_loss("lad", Batch(lp, old, adv, weights=old.exp()), params)
    got = objective_loss("lad", Batch(lp.float(), old.float(), adv.float(), weights=old.exp().float()), params)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=1e-5)
    unfolded = (old.exp().float() * objective_terms("lad", Batch(lp.float(), old.float(), adv.float()), params))
    assert not torch.isfinite(unfolded.sum(-1)).all()  # the test input really overflows without the fold
