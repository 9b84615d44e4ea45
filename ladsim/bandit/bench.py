"""``ladsim bench bandit``: the vectorized engine against a naive per-seed loop, timed side by side in one run.

The naive baseline is what a paper script does: one seed at a time, a ``(N,)`` logit vector, the same loss core
and optimizer, 4000 Python-level steps per seed. It is timed on a few seeds and scaled to the full seed count
(its cost is linear in seeds); the vectorized engine trains every seed in one ``(S, N)`` computation.

Beside it, in the same run: the fused engine (the default) against the autograd reference on the same batch,
every objective at 8 seeds (the fastest of three runs), the time per step and peak memory at N in {50, 4096,
151936} (each size in a fresh process, so that its peak resident memory is its own), and the wall time of CLI
commands (``--help``, the default 50-arm run, a 151,936-arm run with its figure) as a user sees them.

The first run's budget (issue 22): ``ladsim run bandit --arms 50 --div js`` may take at most ``FIRST_RUN_TARGET_S``
beyond ``python -c "import torch"``. Both are timed as fresh processes in the same rounds (interleaved, so that
a change of the machine's load reaches both alike), after one untimed round that warms the file cache and writes
Python's bytecode cache (as ``pip install`` does; ``PYTHONDONTWRITEBYTECODE`` is dropped for these processes);
the medians, their difference ("ours") and their ratio are reported. ``python -c "import torch"`` also pays the
interpreter's teardown of torch (~0.4 s) that ladsim's CLI skips, so the run is also measured against torch's
import alone (``IMPORT_TORCH_ONLY``, "strict").
"""

from __future__ import annotations

import json
import os
import statistics
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
REPEATED = ("help", "run_bandit_50")  # timed CLI_REPEATS times beside the torch import; the others once
CLI_REPEATS = 5
FIRST_RUN = "run_bandit_50"
FIRST_RUN_TARGET_S = 0.6  # issue 22: the first run's own time, beyond importing torch, on an idle 2-core machine
IMPORT_TORCH = ["-c", "import torch"]  # the baseline of the budget, as the issue states it
# torch's import alone: `python -c "import torch"` also pays the interpreter's teardown of torch's modules
# (~0.4 s), which ladsim's CLI skips (os._exit once everything is written), so the budget is also given against this
IMPORT_TORCH_ONLY = ["-c", "import os, torch; os._exit(0)"]


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
                 size_steps: int = 20, cli: bool = True, autograd: bool = True, cli_repeats: int = CLI_REPEATS
                 ) -> dict:
    """Time the engines side by side; returns ``{"vectorized_s", "naive_per_seed_s", "speedup", ...}``.

    ``vectorized_s`` is the default (fused) engine on ``seeds x steps x arms``; ``autograd_s`` the autograd
    reference on the same batch (``autograd=False`` skips it). ``naive_per_seed_s`` is the naive loop's time for
    all ``seeds`` seeds, scaled from ``naive_seeds`` timed runs; ``naive_one_seed_s`` is its measured mean time
    for one seed. ``objectives_s``: every registered objective at ``objectives_seeds`` seeds (fused, the fastest
    of ``OBJECTIVE_RUNS`` runs, and autograd for the ratio). ``sizes``: per number of arms, ms per step and peak
    memory of ``size_seeds`` seeds (fused, all objectives of the paper's figure), each in a fresh process.
    ``cli``: wall times of ``ladsim --help``, ``ladsim run bandit --arms 50 --div js`` and ``ladsim run bandit
    --arms 151936 --steps 200 --seeds 2`` in subprocesses, everything included (``cli_s``: the medians; the
    first two and ``python -c "import torch"`` in ``cli_repeats`` interleaved rounds, the last once), and
    ``first_run``: the first run's budget (:func:`first_run_budget`).
    """
    if seeds < 1 or steps < 1 or naive_seeds < 1:
        raise ValueError("--seeds, --steps and --naive-seeds must be >= 1")
    if cli and cli_repeats < 1:
        raise ValueError(f"--cli-repeats must be >= 1, got {cli_repeats}")
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
        runs = _time_cli(device, cli_repeats)
        result["cli_runs_s"] = runs
        result["cli_s"] = {name: statistics.median(runs[name]) for name in CLI_RUNS}
        result["cli_commands"] = {name: " ".join(["ladsim", *args]) for name, args in CLI_RUNS.items()}
        result["first_run"] = first_run_budget(runs["import_torch"], runs[FIRST_RUN], runs["import_torch_only"])
    return result


def first_run_budget(import_torch_s: list[float], run_s: list[float], import_only_s: list[float] | None = None,
                     target_s: float = FIRST_RUN_TARGET_S) -> dict:
    """The first run against its budget, from the wall times of ``python -c "import torch"`` and of the run
    timed in the same rounds: their medians, ``ours_s`` (the run's median minus torch's), ``ratio`` (run over
    torch) and ``ours_over_target`` (``ours_s / target_s``; at most 1 meets the target). With ``import_only_s``
    (torch's import without the interpreter's teardown, ``IMPORT_TORCH_ONLY``): ``torch_teardown_s`` and
    ``ours_strict_s``, the run beyond torch's import alone."""
    torch_s, run = statistics.median(import_torch_s), statistics.median(run_s)
    out = {"command": " ".join(["ladsim", *CLI_RUNS[FIRST_RUN]]), "repeats": len(run_s),
           "import_torch_s": torch_s, "run_s": run, "ours_s": run - torch_s, "ratio": run / torch_s,
           "target_s": target_s, "ours_over_target": (run - torch_s) / target_s}
    if import_only_s:
        only = statistics.median(import_only_s)
        out.update(import_torch_only_s=only, torch_teardown_s=torch_s - only, ours_strict_s=run - only,
                   ours_strict_over_target=(run - only) / target_s)
    return out


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


def _time_cli(device: str, repeats: int = CLI_REPEATS) -> dict[str, list[float]]:
    """Wall seconds of ladsim commands in fresh processes (imports, training, files, exit: what a user waits):
    ``{"import_torch": [...], "import_torch_only": [...], name: [...]}``. The two torch imports and the
    ``REPEATED`` commands take turns for ``repeats`` rounds after an untimed one; the other commands of
    ``CLI_RUNS`` run once, last."""
    exe = [sys.executable, "-m", "ladsim.cli"]
    with tempfile.TemporaryDirectory(prefix="ladsim-bench-") as tmp:
        def command(name: str, args: list[str]) -> list[str]:
            if args[0] == "run":
                args = [*args, "--device", device, "--out", os.path.join(tmp, name), "--overwrite"]
            return [*exe, *args]

        rounds = {"import_torch": [sys.executable, *IMPORT_TORCH],
                  "import_torch_only": [sys.executable, *IMPORT_TORCH_ONLY],
                  **{name: command(name, CLI_RUNS[name]) for name in REPEATED}}
        once = {name: command(name, args) for name, args in CLI_RUNS.items() if name not in REPEATED}
        out = time_commands(rounds, repeats, tmp, warm_up=True)
        out.update(time_commands(once, 1, tmp))
    return out


def time_commands(commands: dict[str, list[str]], repeats: int, cwd: str, warm_up: bool = False
                  ) -> dict[str, list[float]]:
    """``{name: [wall seconds, ...]}``: every command of ``commands`` (an argv) once per round, for ``repeats``
    rounds (``warm_up``: after one untimed round), each as a fresh process in ``cwd`` with Python's bytecode
    cache on. ``RuntimeError`` naming the command where one fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, list[float]] = {name: [] for name in commands}
    for timed in [False] * warm_up + [True] * repeats:
        for name, argv in commands.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
            if timed:
                out[name].append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv[1:])} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return out
