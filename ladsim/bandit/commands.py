"""CLI commands for the bandit: ``ladsim run bandit`` and ``ladsim bench bandit``. Parse, delegate, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ladsim.bandit.config import MODES, OBJECTIVES, OPTIMIZERS, BanditConfig
from ladsim.bandit.metrics import SUMMARY_METRICS
from ladsim.bandit.rewards import default_arms, load_prior
from ladsim.divergences import DIVERGENCES
from ladsim.io import check_out_file, write_json

console = Console(stderr=False)


def progress_bar() -> Progress:
    """A progress bar on stderr, shown on a terminal only (piped or captured, stderr holds errors alone)."""
    err_console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                    transient=False, disable=not err_console.is_terminal)


SHORT_NAMES = {"js_to_target": "JS to target", "tv_to_target": "TV to target", "top_arm_mass": "top arm",
               "entropy": "entropy", "expected_reward": "reward", "mode_coverage": "modes kept"}


def summary_table(summary: dict, title: str) -> Table:
    """Objectives x summary metrics, each cell ``mean`` or ``mean ±half-width`` of the 95% interval."""
    table = Table(title=title)
    table.add_column("objective")
    for metric in SUMMARY_METRICS:
        table.add_column(SHORT_NAMES[metric], justify="right")
    for objective, metrics in summary["objectives"].items():
        cells = []
        for metric in SUMMARY_METRICS:
            m = metrics[metric]
            half = (m["hi"] - m["lo"]) / 2
            cells.append(f"{m['mean']:.3g}" + (f" ±{half:.1g}" if half > 1e-12 * max(1.0, abs(m["mean"])) else ""))
        table.add_row(objective, *cells)
    return table


def run_bandit(
    arms: Optional[int] = typer.Option(None, help="Number of arms (default 50; a reward file sets its own)."),
    div: str = typer.Option("js", help=f"f-divergence of LAD: {', '.join(DIVERGENCES)}."),
    objective: List[str] = typer.Option(list(OBJECTIVES), "--objective", "-o",
                                        help="Objective to train (repeatable); `ladsim objectives` lists them: "
                                             "grpo, lad, lad-theory, entadv, clip-cov, kl-cov, flowrl."),
    set_: List[str] = typer.Option([], "--set", metavar="OBJ.PARAM=VALUE",
                                   help="Set an objective's parameter (repeatable), e.g. --set flowrl.beta=10 "
                                        "--set grpo.clip_ratio_c=3; `ladsim objectives` lists each one's."),
    kl: Optional[str] = typer.Option(None, help="Add a KL penalty to the prior with this estimator: "
                                                "k1, k2, k3, k3+ (applies to every objective)."),
    kl_beta: float = typer.Option(0.001, help="Coefficient beta of the KL penalty (verl's default 0.001)."),
    entropy_coef: float = typer.Option(0.0, help="Entropy bonus coefficient (0 = none; every objective)."),
    reward: str = typer.Option("mixture", help="'mixture[:MEAN/WIDTH/HEIGHT,...]', "
                               "'correct[:ARM,ARM,...][;p=P][;q=Q]' or a .csv/.npy file of rewards."),
    eta: float = typer.Option(0.2, help="Temperature eta > 0 of the target pi_old exp(A/eta)."),
    steps: int = typer.Option(4000, help="Optimizer steps."),
    lr: float = typer.Option(5e-3, help="Learning rate."),
    optimizer: str = typer.Option("adam", help=f"Optimizer: {', '.join(OPTIMIZERS)}."),
    mode: str = typer.Option("exact", help=f"Expectations: {', '.join(MODES)} (exact = over all arms)."),
    group_size: int = typer.Option(16, help="Arms sampled per seed and batch in sampled mode (G >= 2)."),
    advantage_scale: str = typer.Option("std", help="Sampled-mode advantages: 'std' (GRPO) or 'none' (Dr.GRPO)."),
    refresh_every: int = typer.Option(0, help="Set pi_old to the policy every K steps (0 = frozen, 1 = on-policy)."),
    epochs: int = typer.Option(1, help="Optimizer steps per sampled batch (inner epochs)."),
    prior: Optional[Path] = typer.Option(None, help="A .csv/.npy file with pi_old's prior (default uniform)."),
    init_std: float = typer.Option(0.0, help="Std of Gaussian noise added to the initial logits."),
    clip: Optional[float] = typer.Option(None, help="GRPO clip epsilon (default: unclipped)."),
    seeds: int = typer.Option(8, help="Seeds, trained together as one batch."),
    seed: int = typer.Option(0, help="Random seed of the run."),
    log_every: int = typer.Option(50, help="Log metrics every this many steps."),
    dtype: str = typer.Option("float64", help="float64 (exact numbers) or float32 (faster on many seeds)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/bandit-<div>-<time>)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
) -> None:
    """Train objectives side by side on an N-armed bandit and write a run directory.

    The defaults are the paper's Figure 1 setting: GRPO, theoretical and practical LAD, 50 arms, a trimodal
    target, 4000 steps, learning rate 5e-3, pi_old frozen at uniform, exact expectations (ladsim's choices
    for the rest: Adam, eta = 0.2). Any registered objective can be added with -o; --eta and --div set the
    LAD objectives' parameters, --clip the PPO clip of every objective that has one, --set any parameter.
    """
    from ladsim.objectives import parse_assignments

    from ladsim.bandit.run import run

    config = BanditConfig(
        arms=default_arms(reward) if arms is None else arms, reward=reward, objectives=tuple(objective), div=div,
        eta=eta, steps=steps, lr=lr, optimizer=optimizer, mode=mode, group_size=group_size,
        advantage_scale=advantage_scale, refresh_every=refresh_every, epochs=epochs,
        prior=None if prior is None else load_prior(prior), init_std=init_std, clip=clip, seeds=seeds, seed=seed,
        log_every=log_every, dtype=dtype, params=parse_assignments(set_), kl=kl, kl_beta=kl_beta,
        entropy_coef=entropy_coef,
    )
    unused = sorted(set(config.params) - set(config.objectives))
    if unused:
        raise ValueError(f"--set names {', '.join(unused)}, which is not among the objectives trained "
                         f"({', '.join(config.objectives)}); add it with -o")
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"training {', '.join(config.objectives)}", total=config.steps * len(config.objectives))
        out, summary, _ = run(config, out, overwrite=overwrite, on_steps=lambda n: bar.advance(task, n))
    console.print(summary_table(summary, f"final step {config.steps}: mean ±half-width of the 95% bootstrap "
                                         f"interval over {seeds} seeds"))
    console.print(f"wrote {out}/ (config.json, metrics.csv, final_policy.csv, summary.json, distribution.png) "
                  f"in {time.perf_counter() - start:.1f} s")


def bench_bandit(
    seeds: int = typer.Option(1000, help="Seeds of the vectorized run."),
    steps: int = typer.Option(4000, help="Optimizer steps per seed."),
    arms: int = typer.Option(50, help="Arms."),
    naive_seeds: int = typer.Option(3, help="Seeds the naive loop is timed on (then scaled)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads for both engines (default: torch's)."),
    dtype: str = typer.Option("float64", help="float64 or float32, for both engines."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the measurements as JSON here."),
) -> None:
    """Vectorized engine (all seeds in one batch) against a naive per-seed loop, timed in the same run."""
    import torch

    from ladsim.bandit.bench import bench_bandit as measure

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if json_path is not None:
        check_out_file(json_path)  # before any work (BanditConfig then checks the memory the sizes need)
    console.print(f"timing practical LAD, exact mode, {dtype}: {seeds} seeds x {steps} steps x {arms} arms ...")
    result = measure(seeds=seeds, steps=steps, arms=arms, naive_seeds=naive_seeds, dtype=dtype)
    console.print(f"vectorized ({seeds} seeds in one batch): {result['vectorized_s']:.2f} s")
    console.print(f"naive per-seed loop: {result['naive_one_seed_s']:.2f} s per seed, timed on {naive_seeds}, "
                  f"{result['naive_per_seed_s']:.0f} s scaled to {seeds} seeds")
    console.print(f"speedup: {result['speedup']:.0f}x   (same policy: max |diff| = {result['max_policy_diff']:.1e}, "
                  f"{result['threads']} threads)")
    if json_path is not None:
        write_json(json_path, result)
        console.print(f"wrote {json_path}")
