"""CI theory checks: `ladsim verify --quick` must pass, in process and through the installed CLI."""

import json
import subprocess
import sys
from pathlib import Path

from ladsim.theory.report import NAMES, run_checks


def test_quick_verify_in_process():
    results = run_checks(seed=0, quick=True)
    assert [r.name for r in results] == NAMES
    failed = [(r.name, r.failures) for r in results if not r.passed]
    assert not failed, failed


def test_quick_verify_cli_writes_json_and_report(tmp_path):
    exe = Path(sys.executable).with_name("ladsim")
    out, md = tmp_path / "verify.json", tmp_path / "report.md"
    proc = subprocess.run([str(exe), "verify", "--quick", "--seed", "1", "--json", str(out), "--report", str(md),
                           "--only", "gradient", "--only", "lemma32_tv"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["passed"] is True
    assert {c["name"] for c in data["checks"]} == {"gradient", "lemma32_tv"}
    for c in data["checks"]:
        assert {"name", "passed", "worst_error", "tolerance", "instances"} <= set(c)
    assert "| `gradient` |" in md.read_text()
    assert "pass" in proc.stdout


def test_cli_unknown_check_is_a_one_line_error():
    exe = Path(sys.executable).with_name("ladsim")
    proc = subprocess.run([str(exe), "verify", "--quick", "--only", "nope"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown check 'nope'")


def test_cli_only_selects_the_facts_checks_and_json_has_the_kl_table(tmp_path):
    exe = Path(sys.executable).with_name("ladsim")
    out = tmp_path / "verify.json"
    proc = subprocess.run([str(exe), "verify", "--quick", "--json", str(out), "--only", "kl_estimators",
                           "--only", "entropy_covariance"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(out.read_text())["checks"]}
    assert set(checks) == {"kl_estimators", "entropy_covariance"}
    rows = checks["kl_estimators"]["table"]
    assert {(r["mu"], r["estimator"]) for r in rows} == {(mu, k) for mu in (0.1, 1.0) for k in ("k1", "k2", "k3")}
    assert all({"true_kl", "bias_over_kl", "std_over_kl"} <= set(r) for r in rows)
