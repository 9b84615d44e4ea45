"""Ctrl-C during a study on a local Ray cluster the study started: outstanding tasks are cancelled, the cluster
is stopped, no process is left behind, and the runs finished before the interrupt stay cached. (A module of
its own: it starts its own cluster, in a child process, after test_ray_executor's cluster is gone.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ladsim import studies

STUDY = """
[study]
name = "slow"

[base]
arms = 50
mode = "exact"
steps = 20000
seeds = 1
log_every = 1000

[[grid]]
objective = ["grpo", "lad"]
eta = [0.5, 1, 2]
"""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_ctrl_c_cancels_the_tasks_and_stops_the_cluster(tmp_path):
    (tmp_path / "slow.toml").write_text(STUDY)
    code = f"""
        import sys
        import ray
        from ladsim import studies
        study = studies.load_study({str(tmp_path / "slow.toml")!r})
        try:
            studies.run_study(study, {str(tmp_path / "cache")!r}, executor="ray", jobs=1,
                              on_run=lambda run, computed: print("finished", flush=True))
        except KeyboardInterrupt:
            print("interrupted", ray.is_initialized(), flush=True)
            sys.stdin.readline()  # stay alive while the test looks for leftovers (Ray's atexit has not run)
            raise
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "finished"  # the first run is cached; five are outstanding
        family = descendants(child.pid)
        assert family  # the cluster's processes (gcs, raylet, workers) run below the driver
        os.kill(child.pid, signal.SIGINT)
        line = child.stdout.readline().strip()
        assert line == "interrupted False", child.communicate(timeout=60)[1][-2000:]  # the cluster is stopped
        deadline = time.monotonic() + 20  # ray.shutdown has returned; give the kernel a moment to reap
        while any(alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in family if alive(p)]  # while the driver still runs
        _, err = child.communicate("\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    study = studies.load_study(tmp_path / "slow.toml")
    cached = {p.stem for p in (tmp_path / "cache").iterdir()}
    assert 1 <= len(cached) < len(study.runs) and cached <= {r.key for r in study.runs}  # no temp files
