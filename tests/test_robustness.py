"""Robustness (issue 12): bad CLI inputs, bad API calls, unsafe outputs and the numeric range of every loss.

Every bad CLI input must give exit code 2, exactly one line ``error: ...`` on stderr and write nothing; every
bad API call a ``ValueError``/``TypeError`` naming the argument. Outputs: ``--overwrite`` replaces only
directories ladsim wrote, of two concurrent writers exactly one wins, an interrupt (SIGTERM included) leaves no
temporary directory behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_main


ROOT = Path(__file__).resolve().parents[1]
TINY = ["--arms", "6", "--steps", "3", "--seeds", "2", "--log-every", "1"]


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under ``directory`` (hidden ones included) with the bytes of its files."""
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(directory.rglob("*"))}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding a few inputs, the cwd of the command."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "one.csv").write_text("0.5\n")
    (tmp_path / "const.csv").write_text("1\n1\n1\n")
    (tmp_path / "big.csv").write_text("1e308\n-1e308\n0\n")
    np.save(tmp_path / "complex.npy", np.array([1 + 1j, 2, 3]))
    (tmp_path / "garbage.npy").write_bytes(b"this is not numpy at all")
    return tmp_path


# (arguments, a fragment the one-line error must contain)
BAD_CLI = [
    (["run", "bandit", *TINY, "--out", ".", "--overwrite"], "working directory"),
    (["run", "bandit", *TINY, "--out", "", "--overwrite"], "working directory"),
    (["run", "bandit", *TINY, "--out", "..", "--overwrite"], "working directory"),
    (["run", "bandit", *TINY, "--out", "mine", "--overwrite"], "not a ladsim run directory"),
    (["run", "bandit", *TINY, "--out", "mine"], "already exists"),
    (["run", "bandit", *TINY, "--out", "a_file", "--overwrite"], "not a directory"),
    (["run", "bandit", *TINY, "--out", "/dev/null", "--overwrite"], "not a directory"),
    (["run", "bandit", *TINY, "--out", "a_file/run"], "not a directory"),
    (["run", "bandit", *TINY, "--out", "/proc/x/run"], "cannot write"),
    (["run", "bandit", "--arms", "1000000000"], "GiB"),
    (["run", "bandit", "--seeds", "1000000000"], "GiB"),
    (["run", "bandit", "--mode", "sampled", "--group-size", "1000000000"], "GiB"),
    (["run", "bandit", *TINY, "--optimizer", "sgd", "--lr", "300", "-o", "lad", "--div", "neyman", "--eta", "0.01",
      "--out", "r"], "diverged"),
    (["run", "bandit", *TINY, "--lr", "1e308", "--out", "r"], "--lr = 1e+308 is beyond 350"),
    (["run", "bandit", *TINY, "--reward", "mixture:2/3/1e308", "--out", "r"], "reward magnitude"),
    (["run", "bandit", "--steps", "3", "--reward", "big.csv", "--out", "r"], "max - min overflows"),
    (["run", "bandit", *TINY, "--reward", "mixture:"], "nothing after the colon"),
    (["run", "bandit", *TINY, "--reward", "correct:"], "nothing after the colon"),
    (["run", "bandit", *TINY, "--reward", "mixture:2/inf/1"], "width"),
    (["run", "bandit", "--steps", "3", "--arms", "3", "--reward", "correct:0,1,2"], "every one of the 3 arms"),
    (["run", "bandit", "--steps", "3", "--reward", "const.csv"], "all rewards are equal"),
    (["run", "bandit", "--steps", "3", "--reward", "complex.npy"], "complex"),
    (["run", "bandit", "--steps", "3", "--reward", "garbage.npy"], "not a .npy file"),
    (["run", "bandit", "--steps", "3", "--reward", "one.csv"], "reward file one.csv holds 1 value"),
    (["run", "bandit", *TINY, "--prior", "missing.csv"], "prior file missing.csv does not exist"),
    (["run", "bandit", *TINY, "--seed", "99999999999999999999999"], "--seed must be an integer in [0, 2^63)"),
    (["run", "bandit", *TINY, "--seed", "-1"], "--seed must be an integer in [0, 2^63)"),
    (["verify", "--quick", "--seed", "-1"], "--seed must be an integer in [0, 2^63)"),
    (["verify", "--quick", "--only", "lemma31", "--json", "mine"], "is a directory"),
    (["verify", "--quick", "--only", "lemma31", "--json", "a_file/x.json"], "not a directory"),
    (["bench", "bandit", "--seeds", "2", "--steps", "2", "--naive-seeds", "1", "--json", "mine"], "is a directory"),
    (["bench", "bandit", "--seeds", "1000000000"], "GiB"),
    (["bench", "loss", "--vocab", "100000000", "--dim", "100000"], "GiB"),
    (["bench", "loss", "--peak-bandwidth-gbs", "-5"], "--peak-bandwidth-gbs must be"),
    (["bench", "loss", "--tokens", "0"], "--tokens must be a positive integer"),
    (["bench", "loss", "--json", "mine"], "is a directory"),
]


@pytest.mark.filterwarnings("error")  # a warning would be a second line on stderr
@pytest.mark.parametrize("args, message", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_cli_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, args, message):
    before = snapshot(workdir)
    code, _, err = run_main(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert snapshot(workdir) == before


def test_overwrite_replaces_only_ladsim_directories(workdir, capsys):
    code, _, err = run_main(["run", "bandit", *TINY, "--out", "r"], capsys)
    assert code == 0, err
    assert (workdir / "r" / ".ladsim-run").is_file()
    (workdir / "r" / "old.txt").write_text("from an earlier run")
    code, _, err = run_main(["run", "bandit", *TINY, "--out", "r", "--overwrite"], capsys)
    assert code == 0, err
    assert not (workdir / "r" / "old.txt").exists() and (workdir / "r" / "summary.json").is_file()
    assert (workdir / "mine" / "keep.txt").read_text() == "user data"
    assert not [p for p in workdir.iterdir() if p.name.startswith(".")]  # no temporary, trash or lock left


def test_summary_json_is_strict(workdir, capsys):
    code, _, err = run_main(["run", "bandit", *TINY, "--out", "r"], capsys)
    assert code == 0, err
    text = (workdir / "r" / "summary.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_write_json_turns_non_finite_numbers_into_null(tmp_path):
    from ladsim.io import write_json

    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.0], "c": np.float64("-inf")})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.0], "c": None}


def _python(code: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


CLI = "import sys; from ladsim import cli; sys.argv = ['ladsim'] + {args!r}; cli.main()"


def test_two_concurrent_writers_of_one_out_exactly_one_wins(tmp_path):
    args = ["run", "bandit", "--arms", "6", "--steps", "400", "--seeds", "2", "--out", "same"]
    procs = [_python(CLI.format(args=args), tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for c, e in results if c == 2).strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "same" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]
    assert (tmp_path / "same" / "summary.json").is_file() and not (tmp_path / "same" / ".ladsim-lock").exists()


def test_default_run_names_are_unique(tmp_path):
    args = ["run", "bandit", "--arms", "6", "--steps", "5", "--seeds", "2"]
    procs = [_python(CLI.format(args=args), tmp_path) for _ in range(3)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [r[0] for r in results] == [0, 0, 0], results
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 3 and all((r / "summary.json").is_file() for r in runs)


def test_sigterm_while_writing_leaves_no_temporary_directory(tmp_path):
    code = """
        import os, signal, sys
        from ladsim import cli
        from ladsim.bandit import run

        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)

        run.draw_run_figure = killed
        sys.argv = ['ladsim', 'run', 'bandit', '--arms', '6', '--steps', '3', '--seeds', '2', '--out', 'r']
        cli.main()
    """
    proc = _python(code, tmp_path)
    assert proc.wait(timeout=300) == 143, proc.stderr.read()
    assert list(tmp_path.iterdir()) == []


# --- study files ------------------------------------------------------------------------------------

STUDY = """
[study]
name = NAME
frames = ["final"]

[base]
arms = 6
reward = "correct:1,4"
steps = 4
seeds = 2
log_every = 2
EXTRA

[[grid]]
objective = ["grpo", "lad"]
"""

BAD_STUDIES = [
    ({"NAME": '"/tmp/ladsim-victim/x"'}, "plain file-name stem"),
    ({"NAME": '"../../x"'}, "plain file-name stem"),
    ({"NAME": '"a/b"'}, "plain file-name stem"),
    ({"NAME": "5"}, "name must be a string"),
    ({"EXTRA": "seeds = 1.5"}, "--seeds must be an integer"),
    ({"EXTRA": "seed = 1.5"}, "--seed must be an integer"),
    ({"EXTRA": 'mode = "sampled"\ngroup_size = 2.5'}, "--group-size must be an integer"),
    ({"EXTRA": "epochs = 1.5"}, "--epochs must be an integer"),
    ({"EXTRA": "reward = 5"}, "--reward must be a string"),
    ({"EXTRA": "arms = 1000000000"}, "GiB"),
    ({"EXTRA": '[plot]\nbogus = 1'}, "unknown figure 's'"),  # [plot] options need a figure that takes them
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("fill, message", BAD_STUDIES, ids=[str(f) for f, _ in BAD_STUDIES])
def test_bad_study_files_are_refused_when_loaded(workdir, capsys, fill, message):
    text = STUDY.replace("NAME", fill.get("NAME", '"s"'))
    extra = fill.get("EXTRA", "")
    if extra.startswith("seeds") or extra.startswith("arms") or extra.startswith("reward"):  # replace, not repeat
        key = extra.split(" ")[0]
        text = "\n".join(line for line in text.splitlines() if not line.startswith(key + " "))
    text = text.replace("EXTRA", extra)
    (workdir / "s.toml").write_text(text)
    before = snapshot(workdir)
    code, _, err = run_main(["study", "run", "s.toml", "--cache", "cache", "--data", "data", "--jobs", "1"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert snapshot(workdir) == before
    assert not Path("/tmp/ladsim-victim").exists()


def test_unknown_plot_keys_are_refused_at_load(tmp_path):
    from ladsim import studies

    path = tmp_path / "s.toml"
    text = STUDY.replace("NAME", '"s"').replace("EXTRA", "") + "\n[plot]\nnot_an_option = 1\n"
    path.write_text(text.replace("[study]\n", '[study]\nfigure = "eta_sweep"\n'))
    with pytest.raises(ValueError, match=r"unknown \[plot\] key\(s\) \['not_an_option'\] for figure 'eta_sweep'"):
        studies.load_study(path)


def test_a_cache_file_under_another_runs_key_is_recomputed(tmp_path):
    import shutil

    from ladsim import studies

    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace("NAME", '"s"').replace("EXTRA", ""))
    study = studies.load_study(path)
    first = studies.run_study(study, tmp_path / "cache")
    grpo, lad = study.runs
    shutil.copy(studies.cache_path(tmp_path / "cache", grpo.key), studies.cache_path(tmp_path / "cache", lad.key))
    again = studies.run_study(study, tmp_path / "cache")
    assert (again.computed, again.cached) == (1, 1)  # the copied file is not trusted
    assert sorted(again.frames["final"]["objective"].unique()) == ["grpo", "lad"]
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(again.frames["final"], first.frames["final"])


def test_study_data_missing_a_column_is_a_one_line_error(tmp_path):
    from ladsim import studies

    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace("NAME", '"s"').replace("EXTRA", ""))
    study = studies.load_study(path)
    studies.save_data(studies.run_study(study, tmp_path / "cache"), tmp_path / "data")
    csv = studies.data_path(tmp_path / "data", study, "final")
    import pandas as pd

    pd.read_csv(csv).drop(columns=["entropy"]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['entropy'\]"):
        studies.load_data(study, tmp_path / "data")


# --- the Python API ---------------------------------------------------------------------------------

import math  # noqa: E402

import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ladsim.divergences import DIVERGENCES  # noqa: E402
from ladsim.losses import grpo_loss, grpo_terms, lad_loss, lad_terms, lad_theory_loss  # noqa: E402


def _t(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


X = _t(-1.0, -2.0)
BAD_API = [
    (lambda: lad_loss([-1.0, -2.0], X, X, eta=1.0), TypeError, "logp"),
    (lambda: lad_loss(X, 0.5, X, eta=1.0), TypeError, "logp_old"),
    (lambda: grpo_loss(X, X, [1.0, 0.0]), TypeError, "advantages"),
    (lambda: lad_loss(X, X, X, eta=1.0, div=["js"]), TypeError, "div"),
    (lambda: lad_theory_loss(X, X, X, eta=1.0, div=3), TypeError, "div"),
    (lambda: lad_loss(X, X, X, eta="1"), TypeError, "eta"),
    (lambda: lad_loss(X, X, X, eta=float("nan")), ValueError, "eta"),
    (lambda: grpo_loss(X, X, X, eps_low="0.2"), TypeError, "eps_low"),
    (lambda: grpo_terms(X, X, X, eps_high="0.2"), TypeError, "eps_high"),
    (lambda: grpo_loss(X, X, X, eps_low=-0.1), ValueError, "eps_low"),
    (lambda: grpo_loss(X, X, X, eps_high=float("nan")), ValueError, "eps_high"),
    (lambda: grpo_loss(X, X, X, beta=-1.0, logp_ref=X), ValueError, "beta"),
    (lambda: grpo_terms(X, X, X, beta=float("nan"), logp_ref=X), ValueError, "beta"),
    (lambda: lad_loss(X, X, X, eta=1.0, weights=_t(1.5, -0.5)), ValueError, "weights"),
    (lambda: grpo_loss(X, X, X, weights=_t(float("nan"), 1.0)), ValueError, "weights"),
    (lambda: lad_loss(X, X, X, eta=1.0, mask=_t(0.5, 0.5)), ValueError, "mask"),
    (lambda: grpo_loss(X, X, X, mask=_t(1.0, 2.0)), ValueError, "mask"),
    (lambda: lad_theory_loss(X, X, X, eta=1.0, mask=_t(0.5, 1.0)), ValueError, "mask"),
    (lambda: lad_loss(_t(), _t(), _t(), eta=1.0), ValueError, "empty"),
    (lambda: grpo_loss(_t(), _t(), _t()), ValueError, "empty"),
    (lambda: lad_theory_loss(_t(), _t(), _t(), eta=1.0), ValueError, "empty"),
    (lambda: lad_terms(X, X, X, eta=1.0, div="nope"), ValueError, "divergence"),
]


@pytest.mark.parametrize("call, error, name", BAD_API, ids=[f"{i}-{n}" for i, (_, _, n) in enumerate(BAD_API)])
def test_bad_api_calls_raise_naming_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()


def test_double_backward_says_it_is_not_supported():
    logp = _t(-0.5, -1.0).requires_grad_(True)
    loss = lad_loss(logp, _t(-0.7, -0.7), _t(1.0, -1.0), eta=1.0)
    (grad,) = torch.autograd.grad(loss, logp)  # first order works
    assert torch.isfinite(grad).all()
    loss = lad_loss(logp, _t(-0.7, -0.7), _t(1.0, -1.0), eta=1.0)
    with pytest.raises(NotImplementedError, match="double backward"):
        torch.autograd.grad(loss, logp, create_graph=True)


def test_strict_bool_parser():
    from ladsim.validation import parse_bool

    assert [parse_bool(v, "x") for v in ("false", "False", " no", "0", 0, False, "off")] == [False] * 7
    assert [parse_bool(v, "x") for v in ("true", "YES", "1", 1, True, "on")] == [True] * 6
    for bad in ("maybe", "", 2, 0.5, None):
        with pytest.raises(ValueError, match="lad_fused"):
            parse_bool(bad, "lad_fused")


def test_config_types_are_checked():
    from ladsim.bandit.config import BanditConfig

    for field, value, message in (("seeds", 1.5, "--seeds must be an integer"),
                                  ("seed", 1.5, "--seed must be an integer"),
                                  ("epochs", 1.5, "--epochs must be an integer"),
                                  ("reward", 5, "--reward must be a string"),
                                  ("seed", 2**63, "--seed must be an integer in")):
        with pytest.raises(ValueError, match=message):
            BanditConfig(arms=5, steps=2, **{field: value})


def test_mode_coverage_is_unknown_for_a_non_finite_policy():
    from ladsim.bandit.metrics import PolicyMetrics

    target = torch.log_softmax(_t(0.0, 1.0, 0.0, 1.0), -1)
    metrics = PolicyMetrics(target, np.array([0, 1, 0, 1.0]), np.array([0, 1, 0, 1.0]), [[1], [3]])
    log_pi = torch.stack([target, torch.full((4,), float("nan"), dtype=torch.float64)])
    coverage = metrics(log_pi)["mode_coverage"]
    assert coverage[0] == 2 and math.isnan(coverage[1])


# --- numerics over the documented range |log-ratio|, |A/eta| <= 50 ----------------------------------

F32_MAX = float(torch.finfo(torch.float32).max)
DTYPES = [torch.float32, torch.bfloat16, torch.float64]


def _representable(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether a float64 reference fits the accumulation dtype (float32 for float32/bfloat16) with margin."""
    limit = float(torch.finfo(torch.float64).max) / 16 if dtype == torch.float64 else F32_MAX / 16
    return bool(torch.isfinite(x).all() and (x.abs() < limit).all())


LOSSES = {
    "lad_loss": lambda lp, old, a, w, div: lad_loss(lp, old, a, eta=1.0, div=div),
    "lad_loss_weighted": lambda lp, old, a, w, div: lad_loss(lp, old, a, eta=1.0, div=div, weights=w),
    "lad_terms": lambda lp, old, a, w, div: lad_terms(lp, old, a, eta=1.0, div=div).sum(-1),
    "lad_theory_loss": lambda lp, old, a, w, div: lad_theory_loss(lp, old, a, eta=1.0, div=div),
    "grpo_loss": lambda lp, old, a, w, div: grpo_loss(lp, old, a, weights=w),
    "grpo_terms": lambda lp, old, a, w, div: grpo_terms(lp, old, a, eps_low=None, eps_high=None).sum(-1),
}
RANGE = st.floats(-50.0, 50.0, allow_nan=False)


# GRPO has no divergence: it runs once (in the js slot), the LAD losses with every generator.
CASES = [(loss, div) for loss in LOSSES for div in (["js"] if loss.startswith("grpo") else list(DIVERGENCES))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loss, div", CASES)
def test_losses_are_finite_wherever_the_true_value_is_representable(loss, div, dtype):
    fn = LOSSES[loss]

    @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(n=st.integers(1, 5), data=st.data())
    def check(n, data):
        ratio = torch.tensor(data.draw(st.lists(RANGE, min_size=n, max_size=n)), dtype=dtype)
        u = torch.tensor(data.draw(st.lists(RANGE, min_size=n, max_size=n)), dtype=dtype)
        w_logits = torch.tensor(data.draw(st.lists(st.floats(-20, 20), min_size=n, max_size=n)))
        w = torch.softmax(w_logits, -1).to(dtype)
        old = torch.full((n,), -1.0, dtype=dtype)
        lp = (old.double() + ratio.double()).to(dtype)  # log-ratio as drawn (rounded to the dtype)
        results = []
        for d in (dtype, torch.float64):
            x = lp.detach().to(d).clone().requires_grad_(True)
            value = fn(x, old.to(d), u.to(d), w.to(d), div)
            value.backward()
            results.append((value.detach().double(), x.grad.double()))
        (value, grad), (ref_value, ref_grad) = results
        if _representable(ref_value, dtype):
            assert torch.isfinite(value), (loss, div, dtype, lp, u, value, ref_value)
            if _representable(ref_grad, dtype):
                assert torch.isfinite(grad).all(), (loss, div, dtype, lp, u, grad, ref_grad)

    check()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("div", ["pearson", "neyman"])
def test_chi2_theory_loss_at_the_edge_of_the_range(div, dtype):
    """Normalization pushes the perspective's arguments past the inputs' range: log P_pi - log P_A reaches 92
    here (inputs within +-50) while the summand, ~exp(83), fits float32; ``expm1(92)`` alone does not."""
    big, small = [-8.0, 0.0, 0.0], [-50.0, 50.0, 50.0]  # Neyman is Pearson with P_pi and P_A swapped
    ratio, u = (torch.tensor(v, dtype=dtype) for v in ((big, small) if div == "pearson" else (small, big)))
    for d in (dtype, torch.float64):
        x = ratio.detach().to(d).clone().requires_grad_(True)
        loss = lad_theory_loss(x, torch.zeros(3, dtype=d), u.to(d), eta=1.0, div=div)
        loss.backward()
        if d == torch.float64:
            assert _representable(loss.detach(), torch.float32)
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all(), (div, d, loss, x.grad)


def test_weighted_lad_loss_folds_the_weight_into_the_perspective():
    """Pearson at log-ratio 40, u = -10 with pi_old = e^-20: the summand w q (x - 1)^2 ~ e^70 fits float32, the
    unweighted q (x - 1)^2 ~ e^90 does not."""
    w = torch.tensor([math.exp(-20.0), 1.0 - math.exp(-20.0)])
    for dtype in (torch.float32, torch.float64):
        logp = torch.tensor([39.0, -1.0], dtype=dtype, requires_grad=True)
        loss = lad_loss(logp, torch.tensor([-1.0, -1.0], dtype=dtype), torch.tensor([-10.0, 0.0], dtype=dtype),
                        eta=1.0, div="pearson", weights=w.to(dtype))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
        assert math.isclose(loss.item(), math.exp(-20 - 10) * math.expm1(50) ** 2, rel_tol=1e-4)


def test_sequence_ratio_of_a_long_response_is_finite():
    from ladsim.llm.token_loss import lad_token_loss

    B, T = 2, 1000
    logp = torch.full((B, T), -1.0)
    loss = lad_token_loss(logp, logp - 0.5, torch.zeros(B), torch.ones(B, T), ratio="sequence")
    assert torch.isfinite(loss)


def test_sampled_std_mode_reports_the_distance_to_the_target_it_pursues():
    from ladsim.bandit.config import BanditConfig
    from ladsim.bandit.trainer import std_target_log_distribution, target_log_distribution, train

    config = BanditConfig(arms=12, steps=4, seeds=2, log_every=2, mode="sampled", objectives=("lad",))
    spec = config.reward_spec()
    r = spec.expected_rewards()
    sigma = math.sqrt(np.mean(spec.second_moment()) - np.mean(r) ** 2)  # uniform pi_old
    expected = torch.log_softmax(torch.tensor(r / (sigma * config.eta)), -1)
    torch.testing.assert_close(std_target_log_distribution(config), expected)
    assert not torch.allclose(std_target_log_distribution(config), target_log_distribution(config))
    frame = train(config).metrics
    assert {"js_to_target", "js_to_std_target", "tv_to_target", "tv_to_std_target"} <= set(frame.columns)
    assert (frame["js_to_std_target"] != frame["js_to_target"]).all()
    for other in (config.replace(mode="exact"), config.replace(advantage_scale="none")):
        assert std_target_log_distribution(other) is None
        assert "js_to_std_target" not in train(other).metrics.columns


# --- issue 23: the second bad-input round, one table per class -----------------------------------------------
# Every refusal: exit 2, one line `error: ...` naming the cause, nothing written (the snapshot of the working
# directory, hidden files included, is unchanged). RUN is a tiny run that would otherwise succeed.

RUN = ["run", "bandit", "--arms", "4", "--steps", "2", "--seeds", "1", "--out", "r"]


def refused(workdir, capsys, args, message):
    """Run ``ladsim ARGS``; assert exit 2, one line holding ``message``, and nothing written."""
    before = snapshot(workdir)
    code, _, err = run_main(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert snapshot(workdir) == before


def accepted(workdir, capsys, args):
    """Run ``ladsim ARGS``; assert exit 0 and a complete run directory ``r``."""
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert {"config.json", "summary.json", "metrics.csv", "final_policy.csv", ".ladsim-run"} <= {
        p.name for p in (workdir / "r").iterdir()}
    return json.loads((workdir / "r" / "config.json").read_text())


# Class 1: a setting that does nothing is refused, naming why; a default merely restated is accepted.
INERT_CLI = [
    (["--mode", "exact", "--group-size", "5"], "--group-size 5 does nothing in this run: it acts only with --mode"),
    (["--epochs", "3"], "--epochs 3 does nothing"),
    (["--advantage-scale", "none"], "--advantage-scale none does nothing"),
    (["--kl-beta", "5"], "--kl-beta 5.0 does nothing in this run: it acts only with --kl"),
    (["-o", "lad", "-o", "kl-cov", "--clip", "0.2"], "--clip 0.2 does nothing in this run: it acts only on objectives "
                                                     "that clip"),
    (["-o", "grpo", "--set", "grpo.eps_low=0.1", "--set", "grpo.eps_high=0.3", "--clip", "0.2"], "--clip 0.2"),
    (["-o", "grpo", "-o", "kl-cov", "--div", "hd"], "--div hd does nothing"),
    (["-o", "lad", "--set", "lad.div=kl", "--div", "hd"], "--div hd does nothing"),
    (["--seed", "3"], "--seed 3 does nothing in this run: it acts only where something is drawn"),
    (["-o", "grpo", "--set", "flowrl.beta=5"], "flowrl is not among the objectives trained"),
]
INERT_RESTATED = [
    ["--mode", "exact", "--group-size", "16", "--epochs", "1", "--advantage-scale", "std", "--kl-beta", "0.001"],
    ["-o", "grpo", "--div", "js", "--seed", "0"],
    ["--mode", "sampled", "--group-size", "3", "--epochs", "2", "--advantage-scale", "none", "--seed", "3"],
    ["--kl", "k2", "--kl-beta", "5", "--init-std", "0.1", "--seed", "4"],
    ["-o", "lad", "-o", "flowrl", "--clip", "0.2"],  # flowrl's weight clip takes it
    ["-o", "clip-cov", "--set", "clip-cov.eps_low=0.1", "--clip", "0.2"],  # eps_high still comes from --clip
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("args, message", INERT_CLI, ids=[" ".join(a) for a, _ in INERT_CLI])
def test_class1_a_setting_that_does_nothing_is_refused(workdir, capsys, args, message):
    refused(workdir, capsys, RUN + args, message)


@pytest.mark.parametrize("args", INERT_RESTATED, ids=[" ".join(a) for a in INERT_RESTATED])
def test_class1_a_restated_default_or_a_setting_that_acts_is_accepted(workdir, capsys, args):
    accepted(workdir, capsys, RUN + args)


def test_class1_the_python_api_refuses_what_does_nothing_and_accepts_restated_defaults():
    from ladsim.bandit.config import BanditConfig

    tiny = dict(arms=4, steps=2, seeds=1)
    for changes, message in [(dict(group_size=5), "--group-size 5"), (dict(kl_beta=0.5), "--kl-beta"),
                             (dict(objectives=("lad",), clip=0.2), "--clip"), (dict(seed=1), "--seed 1"),
                             (dict(objectives=("grpo",), params={"lad": {"eta": 1.0}}), "lad is not among")]:
        with pytest.raises(ValueError, match=message):
            BanditConfig(**tiny, **changes)
    BanditConfig(**tiny, group_size=16, kl_beta=0.001, epochs=1, advantage_scale="std", seed=0, clip=None)


INERT_STUDIES = [
    ('group_size = 4\n', "run grpo: --group-size 4 does nothing"),
    ('kl_beta = 0.5\n', "--kl-beta 0.5 does nothing"),
    ('"flowrl.beta" = 5.0\n', "no run of the study trains flowrl"),
    ('eta = 2.0\n', None),  # accepted: it acts
]


@pytest.mark.parametrize("extra, message", INERT_STUDIES, ids=[e.strip() for e, _ in INERT_STUDIES])
def test_class1_study_files_refuse_what_does_nothing(tmp_path, extra, message):
    from ladsim.studies import load_study

    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace("NAME", '"s"').replace("EXTRA", extra))
    if message is None:
        assert len(load_study(path).runs) == 2
        return
    with pytest.raises(ValueError, match=message):
        load_study(path)


def test_class1_a_base_setting_every_grid_block_overrides_is_refused(tmp_path):
    from ladsim.studies import load_study

    path = tmp_path / "s.toml"
    text = STUDY.replace("NAME", '"s"').replace("EXTRA", "eta = 1.0")
    text = text.replace('objective = ["grpo", "lad"]', 'objective = ["lad"]\neta = [0.5, 2.0]')
    path.write_text(text)
    with pytest.raises(ValueError, match=r"\[base\] eta does nothing: every \[\[grid\]\] block sets 'eta'"):
        load_study(path)
    path.write_text(text + '\n[[grid]]\nobjective = ["grpo"]\n')  # a second block that keeps the base eta
    assert len(load_study(path).runs) == 3


# Class 2: input that can be read two ways is refused, naming what is ambiguous.
AMBIGUOUS_FILES = {
    "twice.csv": "reward,reward\n1,1\n0,0\n",
    "cased.csv": "Reward, reward \n1,1\n0,0\n",
    "extra.csv": "seed,reward\n0,1\n0,0\n",
    "policy.csv": "arm,reward\n0,1\n1,0\n0,1\n1,0\n",
    "gap.csv": "arm,reward\n0,1\n2,0\n",
    "grid.csv": "1,0\n0,1\n",
    "blank.csv": "1\n\n0\n",
    "hole.csv": "1,,0\n",
    "ragged.csv": "1,0\n1\n",
    "arabic.csv": "\u0661\n0\n",
    "underscore.csv": "1_000\n0\n",
    "bigint.csv": "9007199254740993\n0\n",
    "header.csv": "reward\n",
}
AMBIGUOUS = [
    (["--reward", "correct:1;p=0.5;p=0.9"], "the correct-set option p is given twice"),
    (["--reward", "correct:1,,2"], "no empty entries"),
    (["--set", "grpo.eps_low=0.1", "--set", "grpo.eps_low=0.2"], "--set grpo.eps_low is given twice"),
    (["--reward", "twice.csv"], "column 'reward' appears 2 times"),
    (["--reward", "cased.csv"], "column 'reward' appears 2 times"),
    (["--reward", "extra.csv"], "column 'seed' is not one ladsim reads"),
    (["--reward", "policy.csv"], "arm(s) [0.0, 1.0] appear more than once"),
    (["--reward", "gap.csv"], "the arm column must name every arm 0..1 exactly once"),
    (["--reward", "grid.csv"], "which numbers are the arms' is ambiguous"),
    (["--reward", "blank.csv"], "line 2 is blank between values"),
    (["--reward", "hole.csv"], "cell 2 is empty"),
    (["--reward", "ragged.csv"], "line 2 has 1 cells where the first line has 2"),
    (["--reward", "arabic.csv"], "is not a number (ASCII digits)"),
    (["--reward", "underscore.csv"], "'1_000' is not a number"),
    (["--reward", "bigint.csv"], "beyond 2^53"),
    (["--reward", "bigint.npy"], "integers beyond 2^53"),
    (["--reward", "header.csv"], "holds a header and no values"),
    (["--reward", "grid.csv", "--arms", "3"], "which numbers are the arms'"),
    (["--reward", "three.npy", "--arms", "5"], "has 3 rewards but --arms is 5"),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("args, message", AMBIGUOUS, ids=[" ".join(a) for a, _ in AMBIGUOUS])
def test_class2_input_that_reads_two_ways_is_refused(workdir, capsys, args, message):
    for name, text in AMBIGUOUS_FILES.items():
        (workdir / name).write_text(text, encoding="utf-8")
    np.save(workdir / "bigint.npy", np.array([2**62, 0], dtype=np.int64))
    np.save(workdir / "three.npy", np.array([0.0, 1.0, 0.5]))
    run = [a for a in RUN if a not in ("--arms", "4")] if "--reward" in args and "--arms" not in args else RUN
    refused(workdir, capsys, run + args, message)


def test_class2_an_arm_column_orders_the_rewards_and_a_header_is_case_blind(workdir, capsys):
    (workdir / "arms.csv").write_text("Arm , REWARD\n2,0\n0,1\n1,0.5\n")
    config = accepted(workdir, capsys, [a for a in RUN if a not in ("--arms", "4")] + ["--reward", "arms.csv"])
    assert config["reward_spec"]["values"] == [1.0, 0.5, 0.0]


# Class 3: valid combinations are accepted; every constraint is checked on the final values.
VALID = [
    ["-o", "clip-cov", "--set", "clip-cov.lb=6", "--set", "clip-cov.ub=10"],
    ["-o", "clip-cov", "--set", "clip-cov.ub=10", "--set", "clip-cov.lb=6"],
    ["--reward", "correct;p=0.9"],  # the default correct arms with an option, as the README writes it
    ["--reward", "correct:1,2;q=0.1;p=0.9"],
    ["--device", "cpu:0"],
]


@pytest.mark.parametrize("args", VALID, ids=[" ".join(a) for a in VALID])
def test_class3_valid_combinations_are_accepted(workdir, capsys, args):
    accepted(workdir, capsys, RUN + args)


def test_class3_the_api_and_study_files_check_the_final_parameters(tmp_path):
    from ladsim.bandit.config import BanditConfig
    from ladsim.objectives import parse_assignments
    from ladsim.studies import load_study

    config = BanditConfig(arms=4, steps=2, objectives=("clip-cov",), params={"clip-cov": {"lb": 6, "ub": 10}})
    assert (config.objective_params("clip-cov").lb, config.objective_params("clip-cov").ub) == (6.0, 10.0)
    assert parse_assignments(["clip-cov.lb=6", "clip-cov.ub=10"]) == {"clip-cov": {"lb": "6", "ub": "10"}}
    with pytest.raises(ValueError, match="lb must be < ub, got lb=6.0, ub=5.0"):  # lb alone still fails
        parse_assignments(["clip-cov.lb=6"])
    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace("NAME", '"s"').replace("EXTRA", '"clip-cov.lb" = 6\n"clip-cov.ub" = 10')
                    .replace('objective = ["grpo", "lad"]', 'objective = ["clip-cov", "grpo"]'))
    runs = load_study(path).runs
    assert [r.config.params for r in runs] == [{"clip-cov": {"lb": 6.0, "ub": 10.0}}, {}]  # each its own


# Class 4: odd devices and thread counts are one line; any failure releases what the run claimed.
CLAIMS = [
    (["--device", "cpu:99999999999999999999"], "--device must be cpu, cuda or cuda:K"),
    (["--device", "cuda:\u0661"], "--device must be cpu, cuda or cuda:K"),
    (["--device", "cuda:01"], "--device must be"),
    (["--device", "CPU"], "--device must be"),
    (["--device", "cpu:1"], "--device must be"),
    (["--threads", "100000"], "--threads must be an integer in [1, "),
    (["--threads", "0"], "--threads must be an integer in [1, "),
    (["--arms", "abc"], "Invalid value for '--arms'"),  # click's own errors are one line too
    (["--bogus"], "No such option: --bogus"),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("args, message", CLAIMS, ids=[" ".join(a) for a, _ in CLAIMS])
def test_class4_odd_devices_and_threads_are_one_line(workdir, capsys, args, message):
    refused(workdir, capsys, RUN + args, message)


def test_class4_cuda_index_beyond_the_machine_is_one_line():
    import torch

    from ladsim.bandit.trainer import resolve_device

    message = "CUDA is not available" if not torch.cuda.is_available() else "CUDA device"
    with pytest.raises(ValueError, match=message):
        resolve_device("cuda:9999")


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt(), MemoryError()])
def test_class4_an_unforeseen_failure_releases_the_claim_and_its_parents(workdir, capsys, monkeypatch, failure):
    from ladsim.bandit import run as run_module

    def fail(*args, **kwargs):
        raise failure

    train = run_module.train_arrays
    monkeypatch.setattr(run_module, "train_arrays", fail)
    before = snapshot(workdir)
    code, _, err = run_main([*RUN[:-1], "deep/er/r"], capsys)
    lines = err.strip().splitlines()
    assert code == {RuntimeError: 1, KeyboardInterrupt: 130, MemoryError: 2}[type(failure)], err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert snapshot(workdir) == before  # no deep/, no deep/er/, no r, no lock, no temporary directory
    monkeypatch.setattr(run_module, "train_arrays", train)
    accepted(workdir, capsys, RUN)  # the next run to the same --out proceeds


def test_class4_a_run_killed_where_python_cannot_clean_up_leaves_a_claim_the_next_run_takes_over(tmp_path):
    # os._exit is what libgomp's "Out of memory" did (a C exit: no finally, no atexit): the claimed --out and its
    # temporary directory stay behind, but the lock's flock dies with the process.
    code = """
        import os
        from ladsim.io import claimed_dir
        with claimed_dir("r") as claim:
            (claim.tmp / "half.csv").write_text("1,2")
            os._exit(1)
    """
    proc = _python(code, tmp_path)
    assert proc.wait(timeout=120) == 1, proc.stderr.read()
    assert (tmp_path / "r" / ".ladsim-lock").is_file() and len(list(tmp_path.glob(".r.*.tmp"))) == 1
    args = ["run", "bandit", "--arms", "4", "--steps", "2", "--seeds", "1", "--out", "r"]
    proc = _python(CLI.format(args=args), tmp_path)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # the dead run's temporary directory is gone
    assert (tmp_path / "r" / "summary.json").is_file() and not (tmp_path / "r" / ".ladsim-lock").exists()


def test_class4_a_live_claim_is_not_taken_over(tmp_path):
    from ladsim.io import OutputError, claimed_dir

    with claimed_dir(tmp_path / "r") as claim:
        with pytest.raises(OutputError, match="another ladsim process is writing"):
            with claimed_dir(tmp_path / "r"):
                pass
        (claim.tmp / "x").write_text("ok")
    assert (tmp_path / "r" / "x").read_text() == "ok"


# Class 5: finite but absurd magnitudes are refused with the range of the run's dtype.
MAGNITUDES = [
    (["--reward", "huge.csv"], "reward magnitude |R| = 1e+300 is beyond 1e+150"),
    (["--reward", "int64.npy"], "integers beyond 2^53"),
    (["--reward", "int64.csv", "--dtype", "float32"], "reward magnitude |R| = 9.22e+18 is beyond 1e+18"),
    (["--reward", "offset.csv", "--dtype", "float32"], "max|R| / span(R) = 1e+05 is beyond 10000"),
    (["--reward", "big32.csv", "--dtype", "float32"], "reward magnitude |R| = 1e+20 is beyond 1e+18"),
    (["--init-std", "1e200"], "--init-std = 1e+200 is beyond 50"),
    (["--init-std", "10", "--dtype", "float32"], "--init-std = 10 is beyond 8"),
    (["--kl", "k2", "--kl-beta", "1e308"], "--kl-beta = 1e+308 is beyond 1e+150"),
    (["--entropy-coef", "1e300"], "--entropy-coef = 1e+300 is beyond 1e+150"),
    (["--lr", "1000"], "--lr = 1e+03 is beyond 350"),
    (["--eta", "1e-200"], "max|A| / eta"),
    (["--eta", "1e-200", "-o", "grpo"], "the target (reward span"),
    (["-o", "lad", "--div", "neyman", "--eta", "0.004"], "LAD with the neyman divergence"),
    (["-o", "lad", "--div", "neyman", "--eta", "0.02", "--dtype", "float32"], "beyond 30"),
    (["-o", "lad", "--mode", "sampled", "--group-size", "16", "--div", "neyman", "--eta", "0.01"],
     "std-scaled groups of 16"),
    (["--prior", "tiny.csv", "--dtype", "float32"], "largest / smallest probability"),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("args, message", MAGNITUDES, ids=[" ".join(a) for a, _ in MAGNITUDES])
def test_class5_absurd_magnitudes_are_refused(workdir, capsys, args, message):
    (workdir / "huge.csv").write_text("1e300\n0\n0.5\n1\n")
    np.save(workdir / "int64.npy", np.array([-2**63, 2**63 - 1, 0, 1], dtype=np.int64))
    (workdir / "int64.csv").write_text("-9.223372036854775808e18\n9.223372036854775807e18\n0\n1\n")
    (workdir / "offset.csv").write_text("100000\n100001\n100000\n100000\n")
    (workdir / "big32.csv").write_text("1e20\n0\n0\n0\n")
    (workdir / "tiny.csv").write_text("1\n1\n1\n1e-40\n")
    refused(workdir, capsys, RUN + args, message)


AT_THE_BOUNDS = [
    ["--init-std", "50"],
    ["--init-std", "8", "--dtype", "float32"],
    ["--kl", "k3", "--kl-beta", "1e150"],
    ["-o", "lad", "--div", "neyman", "--eta", "0.005"],  # max|A| / eta = 1 / 0.005 = 200, neyman's bound
    ["--reward", "offset.csv"],  # 1e5 / 1 is well inside float64's 1e12
]


@pytest.mark.parametrize("args", AT_THE_BOUNDS, ids=[" ".join(a) for a in AT_THE_BOUNDS])
def test_class5_values_at_the_bounds_train(workdir, capsys, args):
    (workdir / "offset.csv").write_text("100000\n100001\n100000\n100000\n")
    accepted(workdir, capsys, RUN + args)


def test_class5_every_bound_is_sharp():
    from ladsim.ranges import EXPONENT_LIMITS, RANGES, check_exponent, check_range

    for name, entry in RANGES.items():
        for dtype, high in entry.high.items():
            check_range(name, high, dtype)
            with pytest.raises(ValueError, match=re.escape(f"beyond {high:g}")):
                check_range(name, high * 1.01, dtype)
    for dtype, limits in EXPONENT_LIMITS.items():
        for div, high in limits.items():
            check_exponent(high, div, dtype, "x")
            with pytest.raises(ValueError, match=re.escape(f"beyond {high:g}")):
                check_exponent(high * 1.01, div, dtype, "x")


def test_class5_the_documented_table_is_the_code():
    from ladsim.ranges import range_rows

    text = (ROOT / "docs" / "ranges.md").read_text()
    for setting, f64, f32 in range_rows():
        assert f"| {setting} | {f64} | {f32} |" in text, setting


# Class 6: a failed run leaves no directory it created; --overwrite trusts only ladsim's own marker.
def test_class6_a_diverged_run_leaves_no_parent_it_created(workdir, capsys):
    args = ["run", "bandit", *TINY, "--optimizer", "sgd", "--lr", "300", "-o", "lad", "--div", "neyman", "--eta",
            "0.01", "--out", "a/b/c"]
    refused(workdir, capsys, args, "diverged")
    assert not (workdir / "a").exists()


def test_class6_an_existing_parent_is_kept_and_only_new_ones_go(workdir, capsys):
    (workdir / "a").mkdir()
    args = ["run", "bandit", *TINY, "--optimizer", "sgd", "--lr", "300", "-o", "lad", "--div", "neyman", "--eta",
            "0.01", "--out", "a/b/c"]
    refused(workdir, capsys, args, "diverged")
    assert (workdir / "a").is_dir() and list((workdir / "a").iterdir()) == []


@pytest.mark.parametrize("forge", ["symlink", "other text", "directory", "hard link", "empty"])
def test_class6_overwrite_trusts_only_a_marker_ladsim_wrote(workdir, capsys, forge):
    from ladsim.io import MARKER_TEXT

    accepted(workdir, capsys, RUN)  # r/ holds a true marker
    mine = workdir / "mine"
    marker = mine / ".ladsim-run"
    if forge == "symlink":
        marker.symlink_to(workdir / "r" / ".ladsim-run")
    elif forge == "other text":
        marker.write_text("my own notes\n")
    elif forge == "directory":
        marker.mkdir()
    elif forge == "hard link":
        os.link(workdir / "r" / ".ladsim-run", marker)
    else:
        marker.write_text("")
    assert (workdir / "r" / ".ladsim-run").read_text() == MARKER_TEXT
    refused(workdir, capsys, [*RUN[:-1], "mine", "--overwrite"], "not a ladsim run directory")
    assert (mine / "keep.txt").read_text() == "user data"


def test_class6_atomic_file_removes_the_parents_it_created(tmp_path):
    from ladsim.io import atomic_file

    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a" / "b" / "x.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("failed while writing")
    assert list(tmp_path.iterdir()) == []
