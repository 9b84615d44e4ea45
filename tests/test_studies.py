"""Studies: TOML parsing, the per-run cache (resume, invalidation, interruption), summaries and pools."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ladsim import studies

TINY = """
[study]
name = "tiny"
frames = ["final", "policy"]
summary = ["expected_reward", "entropy"]

[base]
arms = 6
reward = "correct:1,4"
mode = "sampled"
group_size = 4
steps = 12
seeds = 5
init_std = 0.1
log_every = 4

[[grid]]
objective = ["grpo", "lad"]
eta = [ETA_A, ETA_B]
"""


def write_study(tmp_path, text=TINY, eta_a="1", eta_b="2", name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text.replace("ETA_A", eta_a).replace("ETA_B", eta_b))
    return path


def test_grid_expands_to_one_run_per_objective_and_point(tmp_path):
    study = studies.load_study(write_study(tmp_path))
    assert study.axes == ("eta",)
    assert [(dict(r.labels)["eta"], r.config.objectives) for r in study.runs] == [
        (1, ("grpo",)), (2, ("grpo",)), (1, ("lad",)), (2, ("lad",))]  # axes in file order, first slowest
    assert len({r.key for r in study.runs}) == 4
    assert all(r.config.steps == 12 and r.config.seeds == 5 for r in study.runs)


def test_key_is_canonical_and_sensitive(tmp_path):
    a = studies.load_study(write_study(tmp_path, eta_a="1", eta_b="2"))
    b = studies.load_study(write_study(tmp_path, eta_a="1.0", eta_b="2.0", name="other.toml"))
    assert [r.key for r in a.runs] == [r.key for r in b.runs]  # 1 and 1.0 are the same setting
    c = studies.load_study(write_study(tmp_path), overrides={"lr": 1e-2})
    assert not {r.key for r in a.runs} & {r.key for r in c.runs}


@pytest.mark.parametrize("bad, message", [
    ('[base]\nbogus = 1\n', "unknown bandit setting 'bogus'"),
    ('[base]\neta = -1\n', "--eta must be"),
    ('[study]\nkind = "nope"\n', "unknown study kind"),
    ('[[grid]]\neta = []\n', "non-empty list"),
    ('[[grid]]\nregime = [{mode = "exact"}]\n', "needs a 'label'"),
    ('[study]\nframes = ["nope"]\n', "unknown frame"),
    ('[study.pools.div]\ns = ["tv"]\n', "not a grid axis"),
    ('[base\n', "not valid TOML"),
])
def test_bad_study_files_fail_with_one_line(tmp_path, bad, message):
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(ValueError, match=message) as err:
        studies.load_study(path)
    assert "\n" not in str(err.value).strip() or "TOML" in str(err.value)


def test_second_run_recomputes_nothing_and_gives_the_same_frames(tmp_path):
    study = studies.load_study(write_study(tmp_path))
    seen = []
    first = studies.run_study(study, tmp_path / "cache", on_run=lambda r, computed: seen.append(computed))
    assert (first.computed, first.cached) == (4, 0) and seen == [True] * 4
    seen.clear()
    second = studies.run_study(study, tmp_path / "cache", on_run=lambda r, computed: seen.append(computed))
    assert (second.computed, second.cached) == (0, 4) and seen == [False] * 4
    for name in ("final", "policy", "summary"):
        pd.testing.assert_frame_equal(first.frames[name], second.frames[name])
    final = first.frames["final"]
    assert list(final.columns[:3]) == ["eta", "objective", "seed"]
    assert len(final) == 4 * 5 and (final["step"] == 12).all()


def test_changed_setting_invalidates_exactly_its_runs(tmp_path):
    cache = tmp_path / "cache"
    studies.run_study(studies.load_study(write_study(tmp_path, eta_b="2")), cache)
    changed = studies.load_study(write_study(tmp_path, eta_b="3"))
    computed = []
    result = studies.run_study(changed, cache,
                               on_run=lambda r, c: c and computed.append(dict(r.labels)["eta"]))
    assert (result.computed, result.cached) == (2, 2)
    assert computed == [3, 3]


def test_interrupted_run_leaves_no_corrupt_cache_and_resumes(tmp_path, monkeypatch):
    study = studies.load_study(write_study(tmp_path))
    cache = tmp_path / "cache"
    real_savez = np.savez
    calls = {"n": 0}

    def dying_savez(handle, **arrays):  # the second run dies halfway through writing its cache file
        calls["n"] += 1
        if calls["n"] == 2:
            handle.write(b"PK\x03\x04 half a zip file")
            raise KeyboardInterrupt
        return real_savez(handle, **arrays)

    monkeypatch.setattr(np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        studies.run_study(study, cache)
    monkeypatch.setattr(np, "savez", real_savez)
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"{study.runs[0].key}.npz"]  # the finished run only; no partial file, no temp left
    result = studies.run_study(study, cache)
    assert (result.computed, result.cached) == (3, 1)


def test_unreadable_cache_file_is_recomputed(tmp_path):
    study = studies.load_study(write_study(tmp_path))
    cache = tmp_path / "cache"
    studies.run_study(study, cache)
    path = studies.cache_path(cache, study.runs[1].key)
    path.write_bytes(path.read_bytes()[:100])
    assert studies.load_frames(path) is None
    result = studies.run_study(study, cache)
    assert (result.computed, result.cached) == (1, 3)


def test_pool_path_gives_the_same_data_and_runs_pickle(tmp_path):
    # The executor path of run_study, driven by threads (spawning worker processes costs seconds); what a
    # process pool adds is pickling the run, checked directly.
    from concurrent.futures import ThreadPoolExecutor

    study = studies.load_study(write_study(tmp_path))
    serial = studies.run_study(study, tmp_path / "a")
    with ThreadPoolExecutor(2) as pool:
        parallel = studies.run_study(study, tmp_path / "b", executor=pool)
    assert parallel.computed == 4
    pd.testing.assert_frame_equal(serial.frames["final"], parallel.frames["final"])
    run = study.runs[0]
    assert pickle.loads(pickle.dumps(run)) == run


def test_summary_is_mean_and_bootstrap_interval(tmp_path):
    result = studies.run_study(studies.load_study(write_study(tmp_path)), tmp_path / "cache")
    final, summary = result.frames["final"], result.frames["summary"]
    assert len(summary) == 4 * 2
    for _, row in summary.iterrows():
        values = final[(final["eta"] == row["eta"]) & (final["objective"] == row["objective"])][row["metric"]]
        assert row["seeds"] == 5
        assert row["mean"] == pytest.approx(values.mean())
        assert row["lo"] <= row["mean"] <= row["hi"]
        assert row["hi"] - row["lo"] <= values.max() - values.min() + 1e-12


def test_bootstrap_interval_covers_and_shrinks():
    rng = np.random.default_rng(1)
    small = studies.bootstrap_interval(rng.normal(3.0, 1.0, 16))
    large = studies.bootstrap_interval(rng.normal(3.0, 1.0, 1024))
    assert small[1] < small[0] < small[2] and large[1] < 3.0 < large[2]
    assert large[2] - large[1] < 0.5 * (small[2] - small[1])
    assert studies.bootstrap_interval(np.full(8, 0.25)) == (0.25, 0.25, 0.25)


def test_pool_averages_members_per_seed():
    final = pd.DataFrame({"div": ["a", "b", "c"] * 2, "objective": "lad", "seed": [0, 0, 0, 1, 1, 1],
                          "x": [1.0, 2.0, 6.0, 0.0, 0.0, 3.0]})
    pooled = studies.pool(final, ["div"], "div", "ab", ["a", "b"], ("x",))
    assert pooled["div"].tolist() == ["ab", "ab"] and pooled["x"].tolist() == [1.5, 0.0]
    with pytest.raises(ValueError, match="not every grid point"):
        studies.pool(final[final["div"] != "b"].iloc[1:], ["div"], "div", "ab", ["a", "b"], ("x",))


def test_saved_data_round_trips_and_refuses_other_settings(tmp_path):
    study = studies.load_study(write_study(tmp_path))
    result = studies.run_study(study, tmp_path / "cache")
    studies.save_data(result, tmp_path / "data")
    loaded = studies.load_data(study, tmp_path / "data")
    assert sorted(loaded) == ["final", "policy", "summary"]
    pd.testing.assert_frame_equal(loaded["summary"], result.frames["summary"], check_dtype=False)
    other = studies.load_study(write_study(tmp_path, eta_b="5"))
    with pytest.raises(ValueError, match="other settings"):
        studies.load_data(other, tmp_path / "data")


def test_executor_setting_is_validated(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[study]\nexecutor = "slurm"\n')
    with pytest.raises(ValueError, match="unknown executor 'slurm'; choose from: local, ray"):
        studies.load_study(path)
    study = studies.load_study(write_study(tmp_path))
    assert study.executor is None
    assert studies.load_study(write_study(tmp_path, TINY.replace('name = "tiny"', 'name = "tiny"\nexecutor = "ray"'),
                                          name="r.toml")).executor == "ray"
    with pytest.raises(ValueError, match="executor must be one of local, ray, got 'dask'"):
        studies.run_study(study, tmp_path / "cache", executor="dask")
    with pytest.raises(ValueError, match="for the ray executor only"):
        studies.run_study(study, tmp_path / "cache", address="ray://head:10001")
    assert not (tmp_path / "cache").exists()  # refused before any work


def test_ray_executor_without_ray_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import sys

    from ladsim import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, whether or not ray is installed
    study_file = write_study(tmp_path)
    with pytest.raises(ValueError, match=r"needs Ray.*pip install 'ladsim\[ray\]'"):
        studies.run_study(studies.load_study(study_file), tmp_path / "cache", executor="ray")
    ray_file = write_study(tmp_path, TINY.replace('name = "tiny"', 'name = "tiny"\nexecutor = "ray"'), name="r.toml")
    for args in (["study", "run", str(study_file), "--executor", "ray"], ["study", "run", str(ray_file)],
                 ["figures", "--studies", str(tmp_path), "--executor", "ray"]):
        monkeypatch.setattr(sys, "argv", ["ladsim", *args, "--cache", str(tmp_path / "cache")]
                            + (["--data", str(tmp_path / "data")] if args[0] == "study" else
                               ["--out", str(tmp_path / "figs")]))
        with pytest.raises(SystemExit) as done:
            cli.main()
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.startswith("error: the ray executor needs Ray")
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists() and not (tmp_path / "data").exists()  # nothing written


def test_a_failing_cell_names_itself_and_the_finished_cells_stay_cached(tmp_path):
    from ladsim.studies.compute import compute_run
    from ladsim.studies.execute import InProcess

    study = studies.load_study(write_study(tmp_path))
    bad = study.runs[1]  # eta=2, grpo

    def compute(run):
        if run.key == bad.key:
            raise FloatingPointError("planted failure\nsecond line")
        return compute_run(run)

    with pytest.raises(ValueError) as err:
        studies.run_study(study, tmp_path / "cache", executor=InProcess(compute))
    assert str(err.value) == ("study tiny: run (eta=2, objective=grpo) failed: FloatingPointError: planted failure; "
                              "the 3 finished run(s) are cached")
    cached = sorted(p.stem for p in (tmp_path / "cache").iterdir())
    assert cached == sorted(r.key for r in study.runs if r.key != bad.key)  # every other cell, none partial
    again = studies.run_study(study, tmp_path / "cache")
    assert (again.computed, again.cached) == (1, 3)


# --- figures are redrawn only when what they are drawn from changed ------------------------------------

FIGURE_STUDY = """
[study]
name = "tinyfig"
figure = "distribution"
title = "TITLE"
frames = ["final", "policy"]

[base]
arms = 6
reward = "correct:1,4"
steps = STEPS
seeds = 2
log_every = 4

[[grid]]
objective = ["grpo", "lad"]
"""


def figure_study(tmp_path, title="tiny", steps=8):
    path = tmp_path / "tinyfig.toml"
    path.write_text(FIGURE_STUDY.replace("TITLE", title).replace("STEPS", str(steps)))
    study = studies.load_study(path)
    studies.save_data(studies.run_study(study, tmp_path / "cache"), tmp_path / "data")
    return study


def test_a_figure_is_redrawn_exactly_when_its_inputs_change(tmp_path):
    from ladsim.studies.figures import update_figure

    def update(study, **kwargs):
        return update_figure(study, tmp_path / "data", tmp_path / "figs", **kwargs)

    study = figure_study(tmp_path)
    paths, drawn = update(study)
    assert drawn and [p.name for p in paths] == ["tinyfig.png", "tinyfig.pdf"]
    first = [p.read_bytes() for p in paths]
    assert update(study) == (paths, False)  # nothing changed: up to date
    figure_study(tmp_path)  # the same study run and saved again: the same data, still up to date
    assert update(study)[1] is False
    assert update(study, force=True)[1] is True
    assert [p.read_bytes() for p in paths] == first  # redrawn from unchanged data: the same bytes, PDF included
    assert update(figure_study(tmp_path, title="renamed"))[1] is True  # the study's figure settings
    assert update(figure_study(tmp_path, title="renamed", steps=12))[1] is True  # the study's data
    study = studies.load_study(tmp_path / "tinyfig.toml")
    assert update(study)[1] is False
    paths[1].write_bytes(b"edited")  # a figure file changed or gone
    assert update(study)[1] is True
    paths[0].unlink()
    assert update(study)[1] is True and paths[0].is_file()
    assert update(study, formats=("png",))[1] is True  # other formats


def test_the_figure_key_covers_the_plotting_code(tmp_path, monkeypatch):
    from ladsim.studies import figures

    sources = figures.plot_sources()
    assert {"ladsim.plots", "ladsim.passk", "ladsim.stats", "ladsim.divergences"} <= set(sources)
    assert not any(name.startswith(("ladsim.studies", "ladsim.bandit")) for name in sources)
    study = figure_study(tmp_path)
    key = figures.figure_key(study, tmp_path / "data")
    edited = tmp_path / "plots.py"
    edited.write_text(sources["ladsim.plots"].read_text() + "\n# edited\n")
    monkeypatch.setattr(figures, "plot_sources", lambda: {**sources, "ladsim.plots": edited})
    assert figures.figure_key(study, tmp_path / "data") != key


def test_study_plot_says_which_figures_it_wrote_and_which_were_up_to_date(tmp_path, capsys):
    from cli_helpers import run_main

    figure_study(tmp_path)
    args = ["study", "plot", str(tmp_path / "tinyfig.toml"), "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "figs")]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    figs = tmp_path / "figs"
    assert out.splitlines() == [f"wrote {figs / 'tinyfig.png'}", f"wrote {figs / 'tinyfig.pdf'}"]
    code, out, _ = run_main(args, capsys)
    assert code == 0 and out.splitlines()[0] == f"up to date: {figs / 'tinyfig.png'}"
    code, out, _ = run_main([*args, "--force"], capsys)
    assert code == 0 and out.splitlines()[0].startswith("wrote ")


def test_figures_prints_each_file_and_skips_the_figures_up_to_date(tmp_path, capsys):
    from cli_helpers import run_main

    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "tinyfig.toml").write_text(FIGURE_STUDY.replace("TITLE", "t").replace("STEPS", "8"))
    args = ["figures", "--studies", str(tmp_path / "studies"), "--cache", str(tmp_path / "cache"), "--out",
            str(tmp_path / "figs"), "--jobs", "1"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert f"wrote {tmp_path / 'figs' / 'tinyfig.pdf'}" in out.splitlines() and "1 figure(s) drawn, 0 up to date" in out
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert f"up to date: {tmp_path / 'figs' / 'tinyfig.pdf'}" in out.splitlines()
    assert "0 figure(s) drawn, 1 up to date" in out
