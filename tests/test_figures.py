"""Every study in studies/ at a tiny size: the data behind each figure says what the figure claims, and every
figure function draws it. (The full-size figures come from `make figures`.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ladsim import plots, studies
from ladsim.divergences import NON_STRICT_CLASS, STRICT_CLASS

STUDIES = Path(__file__).resolve().parents[1] / "studies"
TINY_SAMPLED = {"steps": 20, "seeds": 4, "log_every": 10}


def run(name: str, tmp_path, overrides: dict) -> tuple[studies.Study, dict[str, pd.DataFrame]]:
    study = studies.load_study(STUDIES / f"{name}.toml", overrides=overrides)
    result = studies.run_study(study, tmp_path / "cache")
    studies.save_data(result, tmp_path / "data")
    return study, studies.load_data(study, tmp_path / "data")  # what `study plot` reads


def draw(study, frames, tmp_path) -> None:
    fig = plots.FIGURES[study.figure](frames, title=study.title, caption=study.caption, **study.plot)
    (png,) = plots.save_figure(fig, tmp_path / study.name, formats=("png",))
    assert png.stat().st_size > 10_000


def test_every_study_file_parses_with_a_known_figure():
    files = studies.study_files(STUDIES)
    assert {f.stem for f in files} >= {"fig1_distribution", "fig2_landscape", "fig3_eta", "fig4_divergence",
                                      "fig5_regimes"}
    for path in files:
        study = studies.load_study(path)
        assert study.figure in plots.FIGURES and study.title


def test_fig1_lad_policies_match_the_target_and_grpo_collapses(tmp_path):
    # Adam at a larger step size converges in fewer steps to the same minimizer as the paper's 4000 x 5e-3.
    study, data = run("fig1_distribution", tmp_path, {"steps": 200, "lr": 0.08, "log_every": 100})
    policy = data["policy"]
    target = policy.groupby("arm")["target"].first().to_numpy()
    rewards = policy.groupby("arm")["reward"].first().to_numpy()
    expected = np.exp(rewards / 0.2) / np.exp(rewards / 0.2).sum()  # P_A for a uniform pi_old, eta = 0.2
    np.testing.assert_allclose(target, expected, rtol=1e-5)
    for objective in ("lad", "lad-theory"):
        probs = policy[policy["objective"] == objective].groupby("arm")["probability"].mean().to_numpy()
        assert 0.5 * np.abs(probs - target).sum() < 1e-3, objective
    final = data["final"].set_index("objective")
    assert (final.loc[["lad", "lad-theory"], "mode_coverage"] == 3).all()
    assert final.loc["grpo", "mode_coverage"] == 1 and final.loc["grpo", "top_arm_mass"] > 0.9
    draw(study, data, tmp_path)


def test_fig2_lad_trajectories_end_at_the_marked_optimum(tmp_path):
    study, data = run("fig2_landscape", tmp_path, {"steps": 300, "grid": 15})
    paths, optimum = data["trajectory"], data["optimum"].set_index("div")
    assert set(optimum.index) == {"hd", "js"}
    rewards, eta = np.array([1.0, 0.6, 0.0]), 0.5  # the study's settings; pi_old uniform
    closed_form = (rewards[:2] - rewards[2]) / eta
    for div, path in paths.groupby("div"):
        star = optimum.loc[div, ["theta1", "theta2"]].to_numpy(dtype=float)
        np.testing.assert_allclose(star, closed_form, atol=1e-6)
        ends = path[path["step"] == path["step"].max()].set_index("objective")
        for objective in ("lad", "lad-theory"):
            end = ends.loc[objective, ["theta1", "theta2"]].to_numpy(dtype=float)
            assert np.linalg.norm(end - star) < 1e-2, (div, objective, end)
        assert np.linalg.norm(ends.loc["grpo", ["theta1", "theta2"]].to_numpy(dtype=float) - star) > 1.0
        start = path[path["step"] == 0][["theta1", "theta2"]].to_numpy()
        assert (start == start[0]).all()  # one starting point for every objective
        # the contours are practical LAD's, and its minimum on the grid lies next to the optimum
        grid = data["grid"][data["grid"]["div"] == div]
        best = grid.loc[grid["loss"].idxmin(), ["theta1", "theta2"]].to_numpy(dtype=float)
        spacing = np.diff(np.sort(grid["theta1"].unique()))[0]
        assert np.abs(best - star).max() <= spacing
        lad = path[path["objective"] == "lad"]["loss"].to_numpy()
        assert lad[-1] == pytest.approx(grid["loss"].min(), abs=0.02) and lad[-1] <= lad[0]
    draw(study, data, tmp_path)


def test_fig3_summary_covers_every_eta_and_grpo(tmp_path):
    study, data = run("fig3_eta", tmp_path, TINY_SAMPLED)
    summary = data["summary"]
    lad = summary[summary["objective"] == "lad"]
    assert sorted(lad["eta"].unique()) == [0.5, 1, 2, 4, 8, 16]
    assert set(lad["metric"]) == {"expected_reward", "effective_modes", "distinct@16", "mode_coverage", "pass@16"}
    grpo = summary[summary["objective"] == "grpo"]
    assert len(grpo) == 5 and grpo["eta"].isna().all()
    assert (summary["seeds"] == 4).all()
    assert ((summary["lo"] <= summary["mean"] + 1e-12) & (summary["mean"] <= summary["hi"] + 1e-12)).all()
    final = data["final"]
    one = final[(final["objective"] == "lad") & (final["eta"] == 2)]["distinct@16"]
    row = lad[(lad["eta"] == 2) & (lad["metric"] == "distinct@16")].iloc[0]
    assert row["mean"] == pytest.approx(one.mean(), rel=1e-5)
    assert (final["distinct@16"] <= 5 + 1e-9).all()  # 5 correct arms
    draw(study, data, tmp_path)


def test_fig4_summary_has_all_generators_and_class_means(tmp_path):
    study, data = run("fig4_divergence", tmp_path, TINY_SAMPLED)
    summary = data["summary"]
    lad = summary[summary["objective"] == "lad"].set_index(["div", "metric"])["mean"]
    assert set(summary["div"].dropna()) == {"tv", "hd", "js", "kl", "rkl", "jf", "pearson", "neyman",
                                            "strict", "non-strict"}
    for cls, members in (("strict", STRICT_CLASS), ("non-strict", NON_STRICT_CLASS)):
        for metric in ("expected_reward", "distinct@16"):
            assert lad[(cls, metric)] == pytest.approx(np.mean([lad[(d, metric)] for d in members]), rel=1e-5)
    draw(study, data, tmp_path)


def test_fig5_regime_map_has_every_cell(tmp_path):
    study, data = run("fig5_regimes", tmp_path, TINY_SAMPLED)
    summary = data["summary"]
    cells = summary.groupby(["refresh", "regime", "objective", "metric"]).size()
    assert len(cells) == 4 * 4 * 2 * 3 and (cells == 1).all()
    final = data["final"]
    assert final["mode_coverage"].between(0, 5).all() and (final["modes"] == 5).all()
    assert final["entropy"].between(0, math.log(50) + 1e-9).all()
    caption = plots.regime_caption(summary)
    assert caption.count("of 16 regimes") == 2
    draw(study, data, tmp_path)


def test_regime_caption_counts_disjoint_intervals():
    rows = []
    for cell, (a, b) in enumerate([((3, 4), (1, 2)), ((1, 2), (3, 4)), ((1, 3), (2, 4))]):
        for objective, (lo, hi) in (("lad", a), ("grpo", b)):
            rows.append({"regime": str(cell), "objective": objective, "metric": "entropy", "seeds": 8,
                         "mean": (lo + hi) / 2, "lo": lo, "hi": hi})
    caption = plots.regime_caption(pd.DataFrame(rows), ("entropy",))
    assert "higher in 1 of 3 regimes, lower in 1, intervals overlapping in 1" in caption
