"""``ladsim bench prompts``: the many-prompt world's engine, fused against the autograd reference, side by side.

The issue's case, ``P = 256`` prompts of ``N = 64`` answers, ``d = 16`` shared features, 8 seeds, 1000 exact
steps (``pi_old`` frozen), each of:

* ``issue``:         float64, each seed its own random setting (features ``(8, 256, 64, 16)``: 16.8 MB);
* ``float32``:       the same in float32;
* ``shared``:        float64, one setting for every seed, from files (features ``(256, 64, 16)``: 2.1 MB).

Each case and objective runs in a fresh process (its peak resident memory is its own) and times the fused
engine (the fastest of ``RUNS``), the autograd reference on the same settings, and the largest difference of
their final log-policies. The issue's target: 2 s for the fused engine.

Where the time goes (float64, ``issue``, practical LAD, one thread of a 2-core AMD EPYC; 2026-12-03, torch's
profiler over 200 steps): the two products with the per-seed features (the logits, then ``dL/dw``) each read
the 16.8 MB of features, 0.5-1 ms each; the transcendental passes over the ``(8, 256, 64)`` rows (the
log-softmax, JS's log-sigmoid, the two exponentials of the LAD gradient and of the log-softmax backward)
0.25-1 ms each. In float32 both halve.

Measured (``ladsim bench prompts``, 2026-12-03 09:31 UTC, the 2-core AMD EPYC with its other core nearly idle,
load average 0.6-1.2; two threads, the trainer's choice, the fastest of 3): ``issue`` LAD 1.51 s, GRPO 1.45 s
(the 2 s target met); ``float32`` LAD 0.49 s, GRPO 0.59 s; ``shared`` LAD 1.17 s, GRPO 1.13 s; the fused engine
2.6-4.7x faster than autograd. On one thread, or with the other core busy, the ``issue`` case took 2.4-3.4 s.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ladsim.prompts.config import PromptsConfig
from ladsim.prompts.trainer import make_world, train_objective
from ladsim.bandit.trainer import threads_for
from ladsim.resources import check_threads
from ladsim.tree.bench import cpu_name

RUNS = 3
SIZES = dict(prompts=256, arms=64, dim=16, seeds=8, steps=1000)
CASES = {"issue": dict(SIZES), "float32": dict(SIZES, dtype="float32"), "shared": dict(SIZES, files=True)}
TARGET_S = 2.0  # the target for the fused engine


def shared_files(directory: Path, prompts: int, arms: int, dim: int, correct: int = 2) -> dict[str, str]:
    """A setting for every seed as ``.npy`` files in ``directory``: ``{part: path}``, drawn like a random one."""
    rng = np.random.default_rng(0)
    rewards = np.zeros((prompts, arms))
    rewards[np.arange(prompts)[:, None], np.argsort(rng.random((prompts, arms)), -1)[:, :correct]] = 1.0
    arrays = {"base_logits": 2.0 * rng.standard_normal((prompts, arms)),
              "features": rng.standard_normal((prompts, arms, dim)) / np.sqrt(dim), "reward": rewards}
    out = {}
    for part, array in arrays.items():
        np.save(directory / f"{part}.npy", array)
        out[part] = str(directory / f"{part}.npy")
    return out


def time_case(settings: dict, objective: str, runs: int = RUNS, autograd: bool = True,
              threads: int | None = None) -> dict:
    """``{"fused_s", "fused_runs", "autograd_s", "max_policy_diff", ...}`` for one case, in this process, on
    ``threads`` torch threads (``None``: the trainer's choice, ``threads_for``)."""
    settings = dict(settings)
    with tempfile.TemporaryDirectory() as tmp:  # the shared case's files live while it runs
        if settings.pop("files", False):
            settings.update(shared_files(Path(tmp), settings.pop("prompts"), settings.pop("arms"),
                                         settings.pop("dim")))
        config = PromptsConfig(objectives=(objective,), log_every=settings["steps"], **settings)
        world = make_world(config)
        warm_up = config.replace(steps=3, log_every=3)  # the first allocations
        train_objective(warm_up, objective, world=world, threads=threads)
        times, final = [], None
        for _ in range(runs):
            start = time.perf_counter()
            _, final = train_objective(config, objective, world=world, threads=threads)
            times.append(time.perf_counter() - start)
        used = threads if threads is not None else threads_for(config.seeds * world.prompts * world.arms)
        out = {"objective": objective, "settings": settings, "threads": used, "fused_s": min(times),
               "fused_runs": times, "target_s": TARGET_S}
        if autograd:
            start = time.perf_counter()
            _, reference = train_objective(config, objective, world=world, engine="autograd", threads=threads)
            out["autograd_s"] = time.perf_counter() - start
            out["autograd_over_fused"] = out["autograd_s"] / out["fused_s"]
            out["max_policy_diff"] = float(np.abs(final - reference).max())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


def _fresh_process(name: str, objective: str, runs: int, autograd: bool, threads: int | None) -> dict:
    code = ("import json; from ladsim.prompts.bench import CASES, time_case; "
            f"print(json.dumps(time_case(CASES[{name!r}], {objective!r}, {runs}, {autograd}, {threads})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"prompts bench case {name} ({objective}) failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_prompts(cases: tuple[str, ...] = tuple(CASES), objectives: tuple[str, ...] = ("lad", "grpo"),
                  runs: int = RUNS, autograd: bool = True, threads: int | None = None) -> dict:
    """Time ``cases`` x ``objectives`` (each in a fresh process, on ``threads`` torch threads); returns the
    measurements with the date, the machine and the load average."""
    from ladsim.objectives import get_objective

    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; choose from: {', '.join(CASES)}")
    for name in objectives:
        get_objective(name)
    check_threads(threads)
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": cpu_name(), "cpus": os.cpu_count(),
           "threads": threads,
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "cases": {}}
    for name in cases:
        for objective in objectives:
            out["cases"][f"{name}/{objective}"] = {"case": name,
                                                   **_fresh_process(name, objective, runs, autograd, threads)}
    return out
