"""``ladsim bench tree``: the token tree's engine, fused against the autograd reference, timed side by side.

Three cases (the tree issue's targets), practical LAD with per-token ratios and verl's token-mean:

* ``small``:   ``V = 4, L = 5`` (364 responses), 8 seeds, 2000 exact steps;
* ``large``:   ``V = 8, L = 6`` (137,257 responses), 2 seeds, 200 exact steps, in a fresh process whose peak
  resident memory is reported (and, beside it, the memory the run's own estimate allowed);
* ``sampled``: ``V = 4, L = 5``, 8 seeds, 2000 steps, groups of ``G = 16`` responses, ``pi_old`` refreshed every
  step (on-policy).

Every case times the fused engine (the fastest of ``RUNS``, as the bandit's bench) and the autograd reference on
the same settings in the same process, and the two final policies' largest difference.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

from ladsim.tree.config import TreeConfig, estimate_memory_bytes
from ladsim.tree.trainer import make_world, train_objective

RUNS = 3
CASES = {
    "small": dict(vocab=4, length=5, seeds=8, steps=2000),
    "large": dict(vocab=8, length=6, seeds=2, steps=200),
    "sampled": dict(vocab=4, length=5, seeds=8, steps=2000, mode="sampled", group_size=16, refresh_every=1),
}
TARGETS_S = {"small": 0.5, "large": 10.0}  # the tree issue's targets for the fused engine


def time_case(settings: dict, runs: int = RUNS, autograd: bool = True) -> dict:
    """``{"fused_s", "fused_runs", "autograd_s", "max_policy_diff", ...}`` for one case, in this process."""
    config = TreeConfig(objectives=("lad",), log_every=settings["steps"], **settings)
    world = make_world(config)
    train_objective(config.replace(steps=3, log_every=3), "lad", world=world)  # warm-up: first allocations
    times, final = [], None
    for _ in range(runs):
        start = time.perf_counter()
        _, final = train_objective(config, "lad", world=world)
        times.append(time.perf_counter() - start)
    out = {"settings": settings, "responses": config.tree().n_responses, "tokens": config.tree().n_tokens,
           "fused_s": min(times), "fused_runs": times}
    if autograd:
        start = time.perf_counter()
        _, reference = train_objective(config, "lad", world=world, engine="autograd")
        out["autograd_s"] = time.perf_counter() - start
        out["autograd_over_fused"] = out["autograd_s"] / out["fused_s"]
        out["max_policy_diff"] = float(np.abs(final - reference).max())
    out["estimated_memory_mb"] = estimate_memory_bytes(config) / 2**20
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


def cpu_name() -> str:
    """The CPU's model name as ``/proc/cpuinfo`` gives it (else the architecture)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _fresh_process(name: str, runs: int, autograd: bool) -> dict:
    code = ("import json; from ladsim.tree.bench import CASES, time_case; "
            f"print(json.dumps(time_case(CASES[{name!r}], {runs}, {autograd})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tree bench case {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_tree(cases: tuple[str, ...] = tuple(CASES), runs: int = RUNS, autograd: bool = True) -> dict:
    """Time ``cases`` (each in a fresh process, so that its peak memory is its own); returns the measurements
    with the date, the machine and the load average."""
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; choose from: {', '.join(CASES)}")
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": cpu_name(),
           "cpus": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
           "cases": {}}
    for name in cases:
        out["cases"][name] = _fresh_process(name, runs, autograd)
        if name in TARGETS_S:
            out["cases"][name]["target_s"] = TARGETS_S[name]
    return out
