"""`ladsim run bandit` and `ladsim bench bandit` through the CLI: outputs, errors, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli_helpers import run_main

from ladsim import cli
from ladsim.bandit import trainer
from ladsim.bandit.config import BanditConfig
from ladsim.bandit.metrics import SUMMARY_METRICS

runner = CliRunner()
SMALL = ["--arms", "12", "--steps", "40", "--seeds", "3", "--log-every", "10", "--init-std", "0.5"]


def invoke(args):
    """Run the CLI in-process the way the console script does (main() turns user errors into exit 2)."""
    return runner.invoke(cli.app, args, catch_exceptions=True)


def test_run_bandit_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    result = invoke(["run", "bandit", *SMALL, "--div", "hd", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".ladsim-run", "config.json", "distribution.png", "final_policy.csv", "metrics.csv", "summary.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["bandit"]["div"] == "hd" and config["bandit"]["arms"] == 12
    assert {"torch", "numpy", "python"} <= set(config["versions"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["objectives"]) == {"grpo", "lad", "lad-theory"}
    for metrics in summary["objectives"].values():
        assert set(metrics) == set(SUMMARY_METRICS)
        for value in metrics.values():
            assert set(value) == {"mean", "lo", "hi"} and value["lo"] <= value["mean"] <= value["hi"]
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"objective", "seed", "step", "pass@16", "distinct@4"} <= set(metrics.columns)
    assert len(metrics) == 3 * 3 * 5  # objectives x seeds x logged steps (0, 10, 20, 30, 40)
    policy = pd.read_csv(out / "final_policy.csv")
    sums = policy.groupby(["objective", "seed"]).probability.sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    assert "grpo" in result.output and "modes" in result.output and "wrote" in result.output
    assert f"figure: {out / 'distribution.png'}" in result.output.splitlines()  # on a line of its own
    assert (out / "distribution.png").read_bytes()[:4] == b"\x89PNG"


def test_objective_flag_is_repeatable_and_sampled_mode_runs(tmp_path):
    out = tmp_path / "run"
    result = invoke(["run", "bandit", *SMALL, "-o", "lad", "--objective", "grpo", "--mode", "sampled",
                     "--group-size", "4", "--refresh-every", "5", "--reward", "correct:2,7;p=0.9", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert list(json.loads((out / "summary.json").read_text())["objectives"]) == ["lad", "grpo"]


def test_reward_file_sets_the_number_of_arms(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("0\n1\n0.2\n0.9\n0\n")
    result = invoke(["run", "bandit", "--reward", str(path), "--steps", "5", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["bandit"]["arms"] == 5


def test_same_seed_gives_identical_metrics(tmp_path):
    args = ["run", "bandit", *SMALL, "--mode", "sampled", "--group-size", "4"]
    assert invoke([*args, "--out", str(tmp_path / "a")]).exit_code == 0
    assert invoke([*args, "--out", str(tmp_path / "b")]).exit_code == 0
    a = (tmp_path / "a" / "metrics.csv").read_text()
    assert a == (tmp_path / "b" / "metrics.csv").read_text()
    assert invoke([*args, "--seed", "7", "--out", str(tmp_path / "c")]).exit_code == 0
    assert a != (tmp_path / "c" / "metrics.csv").read_text()


BAD_INPUTS = [
    (["--arms", "1"], "--arms"),
    (["--eta", "0"], "--eta"),
    (["--eta", "-1"], "--eta"),
    (["--lr", "0"], "--lr"),
    (["--steps", "0"], "--steps"),
    (["--div", "foo"], "unknown divergence"),
    (["--objective", "ppo"], "unknown objective"),
    (["--optimizer", "lion"], "unknown optimizer"),
    (["--reward", "mixture:10/3"], "MEAN/WIDTH/HEIGHT"),
    (["--reward", "nope.csv"], "does not exist"),
    (["--mode", "sampled", "--group-size", "1"], "--group-size"),
    (["--mode", "other"], "unknown mode"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["run", "bandit", "--steps", "3", *args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


def test_nan_rewards_in_a_file_are_refused(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("0\nnan\n1\n")
    code, _, err = run_main(["run", "bandit", "--reward", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "NaN or Inf" in err and not (tmp_path / "run").exists()


def test_existing_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_main(["run", "bandit", "--steps", "3", "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite never replaces a directory ladsim did not write
    code, _, err = run_main(["run", "bandit", "--steps", "3", "--out", str(out), "--overwrite"], capsys)
    assert code == 2 and "not a ladsim run directory" in err and (out / "keep.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    assert invoke(["run", "bandit", "--steps", "3", "--arms", "6", "--out", str(ours)]).exit_code == 0
    (ours / "extra.txt").write_text("old")
    result = invoke(["run", "bandit", "--steps", "3", "--arms", "6", "--out", str(ours), "--overwrite"])
    assert result.exit_code == 0 and not (ours / "extra.txt").exists() and (ours / "summary.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours", "run"]  # no temporary or trash left


def test_an_interrupted_run_leaves_no_run_directory(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = trainer.train_objective

    def interrupted(config, objective, on_steps=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(config, objective, on_steps, **kwargs)

    monkeypatch.setattr(trainer, "train_objective", interrupted)
    result = invoke(["run", "bandit", *SMALL, "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and calls["n"] == 2  # the first objective trained, the second interrupted
    assert list(tmp_path.iterdir()) == []


def test_interrupt_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from ladsim.bandit import run as run_module

    def broken_plot(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "draw_run_figure", broken_plot)
    result = invoke(["run", "bandit", *SMALL, "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_flags():
    result = invoke(["run", "bandit", "--help"])
    assert result.exit_code == 0
    for flag in ("--out", "--objective", "--seeds", "--steps", "--eta", "--lr", "--optimizer", "--mode",
                 "--group-size", "--refresh-every", "--reward", "--overwrite", "--div", "--arms"):
        assert flag in result.output


def test_bench_bandit_json(tmp_path):
    path = tmp_path / "bench.json"
    result = invoke(["bench", "bandit", "--seeds", "5", "--steps", "10", "--arms", "8", "--naive-seeds", "1",
                     "--objectives-seeds", "2", "--sizes", "8", "--no-cli", "--json", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert {"vectorized_s", "naive_per_seed_s", "speedup"} <= set(data) and data["speedup"] > 0
    assert "speedup" in result.output
    assert data["max_policy_diff_autograd"] < 1e-12 and data["autograd_s"] > 0
    assert set(data["objectives_s"]) >= {"grpo", "lad", "lad-theory", "entadv", "clip-cov", "kl-cov", "flowrl"}
    assert set(data["sizes"]) == {"8"}
    for probe in data["sizes"].values():
        assert probe["peak_rss_mb"] > 0 and set(probe["ms_per_step"]) == {"grpo", "lad", "lad-theory"}


def test_device_and_threads_flags(tmp_path, capsys):
    import torch

    args = ["run", "bandit", "--arms", "6", "--steps", "4", "--seeds", "2", "--threads", "1"]
    assert invoke([*args, "--device", "cpu", "--out", str(tmp_path / "cpu")]).exit_code == 0
    config = json.loads((tmp_path / "cpu" / "config.json").read_text())["bandit"]
    assert config["device"] == "cpu"
    code, _, err = run_main([*args, "--device", "tpu", "--out", str(tmp_path / "tpu")], capsys)
    assert code == 2 and err.startswith("error: --device") and not (tmp_path / "tpu").exists()
    code, _, err = run_main([*args, "--threads", "0", "--out", str(tmp_path / "zero")], capsys)
    assert code == 2 and err.startswith("error: --threads")
    if not torch.cuda.is_available():
        code, _, err = run_main([*args, "--device", "cuda", "--out", str(tmp_path / "cuda")], capsys)
        assert code == 2 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "cuda").exists()
        code, _, err = run_main(["bench", "bandit", "--device", "cuda", "--no-cli"], capsys)
        assert code == 2 and "CUDA is not available" in err


def test_console_script_runs():
    exe = subprocess.run([sys.executable, "-m", "ladsim.cli", "run", "bandit", "--arms", "1"],
                         capture_output=True, text=True)
    assert exe.returncode == 2 and exe.stderr.strip().startswith("error: --arms")


def test_results_are_readable_by_others(tmp_path):
    import os
    import stat

    from ladsim.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        assert invoke(["run", "bandit", "--arms", "4", "--steps", "2", "--out", str(tmp_path / "run")]).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "run" / "summary.json").stat().st_mode) == 0o644


def test_run_bandit_imports_neither_pandas_nor_matplotlib(tmp_path):
    # the first run's budget (issue 22): pandas and matplotlib cost 0.2 s and 0.4 s to import
    code = ("import json, sys\nsys.argv = ['ladsim', 'run', 'bandit', '--arms', '5', '--steps', '4', '--seeds', '2',"
            " '--log-every', '2', '--out', 'r']\nimport ladsim.cli\ntry:\n    ladsim.cli.main()\nexcept SystemExit:\n"
            "    pass\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    env = {**os.environ, "LADSIM_DEBUG": "1"}  # no fast exit: the child lists its modules after main()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert (tmp_path / "r" / "distribution.png").is_file() and {"torch", "PIL"} <= loaded
    assert not loaded & {"pandas", "matplotlib", "scipy"}, loaded & {"pandas", "matplotlib", "scipy"}


def test_run_files_are_what_the_pandas_frames_write(tmp_path):
    # metrics.csv and final_policy.csv are written without pandas; they hold exactly what the frames of
    # ladsim.train would write, float32 runs (their own shortest digits) and sampled mode included
    from ladsim.bandit.run import final_policy_frame, run

    for dtype, mode in (("float64", "exact"), ("float32", "sampled")):
        config = BanditConfig(arms=7, steps=12, seeds=3, log_every=4, init_std=0.3, dtype=dtype, mode=mode,
                              **({"group_size": 4, "refresh_every": 3} if mode == "sampled" else {}))
        out, summary, result = run(config, tmp_path / dtype)
        reference = trainer.train(config)
        pd.testing.assert_frame_equal(result.metrics, reference.metrics)
        assert (out / "metrics.csv").read_text() == reference.metrics.to_csv(index=False)
        assert (out / "final_policy.csv").read_text() == final_policy_frame(reference).to_csv(index=False)
        assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_write_csv_quotes_and_blanks_as_pandas_does(tmp_path):
    from ladsim.bandit.run import write_csv

    columns = {"a,b": np.array(["x", "y,z", 'q"r', "two\nlines"], dtype=object),
               "v": np.array([1.5, np.nan, 1e-10, 3.0]), "n": np.arange(4),
               "f": np.array([0.1, 0.2, 0.3, 1 / 3], dtype=np.float32)}
    write_csv(tmp_path / "a.csv", columns)
    assert (tmp_path / "a.csv").read_text() == pd.DataFrame(columns).to_csv(index=False)


def test_bench_refuses_no_rounds_of_the_first_run(capsys):
    code, _, err = run_main(["bench", "bandit", "--seeds", "2", "--steps", "2", "--cli-repeats", "0"], capsys)
    assert code == 2 and err.strip().startswith("error:") and "--cli-repeats" in err
    assert len(err.strip().splitlines()) == 1
