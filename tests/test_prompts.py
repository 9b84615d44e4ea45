"""Many prompts that share parameters (``ladsim.prompts``): the engine's two paths held together through the chain
rule of the features, the world of one prompt with identity features held to the bandit, settings from files and
from seeds, the metrics and the crossover by hand, the run directory, the command and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import train_objective as train_bandit
from ladsim.engine import entries_loss, rows_gradient
from ladsim.objectives import OBJECTIVES as REGISTRY, get_objective
from ladsim.prompts.config import PromptsConfig
from ladsim.passk import crossover_k, crossovers, pass_at_k, passk_rows
from ladsim.prompts.setting import Setting
from ladsim.prompts.trainer import make_world, train_objective, train_prompts
from ladsim.prompts.world import PromptsWorld
from ladsim.streams import SeedStreams

OBJECTIVES = list(REGISTRY)  # every registered objective runs in this world


def save_setting(tmp_path, base=None, features=None, reward=None) -> dict[str, str]:
    """``{part: path}`` of the arrays given, saved as ``.npy`` files."""
    out = {}
    for part, array in (("base_logits", base), ("features", features), ("reward", reward)):
        if array is not None:
            np.save(tmp_path / f"{part}.npy", array)
            out[part] = str(tmp_path / f"{part}.npy")
    return out


# --- the engine: fused against autograd ----------------------------------------------------------------

# Measured (2026-12-03, the 17 objectives then registered): the fused engine and the autograd reference differ by
# <= 4.1e-14 over the final log-policies and every logged metric of the cases below (float64; the largest: dro,
# exact-refresh-noise); the bound is a factor 5 above.
TOL = 2e-13
SELECTIVE = {"clip-cov": {"ratio": 0.2, "lb": -1.0, "ub": 5.0}, "kl-cov": {"ratio": 0.2}}
REGIMES = {
    "exact-frozen": dict(),
    "exact-refresh-noise": dict(refresh_every=3, init_std=0.5),
    "exact-tabular": dict(tabular=True, refresh_every=2, init_std=0.5),
    "sampled": dict(mode="sampled", group_size=4, init_std=0.5),
    "sampled-refresh-epochs": dict(mode="sampled", group_size=4, refresh_every=4, epochs=2, init_std=0.5),
    "modifiers-exact": dict(kl="k2", kl_beta=0.05, entropy_coef=0.02, refresh_every=1, init_std=0.5),
    "modifiers-sampled-sgd": dict(mode="sampled", group_size=4, kl="k3", kl_beta=0.05, entropy_coef=0.02,
                                  optimizer="sgd", lr=0.5, refresh_every=2, tabular=True),
}


def prompts_config(objective: str, **settings) -> PromptsConfig:
    base = dict(prompts=4, arms=5, dim=3, correct=2, steps=60, seeds=3, log_every=20, lr=0.05,
                objectives=(objective,), params={objective: SELECTIVE[objective]} if objective in SELECTIVE else {})
    return PromptsConfig(**{**base, **settings})


def assert_same_run(config: PromptsConfig, objective: str, tol: float = TOL) -> None:
    ref_traj, ref_policy = train_objective(config, objective, engine="autograd")
    traj, policy = train_objective(config, objective, engine="fused")
    assert np.abs(policy - ref_policy).max() <= tol
    for name in ref_traj:
        assert np.nanmax(np.abs(traj[name] - ref_traj[name])) <= tol, name


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_fused_engine_equals_autograd_reference(objective, regime):
    assert_same_run(prompts_config(objective, **REGIMES[regime]), objective)


@pytest.mark.parametrize("objective", ["grpo", "lad", "flowrl"])
def test_fused_engine_equals_autograd_with_features_shared_by_every_seed(objective, tmp_path):
    rng = np.random.default_rng(1)
    files = save_setting(tmp_path, base=rng.normal(size=(4, 5)), features=rng.normal(size=(4, 5, 3)),
                         reward=(rng.random((4, 5)) < 0.4).astype(float))
    assert_same_run(prompts_config(objective, prompts=None, arms=None, dim=None, correct=2, init_std=0.5,
                                   refresh_every=2, mode="sampled", group_size=4, **files), objective)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("mode", ["exact", "sampled"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_the_chain_rule_through_the_features_is_autograds(objective, mode, shared, tmp_path):
    # one step's gradient in w and theta: the fused rows' gradient through params_grad against autograd of the
    # loss through the logits b + phi . w + theta
    config = prompts_config(objective, mode=mode, tabular=True)
    world = make_world(config)
    if shared:
        f = world.features[0].clone() if world.features.dim() == 3 else world.features
        world.features, world.shared_features = f, True
    g = torch.Generator().manual_seed(3)
    w = (0.7 * torch.randn(3, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    theta = (0.5 * torch.randn(3, 4, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    obj, params = get_objective(objective), config.objective_params(objective)
    streams = SeedStreams(0, 3)
    state = obj.state(params, world.state_shape())
    old = world.behaviour(world.log_policy([0.8 * w.detach(), theta.detach()]))
    sample = world.draw(old, streams) if mode == "sampled" else None
    logp = world.log_policy([w, theta])
    kl, bonus = config.replace(kl="k3", kl_beta=0.1).kl_penalty(), config.replace(entropy_coef=0.05).entropy_bonus()

    def entries():  # clip-cov's pick draws: each path gets the same fresh stream
        return world.entries(obj, logp, old, None if obj.full_support else sample, {}, SeedStreams(5, 3),
                             frozenset({"logp_ref", "entropy"}))

    loss = entries_loss(obj, entries(), params, state, kl, bonus)
    auto = torch.autograd.grad(loss.sum(), [w, theta, *state.values()])
    d_rows, d_state = rows_gradient(obj, entries(), params, {k: v.detach() for k, v in state.items()}, kl, bonus,
                                    logp.detach())
    fused = world.params_grad([w, theta], d_rows.detach(), logp.detach())
    for a, b in zip(auto, [*fused, *d_state.values()]):
        assert (a - b).abs().max() < 1e-14  # measured <= 1.8e-15 (FlowRL's log Z, sampled, shared features)


@pytest.mark.parametrize("mutation", ["features", "scatter"])
def test_the_reference_test_fails_on_a_wrong_chain_rule(mutation, monkeypatch):
    # plant an error in the fused path's chain rule through phi (dL/dw in the features' reversed order) or in sampled
    # mode's scatter back onto the rows, and the comparison above must see it
    if mutation == "features":
        config = prompts_config("grpo", init_std=0.5)
        original = PromptsWorld.params_grad

        def wrong(self, params, logp_grad, logp):
            dw = original(self, params, logp_grad, logp)[0]
            return [dw.flip(-1)]

        monkeypatch.setattr(PromptsWorld, "params_grad", wrong)
    else:
        config = prompts_config("grpo", mode="sampled", group_size=4, init_std=0.5)
        original = torch.Tensor.scatter_add_
        monkeypatch.setattr(torch.Tensor, "scatter_add_",
                            lambda self, dim, index, src: original(self, dim, index, 1.001 * src))
    with pytest.raises(AssertionError):
        assert_same_run(config, "grpo")


# --- one prompt with identity features is the bandit ---------------------------------------------------

@pytest.mark.parametrize("mode", ["exact", "sampled"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_one_prompt_with_identity_features_is_the_bandit(objective, mode, tmp_path):
    # P = 1, d = N, phi = I: the logits are w (the base is uniform), the world's softmax is the bandit's
    N = 12
    rewards = np.zeros(N)
    rewards[[2, 7, 8]] = 1.0
    np.save(tmp_path / "r.npy", rewards)
    sampled = dict(mode="sampled", group_size=6, refresh_every=2) if mode == "sampled" else {}
    common = dict(steps=150, seeds=3, log_every=50, init_std=0.2, eta=0.3, objectives=(objective,), **sampled)
    bandit = BanditConfig(arms=N, reward=str(tmp_path / "r.npy"), **common)
    files = save_setting(tmp_path, base=np.zeros((1, N)), features=np.eye(N)[None], reward=rewards[None])
    world = PromptsConfig(**common, **files)
    b_traj, b_policy = train_bandit(bandit, objective)
    p_traj, p_logp = train_objective(world, objective)
    # measured <= 7.1e-15 over both (the largest: gpg, exact; the two loops sum in their own orders); the bound
    # is a factor 7 above
    assert np.abs(b_policy - np.exp(p_logp[:, 0])).max() < 5e-14
    for name in ("js_to_target", "entropy", "expected_reward", "pass@1", "pass@16"):
        assert np.abs(b_traj[name] - p_traj[name]).max() < 5e-14, name


# --- settings: files and seeds ----------------------------------------------------------------------------

def test_a_random_setting_saved_to_files_trains_the_same(tmp_path):
    training = dict(seeds=3, steps=40, log_every=20, objectives=("lad",), mode="sampled", group_size=4,
                    refresh_every=1)
    config = PromptsConfig(prompts=6, arms=7, dim=3, correct=3, **training)
    world = make_world(config)
    files = save_setting(tmp_path, base=world.base[1].numpy(), features=world.features[1].T.reshape(6, 7, 3).numpy(),
                         reward=world.rewards[1].numpy())
    traj, policy = train_objective(config, "lad", world=world)
    # the files give seed 1's setting to every seed: seed 1 of both runs draws the same samples
    from_files = PromptsConfig(**training, **files)
    f_traj, f_policy = train_objective(from_files, "lad")
    # to rounding (measured <= 1.8e-15): the shared features' matrix product sums in another order than the
    # per-seed one
    assert np.abs(policy[1] - f_policy[1]).max() < 1e-14
    for name in traj:
        if name != "step":
            assert np.abs(traj[name][:, 1] - f_traj[name][:, 1]).max() < 1e-14, name
    assert not np.array_equal(policy[0], f_policy[0])  # seed 0 trained on its own random setting before


def test_each_seed_draws_its_own_setting_whatever_the_number_of_seeds():
    small = make_world(PromptsConfig(prompts=5, arms=6, dim=2, seeds=2))
    large = make_world(PromptsConfig(prompts=5, arms=6, dim=2, seeds=4))
    for a, b in ((small.base, large.base), (small.features, large.features), (small.rewards, large.rewards)):
        assert torch.equal(a, b[:2])
    assert not torch.equal(large.base[0], large.base[1]) and not torch.equal(large.rewards[0], large.rewards[1])
    assert (large.rewards.sum(-1) == 2).all()  # K = 2 correct answers per prompt
    settings = dict(prompts=5, arms=6, dim=2, steps=30, log_every=10, mode="sampled", group_size=3,
                    refresh_every=1, init_std=0.3, objectives=("grpo",))
    t2, p2 = train_objective(PromptsConfig(seeds=2, **settings), "grpo")
    t4, p4 = train_objective(PromptsConfig(seeds=4, **settings), "grpo")
    assert np.array_equal(p2, p4[:2])
    assert np.array_equal(t2["pass@16"], t4["pass@16"][:, :2])


def test_random_settings_have_the_documented_law():
    world = make_world(PromptsConfig(prompts=64, arms=32, dim=8, base_scale=2.0, seeds=8))
    assert world.base.std().item() == pytest.approx(2.0, rel=0.03)
    rows = world.features.transpose(1, 2)  # (S, P N, d)
    assert (rows ** 2).sum(-1).mean().item() == pytest.approx(1.0, rel=0.03)  # |phi(x, y)|^2 ~ 1


# --- metrics and the crossover by hand ----------------------------------------------------------------------

def test_metrics_by_hand():
    # two prompts, three answers, d = 1; prompt 0's answer 0 is correct, prompt 1's answers 1 and 2
    base = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.6, 0.3, 0.1]]], dtype=torch.float64))
    rewards = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]], dtype=torch.float64)
    world = PromptsWorld(Setting(base, torch.zeros(1, 2, 3, 1, dtype=torch.float64), rewards), seeds=1)
    world.set_targets(eta=0.5, ks=(1, 2, 4))
    pi = torch.tensor([[[0.9, 0.05, 0.05], [0.99, 0.005, 0.005]]], dtype=torch.float64)
    m = {k: v.item() for k, v in world.metrics(pi.log()).items()}
    rho, rho_b = np.array([0.9, 0.01]), np.array([0.5, 0.4])
    assert m["expected_reward"] == pytest.approx(rho.mean())
    assert m["pass@4"] == pytest.approx((1 - (1 - rho) ** 4).mean())
    h = lambda p: -sum(x * np.log(x) for x in p)  # noqa: E731
    assert m["entropy"] == pytest.approx((h([0.9, 0.05, 0.05]) + h([0.99, 0.005, 0.005])) / 2)
    assert m["unsolved"] == 0.5  # prompt 1: rho = 0.01 < 1/k_max = 1/4
    p, pb = 1 - (1 - rho) ** 4, 1 - (1 - rho_b) ** 4
    assert m["solved_base_only"] == pytest.approx((pb * (1 - p)).mean())
    assert m["solved_trained_only"] == pytest.approx((p * (1 - pb)).mean())
    assert m["solved_both"] == pytest.approx((p * pb).mean())
    q = np.array([[0.5, 0.25, 0.25], [0.6, 0.3, 0.1]]) * np.exp(rewards[0].numpy() / 0.5)
    q /= q.sum(-1, keepdims=True)
    pn = pi[0].numpy()
    js = [0.5 * (a * np.log(2 * a / (a + b))).sum() + 0.5 * (b * np.log(2 * b / (a + b))).sum() for a, b in zip(pn, q)]
    assert m["js_to_target"] == pytest.approx(np.mean(js))
    kl = [(a * np.log(a / b)).sum() for a, b in zip(pn, np.exp(base[0].numpy()))]
    assert m["kl_to_base"] == pytest.approx(np.mean(kl))


def test_pass_at_k_is_accurate_where_the_naive_formula_rounds():
    rho = torch.tensor([1e-12, 0.5, 1.0], dtype=torch.float64)
    from ladsim.prompts.world import pass_at_k as torch_pass_at_k

    exact = 1024e-12 * (1 - 1023 / 2 * 1e-12)  # the first two terms of the binomial series
    assert torch_pass_at_k(rho, 1024)[0].item() == pytest.approx(exact, rel=1e-14, abs=0)
    assert 1 - (1 - 1e-12) ** 1024 != pytest.approx(exact, rel=1e-6, abs=0)  # the naive formula loses digits
    assert torch_pass_at_k(rho, 3)[1].item() == pytest.approx(0.875) and torch_pass_at_k(rho, 7)[2].item() == 1.0
    assert pass_at_k(np.array([0.5]), 2)[0] == pytest.approx(0.75)


def test_crossover_by_hand():
    ks = [1, 2, 4, 8]
    assert crossover_k(ks, [0.1, 0.3, 0.6, 0.9], [0.2, 0.35, 0.5, 0.6]) == 4
    assert crossover_k(ks, [0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.4, 0.5]) is None
    assert crossover_k(ks, [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]) is None  # equal is not ahead
    # two seeds: seed 0 crosses at k = 2, seed 1 never; their means cross at k = 4
    rho_base = np.array([[0.3, 0.3], [0.05, 0.05]])
    rho = np.array([[0.6, 0.0], [0.06, 0.06]])
    passk = passk_rows("x", rho_base, rho, ks)
    table = crossovers(passk).iloc[0]
    means = {p: passk[passk["policy"] == p].groupby("k")["pass_at_k"].mean().to_numpy() for p in ("base", "trained")}
    assert table["crossover_k"] == crossover_k(ks, means["base"], means["trained"])
    assert table["seeds_crossing"] == 1 and table["seeds"] == 2
    assert passk.loc[(passk["seed"] == 0) & (passk["k"] == 2) & (passk["policy"] == "trained"), "pass_at_k"].item() \
        == pytest.approx((1 - 0.4 ** 2 + 0.0) / 2)


# --- the run directory and the command -------------------------------------------------------------------

def test_train_gathers_tidy_frames():
    result = train_prompts(PromptsConfig(prompts=6, arms=5, dim=2, objectives=("grpo", "lad"), steps=20, log_every=10,
                                 seeds=2))
    assert set(result.metrics["objective"]) == {"grpo", "lad"}
    assert sorted(result.metrics["step"].unique()) == [0, 10, 20]
    assert result.rho["lad"].shape == result.rho_base.shape == (2, 6)
    first = result.metrics[result.metrics["step"] == 0]
    assert np.allclose(first["expected_reward"], np.tile(result.rho_base.mean(-1), 2))  # at the base


def test_run_prompts_writes_its_run_directory(tmp_path, capsys):
    from cli_helpers import run_main

    out = tmp_path / "run"
    code, stdout, err = run_main(["run", "prompts", "--prompts", "8", "--arms", "6", "--dim", "3", "-o", "grpo",
                                  "-o", "lad", "--refresh-every", "1", "--steps", "30", "--seeds", "3",
                                  "--log-every", "10", "--out", str(out)], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.csv", "prompts.csv", "passk.csv",
                                               "summary.json", "passk.png"}
    prompts = pd.read_csv(out / "prompts.csv")
    assert list(prompts.columns) == ["objective", "seed", "prompt", "rho_base", "rho_final", "entropy_base",
                                     "entropy_final"]
    assert len(prompts) == 2 * 3 * 8
    passk = pd.read_csv(out / "passk.csv")
    assert list(passk.columns) == ["objective", "seed", "k", "policy", "pass_at_k"]
    assert sorted(passk["k"].unique()) == [2**j for j in range(11)] and set(passk["policy"]) == {"base", "trained"}
    mine = prompts[(prompts["objective"] == "lad") & (prompts["seed"] == 2)]
    row = passk[(passk["objective"] == "lad") & (passk["seed"] == 2) & (passk["k"] == 64)].set_index("policy")
    assert row.loc["trained", "pass_at_k"] == pytest.approx((1 - (1 - mine["rho_final"]) ** 64).mean())
    assert row.loc["base", "pass_at_k"] == pytest.approx((1 - (1 - mine["rho_base"]) ** 64).mean())
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"pass@1", "pass@1024", "unsolved", "solved_both"} <= set(metrics.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["crossover_k"]) == {"grpo", "lad"} and "pass@1024" in summary["base"]
    config = json.loads((out / "config.json").read_text())
    assert config["sizes"]["prompts"] == 8 and "drawn" in config["setting"]["features"]
    assert "crossover k" in stdout and "passk.png" in stdout


def test_run_prompts_from_npy_settings(tmp_path, capsys):
    from cli_helpers import run_main

    rng = np.random.default_rng(0)
    files = save_setting(tmp_path, base=rng.normal(size=(5, 4)), features=rng.normal(size=(5, 4, 2)),
                         reward=(np.arange(4) == 1)[None].repeat(5, 0).astype(float))
    out = tmp_path / "run"
    code, _, err = run_main(["run", "prompts", "--base-logits", files["base_logits"], "--features",
                             files["features"], "--reward", files["reward"], "--steps", "10", "--seeds", "2",
                             "--log-every", "5", "--out", str(out)], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["sizes"] == {"prompts": 5, "answers": 4, "features": 2, "trainable_per_seed": 2}
    assert config["setting"]["reward"]["sha256"] == config["prompts"]["files_sha256"]["reward"]
    prompts = pd.read_csv(out / "prompts.csv")
    base = np.load(files["base_logits"])
    rho = np.exp(base[:, 1]) / np.exp(base).sum(-1)
    assert np.allclose(prompts[prompts["seed"] == 0]["rho_base"][:5], rho)
    assert np.allclose(prompts[prompts["seed"] == 1]["rho_base"][:5], rho)  # one setting for every seed


def _bad_files(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    arrays = {"b.npy": rng.normal(size=(3, 4)), "f.npy": rng.normal(size=(3, 4, 2)),
              "r.npy": (rng.random((3, 4)) < 0.5).astype(float), "b5.npy": rng.normal(size=(3, 5)),
              "nan.npy": np.where(np.eye(3, 4) > 0, np.nan, 0.0), "inf.npy": np.full((3, 4, 2), np.inf),
              "d0.npy": np.zeros((3, 4, 0)), "flat.npy": np.zeros((3, 4)), "r2.npy": np.full((3, 4), 2.0),
              "words.npy": np.array([["a"] * 4] * 3), "vec.npy": np.zeros(4)}
    for name, array in arrays.items():
        np.save(tmp_path / name, array)
    (tmp_path / "x.csv").write_text("1,2\n")
    return {name: str(tmp_path / name) for name in [*arrays, "x.csv"]}


@pytest.mark.parametrize("args,fragment", [
    (["--base-logits", "b.npy", "--reward", "b5.npy"], "shapes disagree"),
    (["--features", "f.npy", "--prompts", "4"], "shapes disagree"),
    (["--base-logits", "nan.npy"], "NaN"),
    (["--features", "inf.npy"], "inf"),
    (["--features", "d0.npy"], "d >= 1"),
    (["--dim", "0"], "--dim"),
    (["--prompts", "0"], "--prompts"),
    (["--arms", "1"], "--arms"),
    (["--arms", "4", "--correct", "4"], "--correct"),
    (["--correct", "0"], "--correct"),
    (["--reward", "r2.npy"], "[0, 1]"),
    (["--reward", "flat.npy"], "nothing to learn"),
    (["--reward", "words.npy"], "numbers only"),
    (["--reward", "vec.npy"], "expected (P, N)"),
    (["--reward", "x.csv"], ".npy"),
    (["--reward", "missing.npy"], "no such file"),
    (["--base-logits", "b.npy", "--base-scale", "3"], "--base-scale 3.0 does nothing"),
    (["--reward", "r.npy", "--correct", "3"], "--correct 3 does nothing"),
    (["--group-size", "4"], "--group-size 4 does nothing"),
    (["--base-logits", "b.npy", "--features", "f.npy", "--reward", "r.npy", "--seed", "3"], "--seed 3 does nothing"),
    (["--base-scale", "100"], "is beyond"),
    (["--prompts", "100000", "--arms", "1000", "--dim", "64"], "GiB"),
    (["--max-k", "0"], "--max-k"),
    (["-o", "nope"], "unknown objective"),
    (["--set", "flowrl.beta=5"], "not among the objectives"),
])
def test_run_prompts_refuses_bad_input_in_one_line(args, fragment, tmp_path, capsys, monkeypatch):
    from cli_helpers import run_main

    files = _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = [files.get(a, a) if a.endswith((".npy", ".csv")) and a in files else a for a in args]
    before = set(tmp_path.iterdir())
    code, _, err = run_main(["run", "prompts", "--steps", "2", *args], capsys)
    assert code == 2
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert set(tmp_path.iterdir()) == before  # nothing written


def test_the_bench_times_both_engines_on_the_same_run():
    from ladsim.prompts.bench import time_case

    for settings in ({"prompts": 4, "arms": 5, "dim": 2, "seeds": 2, "steps": 5},
                     {"prompts": 4, "arms": 5, "dim": 2, "seeds": 2, "steps": 5, "files": True}):
        r = time_case(settings, "lad", runs=1)
        assert len(r["fused_runs"]) == 1 and r["fused_s"] > 0 and r["autograd_s"] > 0
        assert r["max_policy_diff"] < TOL  # the same policy from both engines


# --- the study ------------------------------------------------------------------------------------------------

def test_the_crossover_study_runs_and_draws_at_a_tiny_size(tmp_path):
    from pathlib import Path

    from ladsim import plots, studies

    path = Path(__file__).resolve().parents[1] / "studies" / "fig11_prompts_passk.toml"
    study = studies.load_study(path, overrides={"steps": 20, "seeds": 3, "log_every": 10, "prompts": 6})
    assert study.kind == "prompts" and len(study.runs) == 16
    result = studies.run_study(study, tmp_path / "cache")
    studies.save_data(result, tmp_path / "data")
    data = studies.load_data(study, tmp_path / "data")
    passk = data["passk"]
    assert set(passk["regime"]) == {"on-policy", "frozen pi_old"} and passk["k"].max() == 1024
    # every variant shares its seeds' random setting, whatever its objective: the base rows are equal
    base = passk[passk["policy"] == "base"].groupby(["seed", "k"])["pass_at_k"].agg(["min", "max"])
    assert (base["max"] == base["min"]).all()
    fig = plots.FIGURES[study.figure](data, title=study.title, caption=study.caption, **study.plot)
    (png,) = plots.save_figure(fig, tmp_path / study.name, formats=("png",))
    assert png.stat().st_size > 10_000


def test_pass_at_k_of_a_prompt_always_solved_is_one_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pass_at_k(np.array([1.0, 0.0]), 1024).tolist() == [1.0, 0.0]
