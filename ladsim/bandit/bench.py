"""``ladsim bench bandit``: the vectorized engine against a naive per-seed loop, timed side by side in one run.

The naive baseline is what a paper script does: one seed at a time, a ``(N,)`` logit vector, the same loss core
and optimizer, 4000 Python-level steps per seed. It is timed on a few seeds and scaled to the full seed count
(its cost is linear in seeds); the vectorized engine trains every seed in one ``(S, N)`` computation.

Beside it, in the same run: the fused engine (the default) against the autograd reference on the same batch,
every objective at 8 seeds (the fastest of three runs), the time per step and peak memory at N in {50, 4096,
151936} (each size in a fresh process, so that its peak resident memory is its own), and the wall time of CLI
commands (``--help``, the default 50-arm run, a 151,936-arm run with its figure) as a user sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import (exact_advantages, log_prior, make_optimizer, threads_for, torch_dtype,
                                   train_objective)
from ladsim.losses import lad_loss
from ladsim.objectives import list_objectives

SIZES = (50, 4096, 151936)  # arms: the paper's bandit, a small vocabulary, Qwen's vocabulary
OBJECTIVE_RUNS = 3  # timed runs of the fused engine per objective (the fastest is reported)
CLI_RUNS = {  # the commands whose wall time the bench reports, as a user types them
    "help": ["--help"],
    "run_bandit_50": ["run", "bandit", "--arms", "50", "--div", "js"],
    "run_bandit_151936": ["run", "bandit", "--arms", "151936", "--steps", "200", "--seeds", "2"],
}


def naive_single_seed(config: BanditConfig) -> torch.Tensor:
    """Practical LAD, exact mode, frozen ``pi_old``, for one seed, written plainly. Returns the policy ``(N,)``."""
    rewards = torch.tensor(config.reward_spec().expected_rewards(), dtype=torch_dtype(config))
    logp_old = log_prior(config)
    weights = logp_old.exp()
    advantages = exact_advantages(rewards, logp_old[None])[0]
    theta = logp_old.clone().requires_grad_(True)
    opt = make_optimizer(theta, config)
    for _ in range(config.steps):
        loss = lad_loss(torch.log_softmax(theta, -1), logp_old, advantages, eta=config.eta, div=config.div,
                        weights=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return torch.softmax(theta.detach(), -1)


def bench_bandit(seeds: int = 1000, steps: int = 4000, arms: int = 50, naive_seeds: int = 3,
                 div: str = "js", dtype: str = "float64", device: str = "cpu", threads: int | None = None,
                 objectives_seeds: int = 8, sizes: tuple[int, ...] = SIZES, size_seeds: int = 2,
                 size_steps: int = 20, cli: bool = True, autograd: bool = True) -> dict:
    """Time the engines side by side; returns ``{"vectorized_s", "naive_per_seed_s", "speedup", ...}``.

    ``vectorized_s`` is the default (fused) engine on ``seeds x steps x arms``; ``autograd_s`` the autograd
    reference on the same batch (``autograd=False`` skips it). ``naive_per_seed_s`` is the naive loop's time for
    all ``seeds`` seeds, scaled from ``naive_seeds`` timed runs; ``naive_one_seed_s`` is its measured mean time
    for one seed. ``objectives_s``: every registered objective at ``objectives_seeds`` seeds (fused, the fastest
    of ``OBJECTIVE_RUNS`` runs, and autograd for the ratio). ``sizes``: per number of arms, ms per step and peak
    memory of ``size_seeds`` seeds (fused, all objectives of the paper's figure), each in a fresh process.
    ``cli``: wall times of ``ladsim --help``, ``ladsim run bandit --arms 50 --div js`` and ``ladsim run bandit
    --arms 151936 --steps 200 --seeds 2`` in subprocesses, everything included.
    """
    if seeds < 1 or steps < 1 or naive_seeds < 1:
        raise ValueError("--seeds, --steps and --naive-seeds must be >= 1")
    config = BanditConfig(arms=arms, seeds=seeds, steps=steps, objectives=("lad",), div=div, log_every=steps,
                          dtype=dtype, device=device)
    # Warm up both paths briefly (first-call allocations, lazy imports) so neither pays them in the timing.
    train_objective(config.replace(steps=10, log_every=10), "lad", threads=threads)
    naive_single_seed(config.replace(steps=10, seeds=1))

    start = time.perf_counter()
    vectorized_policy = train_objective(config, "lad", threads=threads)[1]
    vectorized_s = time.perf_counter() - start
    autograd_s = None
    if autograd:
        start = time.perf_counter()
        autograd_policy = train_objective(config, "lad", engine="autograd", threads=threads)[1]
        autograd_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(naive_seeds):
        naive_policy = naive_single_seed(config.replace(seeds=1))
    naive_one = (time.perf_counter() - start) / naive_seeds
    # Same maths, so the same policy (the engines differ only in batching and in how the gradient is taken).
    max_policy_diff = float((torch.as_tensor(vectorized_policy[0]) - naive_policy).abs().max())
    naive_total = naive_one * seeds
    result = {
        "seeds": seeds, "steps": steps, "arms": arms, "div": div, "dtype": dtype, "naive_seeds_timed": naive_seeds,
        "threads": threads if threads is not None else threads_for(seeds * arms),  # what train_objective used
        "vectorized_s": vectorized_s,
        "naive_one_seed_s": naive_one,
        "naive_per_seed_s": naive_total,
        "speedup": naive_total / vectorized_s,
        "max_policy_diff": max_policy_diff,
        "engine": "fused",
        "device": device,
        "autograd_s": autograd_s,
        "fused_over_autograd": None if autograd_s is None else autograd_s / vectorized_s,
        "max_policy_diff_autograd": None if autograd_s is None
        else float(abs(autograd_policy - vectorized_policy).max()),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if objectives_seeds:
        result["objectives_seeds"] = objectives_seeds
        result["objectives_s"] = _time_objectives(config.replace(seeds=objectives_seeds), threads, autograd)
    if sizes:
        result["sizes"] = {str(n): _measure_size(n, size_seeds, size_steps, dtype, device) for n in sizes}
    if cli:
        result["cli_s"] = _time_cli(device)
        result["cli_commands"] = {name: " ".join(["ladsim", *args]) for name, args in CLI_RUNS.items()}
    return result


def _time_objectives(config: BanditConfig, threads: int | None, autograd: bool) -> dict[str, dict]:
    """``{objective: {"fused": s, "fused_runs": [s, ...], "autograd": s}}`` for ``config`` (exact mode, frozen
    pi_old). A run of 8 seeds takes about 0.1 s, where another process's time slice is a few percent of it, so
    the fused engine is timed ``OBJECTIVE_RUNS`` times and ``fused`` is the fastest run (timeit's convention:
    the least disturbed one); every run is kept in ``fused_runs``. The autograd reference, five times slower,
    is timed once."""
    out = {}
    for name in list_objectives():
        run = config.replace(objectives=(name,))
        times: dict = {}
        for engine in ("fused", "autograd") if autograd else ("fused",):
            train_objective(run.replace(steps=5, log_every=5), name, engine=engine, threads=threads)
            runs = []
            for _ in range(OBJECTIVE_RUNS if engine == "fused" else 1):
                start = time.perf_counter()
                train_objective(run, name, engine=engine, threads=threads)
                runs.append(time.perf_counter() - start)
            times[engine] = min(runs)
            if engine == "fused":
                times["fused_runs"] = runs
        out[name] = times
    return out


def size_probe(arms: int, seeds: int, steps: int, dtype: str, device: str) -> dict:
    """Time per step and peak memory of the paper's objectives at ``arms`` arms, in this process (call it in a
    fresh one: the peak resident set is the process's high-water mark)."""
    import resource

    config = BanditConfig(arms=arms, seeds=seeds, steps=steps, log_every=steps, dtype=dtype, device=device)
    train_objective(config.replace(steps=2, log_every=2), "lad")  # warm-up: lazy imports, first allocations
    before = _rss_mb()
    per_objective = {}
    for name in config.objectives:
        start = time.perf_counter()
        train_objective(config, name)
        per_objective[name] = (time.perf_counter() - start) / steps * 1e3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"arms": arms, "seeds": seeds, "steps": steps, "ms_per_step": per_objective,
           "peak_rss_mb": peak, "rss_before_mb": before, "peak_over_start_mb": max(0.0, peak - before)}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure_size(arms: int, seeds: int, steps: int, dtype: str, device: str) -> dict:
    code = ("import json, sys; from ladsim.bandit.bench import size_probe; "
            f"print(json.dumps(size_probe({arms}, {seeds}, {steps}, {dtype!r}, {device!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"size probe at {arms} arms failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _time_cli(device: str) -> dict[str, float]:
    """Wall seconds of ladsim commands in fresh processes (imports, training, files, exit: what a user waits)."""
    exe = [sys.executable, "-m", "ladsim.cli"]
    out = {}
    with tempfile.TemporaryDirectory(prefix="ladsim-bench-") as tmp:
        for name, args in CLI_RUNS.items():
            if args[0] == "run":
                args = [*args, "--device", device, "--out", os.path.join(tmp, name)]
            start = time.perf_counter()
            proc = subprocess.run([*exe, *args], capture_output=True, text=True, cwd=tmp)
            out[name] = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"ladsim {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return out
