"""The bandit engine: reward specs, metrics, the vectorized trainer and its regimes."""

from __future__ import annotations

import statistics
import sys

import numpy as np
import pytest
import torch

from ladsim.bandit.bench import bench_bandit, first_run_budget, naive_single_seed, time_commands
from ladsim.bandit.config import BanditConfig
from ladsim.bandit.metrics import PolicyMetrics
from ladsim.bandit.rewards import ArrayReward, CorrectSet, GaussianMixture, load_reward_file, parse_reward
from ladsim.bandit.trainer import target_log_distribution, train, train_objective


def final_metrics(result, objective):
    frame = result.metrics
    return frame[(frame.objective == objective) & (frame.step == result.config.steps)]


# --- acceptance: the paper's setting ----------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_js():
    return train(BanditConfig(seeds=2))


def test_paper_setting_lad_reaches_target_and_grpo_collapses(paper_js):
    for objective in ("lad", "lad-theory"):
        assert (final_metrics(paper_js, objective).js_to_target < 1e-3).all()
        assert (final_metrics(paper_js, objective).mode_coverage == 3).all()
    grpo = final_metrics(paper_js, "grpo")
    assert (grpo.top_arm_mass >= 0.9).all()
    # GRPO's mass sits on the best arm of the highest mode.
    best_arm = int(np.argmax(paper_js.rewards))
    assert paper_js.final_policy["grpo"][:, best_arm].min() >= 0.9


@pytest.mark.parametrize("div", ["hd", "kl"])
def test_paper_setting_lad_reaches_target_other_divergences(div):
    result = train(BanditConfig(seeds=1, div=div, objectives=("lad", "lad-theory")))
    for objective in ("lad", "lad-theory"):
        assert float(final_metrics(result, objective).js_to_target.iloc[0]) < 1e-3


def test_float32_engine_reaches_the_target_too():
    result = train(BanditConfig(seeds=2, objectives=("lad", "grpo"), dtype="float32"))
    assert result.final_policy["lad"].dtype == np.float32
    assert (final_metrics(result, "lad").js_to_target < 1e-3).all()
    assert (final_metrics(result, "grpo").top_arm_mass >= 0.9).all()


def test_target_is_pi_old_exp_a_over_eta():
    config = BanditConfig(arms=7, reward="mixture:3/1/1", eta=0.5, prior=(1, 2, 3, 4, 5, 6, 7))
    rewards = config.reward_spec().expected_rewards()
    prior = np.arange(1, 8) / 28
    expected = prior * np.exp(rewards / 0.5)
    np.testing.assert_allclose(target_log_distribution(config).exp().numpy(), expected / expected.sum(), rtol=1e-12)


# --- vectorization -----------------------------------------------------------------------------------

def test_vectorized_seeds_equal_a_plain_per_seed_loop():
    config = BanditConfig(arms=10, reward="mixture:2/1/1,7/1/0.8", seeds=3, steps=300, div="hd")
    _, vectorized = train_objective(config, "lad")
    plain = naive_single_seed(config.replace(seeds=1)).numpy()
    np.testing.assert_allclose(vectorized, np.broadcast_to(plain, vectorized.shape), atol=1e-12)


def test_seeds_differ_when_there_is_noise_and_repeat_with_the_same_seed():
    config = BanditConfig(arms=12, reward="correct:2,9", mode="sampled", group_size=4, seeds=4, steps=60,
                          log_every=20, objectives=("grpo", "lad"))
    first, second = train(config), train(config)
    assert first.metrics.equals(second.metrics)
    for name in first.final_policy:
        np.testing.assert_array_equal(first.final_policy[name], second.final_policy[name])
    policies = first.final_policy["lad"]
    assert np.ptp(policies, axis=0).max() > 1e-3, "sampled seeds should not all coincide"
    other = train(config.replace(seed=1))
    assert not np.array_equal(other.final_policy["lad"], policies)


# --- regimes: what they really do (numbers in the README and the closing note) -------------------------

def test_on_policy_refresh_compounds_the_target_and_collapses_lad():
    # With pi_old refreshed every step the fixed point moves: pi_T ~ pi_0 exp(T A / eta) (LAD_SPEC caveat).
    frozen = train(BanditConfig(seeds=1, steps=1500, objectives=("lad",)))
    on_policy = train(BanditConfig(seeds=1, steps=1500, objectives=("lad",), refresh_every=1))
    frozen_top = float(final_metrics(frozen, "lad").top_arm_mass.iloc[0])
    on_policy_top = float(final_metrics(on_policy, "lad").top_arm_mass.iloc[0])
    assert on_policy_top > 0.8 > 0.2 > frozen_top
    assert float(final_metrics(on_policy, "lad").js_to_target.iloc[0]) > 0.3


def test_sampled_frozen_lad_keeps_more_modes_than_grpo():
    config = BanditConfig(mode="sampled", group_size=16, seeds=6, steps=1500, objectives=("grpo", "lad"))
    result = train(config)
    lad, grpo = final_metrics(result, "lad"), final_metrics(result, "grpo")
    assert lad.entropy.mean() > grpo.entropy.mean()
    assert lad.top_arm_mass.mean() < grpo.top_arm_mass.mean()
    # Not the exact target: group-normalized advantages rescale A by 1/std(R), which sharpens the target.
    assert lad.js_to_target.mean() > 1e-2


def test_theory_loss_in_sampled_mode_uses_the_exact_oracle():
    config = BanditConfig(arms=8, reward="mixture:2/1/1,6/1/0.9", mode="sampled", group_size=4, seeds=2,
                          steps=1500, objectives=("lad-theory",), lr=5e-2)
    assert final_metrics(train(config), "lad-theory").js_to_target.max() < 1e-4


def test_sgd_and_epochs_and_prior_run():
    config = BanditConfig(arms=6, reward="correct:1,4;p=0.9;q=0.1", optimizer="sgd", lr=1.0, mode="sampled",
                          group_size=8, epochs=4, refresh_every=8, prior=(1, 1, 1, 1, 1, 5), steps=64,
                          seeds=3, log_every=16, advantage_scale="none")
    result = train(config)
    assert set(result.metrics.step) == {0, 16, 32, 48, 64}
    assert np.isfinite(result.metrics.drop(columns="objective").to_numpy()).all()


# --- metrics ---------------------------------------------------------------------------------------

def test_metrics_against_hand_computed_values():
    success = np.array([1.0, 0.0, 0.5, 0.0])
    rewards = np.array([1.0, 0.0, 0.5, 0.0])
    target = torch.tensor([0.4, 0.1, 0.4, 0.1], dtype=torch.float64)
    metrics = PolicyMetrics(target.log(), rewards, success, modes=[[0], [2], [1, 3]], ks=(1, 4))
    pi = torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.4, 0.1, 0.4, 0.1]], dtype=torch.float64)
    out = {k: v.numpy() for k, v in metrics(pi.log()).items()}
    p = pi.numpy()
    np.testing.assert_allclose(out["expected_reward"], p @ rewards)
    np.testing.assert_allclose(out["entropy"], -(p * np.log(p)).sum(1))
    np.testing.assert_allclose(out["tv_to_target"], [0.5 * (0.1 + 0.2 + 0.3 + 0.0), 0.0], atol=1e-15)
    m = 0.5 * (p + target.numpy())
    js = 0.5 * (p * np.log(p / m)).sum(1) + 0.5 * (target.numpy() * np.log(target.numpy() / m)).sum(1)
    np.testing.assert_allclose(out["js_to_target"], js, atol=1e-15)
    np.testing.assert_allclose(out["kl_to_target"], (p * np.log(p / target.numpy())).sum(1), atol=1e-15)
    np.testing.assert_allclose(out["top_arm_mass"], [0.5, 0.4])
    # modes: {0} keeps 0.5 >= 0.2; {2} has 0.1 < 0.2; {1,3} has 0.4 >= 0.1  -> 2; the target itself keeps 3.
    np.testing.assert_array_equal(out["mode_coverage"], [2, 3])
    # effective modes: the perplexity of the modes' shares ({0}, {2}, {1,3}): (0.5, 0.1, 0.4) and (0.4, 0.4, 0.2)
    shares = np.array([[0.5, 0.1, 0.4], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(out["effective_modes"], np.exp(-(shares * np.log(shares)).sum(1)), rtol=1e-14)
    ps = p @ success
    np.testing.assert_allclose(out["pass@1"], ps)
    np.testing.assert_allclose(out["pass@4"], 1 - (1 - ps) ** 4)
    np.testing.assert_allclose(out["distinct@4"], (1 - (1 - p * success) ** 4).sum(1))
    # distinct@k by brute-force enumeration of 4 draws for the first policy (success is Bernoulli per draw).
    import itertools

    expected = 0.0
    for draw in itertools.product(range(4), repeat=4):
        prob = np.prod([p[0, a] for a in draw])
        for arm in set(draw):
            n = draw.count(arm)
            expected += prob * (1 - (1 - success[arm]) ** n)
    assert out["distinct@4"][0] == pytest.approx(expected, rel=1e-12)


# --- reward specs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_arms", [2, 3, 4, 7])
def test_default_mixture_is_valid_for_any_number_of_arms(n_arms):
    spec = parse_reward("mixture", n_arms)
    assert spec.expected_rewards().shape == (n_arms,) and len(spec.modes()) == 3


def test_default_mixture_is_trimodal_with_one_best_arm():
    spec = parse_reward("mixture", 50)
    rewards = spec.expected_rewards()
    assert len(spec.modes()) == 3
    assert int(np.argmax(rewards)) == 10 and np.sort(rewards)[-1] - np.sort(rewards)[-2] > 0.02
    assert spec.success_prob().min() == 0 and spec.success_prob().max() == 1


def test_correct_set_defaults_and_sampling():
    spec = parse_reward("correct", 50)
    assert isinstance(spec, CorrectSet) and len(spec.correct) == 5 and spec.modes() == [[a] for a in spec.correct]
    spec = parse_reward("correct:1,3;p=0.7;q=0.2", 5)
    gen = torch.Generator().manual_seed(0)
    draws = spec.sample(torch.tensor([1] * 4000 + [0] * 4000), gen)
    assert draws[:4000].mean().item() == pytest.approx(0.7, abs=0.03)
    assert draws[4000:].mean().item() == pytest.approx(0.2, abs=0.03)


def test_reward_files(tmp_path):
    values = np.array([0.0, 1.0, 0.9, 0.0, 0.2, 0.8])
    np.save(tmp_path / "r.npy", values)
    (tmp_path / "col.csv").write_text("\n".join(map(str, values)) + "\n")
    (tmp_path / "row.csv").write_text(",".join(map(str, values)) + "\n")
    (tmp_path / "named.csv").write_text("arm,reward\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values)))
    for name in ("r.npy", "col.csv", "row.csv", "named.csv"):
        spec = parse_reward(str(tmp_path / name))
        assert isinstance(spec, ArrayReward)
        np.testing.assert_allclose(spec.expected_rewards(), values)
    assert parse_reward(str(tmp_path / "r.npy")).modes() == [[1, 2], [5]]


@pytest.mark.parametrize("spec, n_arms, message", [
    ("mixture:10/3", 50, "MEAN/WIDTH/HEIGHT"),
    ("mixture:60/3/1", 50, "outside the arms"),
    ("mixture:10/0/1", 50, "width"),
    ("mixture:a/b/c", 50, "malformed"),
    ("correct:1,x", 50, "malformed correct arms"),
    ("correct:1,99", 50, "outside the arms"),
    ("correct:1,1", 50, "repeat"),
    ("correct:1;p=2", 50, "[0, 1]"),
    ("correct:1;p=0.1;q=0.5", 50, "p > q"),
    ("correct:1;z=1", 50, "p=PROB"),
    ("gaussian", 50, "unknown reward"),
    ("mixture", 1, "at least 2 arms"),
])
def test_malformed_reward_specs(spec, n_arms, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_reward(spec, n_arms)


def test_malformed_reward_files(tmp_path):
    (tmp_path / "nan.csv").write_text("1\nnan\n0\n")
    (tmp_path / "inf.csv").write_text("1\ninf\n0\n")
    (tmp_path / "text.csv").write_text("1\nabc\n0\n")
    (tmp_path / "grid.csv").write_text("1,2\n3,4\n")
    (tmp_path / "flat.csv").write_text("1\n1\n1\n")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    (tmp_path / "r.txt").write_text("1\n0\n")
    cases = {"nan.csv": "NaN or Inf", "inf.csv": "NaN or Inf", "text.csv": "malformed",
             "grid.csv": "one value per arm", "flat.csv": "all rewards are equal",
             "bad.npy": "not a .npy file", "r.txt": "unknown reward", "missing.csv": "does not exist"}
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            parse_reward(str(tmp_path / name))
    np.save(tmp_path / "three.npy", np.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="--arms is 4"):
        parse_reward(str(tmp_path / "three.npy"), 4)
    assert load_reward_file(tmp_path / "three.npy").shape == (3,)


@pytest.mark.parametrize("changes, message", [
    ({"arms": 1}, "--arms"), ({"eta": 0.0}, "--eta"), ({"eta": float("nan")}, "--eta"), ({"lr": -1.0}, "--lr"),
    ({"steps": 0}, "--steps"), ({"div": "foo"}, "unknown divergence"), ({"objectives": ("ppo",)}, "objective"),
    ({"optimizer": "rmsprop"}, "optimizer"), ({"mode": "mc"}, "mode"),
    ({"mode": "sampled", "group_size": 1}, "group-size"),
    ({"seeds": 0}, "--seeds"), ({"refresh_every": -1}, "refresh"), ({"prior": (1.0, 2.0)}, "prior"),
    ({"clip": 0.0}, "--clip"), ({"objectives": ()}, "at least one"), ({"dtype": "float16"}, "dtype"),
])
def test_config_rejects_bad_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        BanditConfig(**changes)


def test_mixture_and_array_specs_are_plain_values():
    assert GaussianMixture(5, ((2.0, 1.0, 1.0),)).describe()["components"][0]["mean"] == 2.0
    assert ArrayReward((0.0, 1.0)).n_arms == 2


def test_bench_reports_both_engines_on_a_tiny_size(monkeypatch):
    # the CLI timings on tiny commands: the real ones (a 151,936-arm run) take ten seconds; the baseline of the
    # first run is `python -c pass` here, not torch's import
    monkeypatch.setattr("ladsim.bandit.bench.CLI_RUNS", {"help": ["--help"], "run_bandit_50": [
        "run", "bandit", "--arms", "6", "--steps", "5", "--seeds", "2"], "version": ["--version"]})
    monkeypatch.setattr("ladsim.bandit.bench.IMPORT_TORCH", ["-c", "pass"])
    monkeypatch.setattr("ladsim.bandit.bench.IMPORT_TORCH_ONLY", ["-c", "import os; os._exit(0)"])
    result = bench_bandit(seeds=4, steps=20, arms=6, naive_seeds=1, objectives_seeds=2, sizes=(6,), cli_repeats=2)
    assert set(result["cli_s"]) == {"help", "run_bandit_50", "version"} and all(t > 0 for t in result["cli_s"].values())
    runs = result["cli_runs_s"]  # the first run, --help and the baseline in 2 rounds; the rest once
    assert [len(runs[k]) for k in ("import_torch", "import_torch_only", "help", "run_bandit_50", "version")] == [
        2, 2, 2, 2, 1]
    first = result["first_run"]
    assert first["run_s"] == result["cli_s"]["run_bandit_50"] == statistics.median(runs["run_bandit_50"])
    assert first["import_torch_s"] == statistics.median(runs["import_torch"])
    assert first["ours_s"] == pytest.approx(first["run_s"] - first["import_torch_s"])
    assert first["ours_strict_s"] == pytest.approx(first["run_s"] - statistics.median(runs["import_torch_only"]))
    assert first["command"] == "ladsim run bandit --arms 6 --steps 5 --seeds 2" and first["repeats"] == 2
    assert set(result["sizes"]) == {"6"} and set(result["objectives_s"]) >= {"grpo", "lad", "kl-cov"}
    for times in result["objectives_s"].values():  # the fastest of its runs, every run reported
        assert len(times["fused_runs"]) == 3 and times["fused"] == min(times["fused_runs"]) > 0
    assert {"vectorized_s", "naive_per_seed_s", "speedup"} <= set(result)
    assert result["vectorized_s"] > 0 and result["naive_per_seed_s"] > 0
    assert result["max_policy_diff"] < 1e-12


def test_first_run_budget_is_the_difference_and_ratio_of_medians():
    budget = first_run_budget([1.6, 1.5, 9.0], [2.0, 2.2, 2.1], target_s=0.5)
    assert budget["import_torch_s"] == 1.6 and budget["run_s"] == 2.1  # medians: one slow outlier is ignored
    assert budget["ours_s"] == pytest.approx(0.5) and budget["ratio"] == pytest.approx(2.1 / 1.6)
    assert budget["ours_over_target"] == pytest.approx(1.0) and budget["repeats"] == 3
    assert "ours_strict_s" not in budget
    strict = first_run_budget([1.6, 1.5, 9.0], [2.0, 2.2, 2.1], [1.2, 1.1, 1.3], target_s=0.5)
    assert strict["torch_teardown_s"] == pytest.approx(0.4) and strict["ours_strict_s"] == pytest.approx(0.9)


def test_timed_commands_take_turns_after_an_untimed_round(tmp_path):
    def note(letter):
        return [sys.executable, "-c", f"open('log', 'a').write('{letter}')"]

    times = time_commands({"a": note("a"), "b": note("b")}, 2, str(tmp_path), warm_up=True)
    assert (tmp_path / "log").read_text() == "ababab"  # interleaved: a change of load reaches both alike
    assert [len(times["a"]), len(times["b"])] == [2, 2] and min(times["a"] + times["b"]) > 0
    with pytest.raises(RuntimeError, match="boom"):
        time_commands({"fails": [sys.executable, "-c", "raise SystemExit('boom')"]}, 1, str(tmp_path))
