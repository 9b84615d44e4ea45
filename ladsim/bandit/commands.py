"""CLI commands for the bandit: ``ladsim run bandit`` and ``ladsim bench bandit``. Parse, delegate, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ladsim import options
from ladsim.losses import KL_ESTIMATORS
from ladsim.bandit.config import OBJECTIVES, BanditConfig
from ladsim.settings import MODES
from ladsim.bandit.bench import CLI_REPEATS, SIZES
from ladsim.bandit.metrics import SUMMARY_METRICS
from ladsim.bandit.rewards import default_arms, load_prior
from ladsim.io import check_out_file, write_json
from ladsim.resources import check_threads

console = Console(stderr=False)


def progress_bar() -> Progress:
    """A progress bar on stderr, shown on a terminal only (piped or captured, stderr holds errors alone)."""
    err_console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                    transient=False, disable=not err_console.is_terminal)


SHORT_NAMES = {"js_to_target": "JS to target", "tv_to_target": "TV to target", "top_arm_mass": "top arm",
               "entropy": "entropy", "expected_reward": "reward", "mode_coverage": "modes kept"}


def summary_table(summary: dict, title: str, metrics: tuple[str, ...] = SUMMARY_METRICS,
                  names: dict[str, str] = SHORT_NAMES) -> Table:
    """Objectives x summary ``metrics`` (headed by ``names``), each cell ``mean`` or ``mean ±half-width`` of the
    95% interval."""
    table = Table(title=title)
    table.add_column("objective")
    for metric in metrics:
        table.add_column(names.get(metric, metric), justify="right")
    for objective, values in summary["objectives"].items():
        cells = []
        for metric in metrics:
            m = values[metric]
            half = (m["hi"] - m["lo"]) / 2
            cells.append(f"{m['mean']:.3g}" + (f" ±{half:.1g}" if half > 1e-12 * max(1.0, abs(m["mean"])) else ""))
        table.add_row(objective, *cells)
    return table


def run_bandit(
    arms: Optional[int] = typer.Option(None, help="Number of arms (default 50; a reward file sets its own)."),
    div: str = options.DIV,
    objective: List[str] = typer.Option(list(OBJECTIVES), "--objective", "-o",
                                        help="Objective to train (repeatable); `ladsim objectives` lists them."),
    set_: List[str] = options.SET,
    kl: Optional[str] = typer.Option(None, help=f"Add a KL penalty to the prior (applies to every objective) "
                                                f"with this estimator: {', '.join(KL_ESTIMATORS)}."),
    kl_beta: float = options.KL_BETA,
    kl_bias_correction: bool = options.KL_BIAS_CORRECTION,
    entropy_coef: float = options.ENTROPY_COEF,
    entropy_target: Optional[float] = options.ENTROPY_TARGET,
    entropy_coef_delta: float = options.ENTROPY_COEF_DELTA,
    entropy_coef_min: float = options.ENTROPY_COEF_MIN,
    entropy_coef_max: float = options.ENTROPY_COEF_MAX,
    reward: str = typer.Option("mixture", help="'mixture[:MEAN/WIDTH/HEIGHT,...]', "
                               "'correct[:ARM,ARM,...][;p=P][;q=Q]' or a .csv/.npy file of rewards."),
    eta: float = options.ETA,
    steps: int = typer.Option(4000, help="Optimizer steps."),
    lr: float = options.LR,
    optimizer: str = options.OPTIMIZER,
    mode: str = typer.Option("exact", help=f"Expectations: {', '.join(MODES)} (exact = over all arms)."),
    group_size: int = typer.Option(16, help="Arms sampled per seed and batch in sampled mode (G >= 2)."),
    advantage_scale: str = options.ADVANTAGE_SCALE,
    advantage: Optional[str] = options.ADVANTAGE,
    refresh_every: int = options.REFRESH_EVERY,
    epochs: int = options.EPOCHS,
    prior: Optional[Path] = typer.Option(None, help="A .csv/.npy file with pi_old's prior (default uniform)."),
    init_std: float = typer.Option(0.0, help="Std of Gaussian noise added to the initial logits."),
    clip: Optional[float] = options.CLIP,
    seeds: int = typer.Option(8, help="Seeds, trained together as one batch."),
    seed: int = options.SEED,
    log_every: int = options.LOG_EVERY,
    dtype: str = options.DTYPE,
    device: str = options.DEVICE,
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: 1 below 4096 seeds x arms, "
                                                     "else all cores)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/bandit-<div>-<time>)."),
    overwrite: bool = options.OVERWRITE,
) -> None:
    """Train objectives side by side on an N-armed bandit and write a run directory.

    The defaults are the paper's Figure 1 setting: GRPO, theoretical and practical LAD, 50 arms, a trimodal
    target, 4000 steps, learning rate 5e-3, pi_old frozen at uniform, exact expectations (ladsim's choices
    for the rest: Adam, eta = 0.2). Any registered objective can be added with -o; --eta and --div set the
    LAD objectives' parameters, --clip the PPO clip of every objective that has one, --set any parameter.
    """
    from ladsim.objectives import parse_assignments

    from ladsim.bandit.run import FIGURE, run
    from ladsim.bandit.trainer import resolve_device

    check_threads(threads)
    config = BanditConfig(  # the one validation pass over every setting, before any work
        arms=default_arms(reward) if arms is None else arms, reward=reward, objectives=tuple(objective), div=div,
        eta=eta, steps=steps, lr=lr, optimizer=optimizer, mode=mode, group_size=group_size,
        advantage_scale=advantage_scale, advantage=advantage, refresh_every=refresh_every, epochs=epochs,
        prior=None if prior is None else load_prior(prior), init_std=init_std, clip=clip, seeds=seeds, seed=seed,
        log_every=log_every, dtype=dtype, params=parse_assignments(set_), kl=kl, kl_beta=kl_beta,
        kl_bias_correction=kl_bias_correction,
        entropy_coef=entropy_coef, entropy_target=entropy_target,
        entropy_coef_delta=entropy_coef_delta, entropy_coef_min=entropy_coef_min,
        entropy_coef_max=entropy_coef_max, device=device,
    )
    resolve_device(config.device)  # a clear error now, before any file is touched
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"training {', '.join(config.objectives)}", total=config.steps * len(config.objectives))
        out, summary, _ = run(config, out, overwrite=overwrite, on_steps=lambda n: bar.advance(task, n),
                              threads=threads, frames=False)
    console.print(summary_table(summary, f"final step {config.steps}: mean ±half-width of the 95% bootstrap "
                                         f"interval over {seeds} seeds"))
    console.print(f"wrote {out}/ (config.json, metrics.csv, final_policy.csv, summary.json, {FIGURE}) "
                  f"in {time.perf_counter() - start:.1f} s", soft_wrap=True)
    console.print(f"figure: {out / FIGURE}", soft_wrap=True)


def first_run_line(f: dict) -> str:
    """The first run's budget in one line (``ladsim.bandit.bench.first_run_budget``)."""
    verdict = "within" if f["ours_over_target"] <= 1 else "over"
    line = (f"first run: `{f['command']}` {f['run_s']:.2f} s, `python -c \"import torch\"` {f['import_torch_s']:.2f} s "
            f"(medians of {f['repeats']} interleaved fresh processes): ours {f['ours_s']:.2f} s, ratio "
            f"{f['ratio']:.2f}; target {f['target_s']:.1f} s: {verdict} ({f['ours_over_target']:.2f} of it)")
    if "ours_strict_s" in f:
        line += (f"; beside torch's import alone ({f['import_torch_only_s']:.2f} s, without the "
                 f"{f['torch_teardown_s']:.2f} s teardown ladsim skips): ours {f['ours_strict_s']:.2f} s "
                 f"({f['ours_strict_over_target']:.2f} of the target)")
    return line


def bench_bandit(
    seeds: int = typer.Option(1000, help="Seeds of the vectorized run."),
    steps: int = typer.Option(4000, help="Optimizer steps per seed."),
    arms: int = typer.Option(50, help="Arms."),
    naive_seeds: int = typer.Option(3, help="Seeds the naive loop is timed on (then scaled)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads of the engines (default: 1 below 4096 "
                                                     "seeds x arms, else all cores; the naive loop: torch's)."),
    dtype: str = typer.Option("float64", help="float64 or float32, for both engines."),
    device: str = typer.Option("cpu", help="Where the engines train: cpu or cuda (cuda:K)."),
    objectives_seeds: int = typer.Option(8, help="Seeds of the per-objective timings (0 = skip)."),
    sizes: str = typer.Option(",".join(map(str, SIZES)), help="Arms of the time-per-step and peak-memory probes, "
                                                              "comma-separated ('' = skip)."),
    cli: bool = typer.Option(True, help="Also time ladsim --help and two `ladsim run bandit` commands end to end, "
                                        "and the first run against `python -c \"import torch\"`."),
    cli_repeats: int = typer.Option(CLI_REPEATS, help="Interleaved rounds of the first run, --help and the torch "
                                                      "import (the medians are reported)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the measurements as JSON here."),
) -> None:
    """Vectorized engine (all seeds in one batch) against a naive per-seed loop, timed in the same run."""
    from ladsim.bandit.bench import bench_bandit as measure
    from ladsim.bandit.trainer import resolve_device

    check_threads(threads)
    resolve_device(device)
    try:
        arm_sizes = tuple(int(a) for a in sizes.split(",") if a.strip())
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {sizes!r}") from None
    if json_path is not None:
        check_out_file(json_path)  # before any work
    console.print(f"timing practical LAD, exact mode, {dtype}, {device}: {seeds} seeds x {steps} steps x {arms} "
                  "arms ...")
    r = measure(seeds=seeds, steps=steps, arms=arms, naive_seeds=naive_seeds, dtype=dtype, device=device,
                threads=threads, objectives_seeds=objectives_seeds, sizes=arm_sizes, cli=cli, cli_repeats=cli_repeats)
    load = r["load_average"]
    console.print(f"{r['date']}, {r['cpus']} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
                  if load else r["date"])
    console.print(f"vectorized, fused engine ({seeds} seeds in one batch): {r['vectorized_s']:.2f} s")
    if r["autograd_s"] is not None:
        console.print(f"vectorized, autograd reference: {r['autograd_s']:.2f} s  "
                      f"(fused {r['fused_over_autograd']:.1f}x faster, "
                      f"same policy: max |diff| = {r['max_policy_diff_autograd']:.1e})")
    console.print(f"naive per-seed loop: {r['naive_one_seed_s']:.2f} s per seed, timed on {naive_seeds}, "
                  f"{r['naive_per_seed_s']:.0f} s scaled to {seeds} seeds")
    console.print(f"speedup: {r['speedup']:.0f}x   (same policy: max |diff| = {r['max_policy_diff']:.1e}, "
                  f"{r['threads']} threads)")
    if "objectives_s" in r:
        table = Table(title=f"every objective, {r['objectives_seeds']} seeds x {steps} steps x {arms} arms (s); "
                            "fused: the fastest of its runs")
        for column in ("objective", "fused", "fused runs", "autograd", "ratio"):
            table.add_column(column, justify="left" if column == "objective" else "right")
        for name, t in r["objectives_s"].items():
            auto = t.get("autograd")
            table.add_row(name, f"{t['fused']:.3f}", " ".join(f"{x:.3f}" for x in t["fused_runs"]),
                          "" if auto is None else f"{auto:.3f}", "" if auto is None else f"{auto / t['fused']:.1f}x")
        console.print(table)
    if "sizes" in r:
        table = Table(title="LLM-sized action sets: fused engine, paper objectives, ms per step and peak memory")
        for column in ("arms", "seeds", "grpo", "lad", "lad-theory", "peak RSS MB", "over start MB"):
            table.add_column(column, justify="right")
        for n, m in r["sizes"].items():
            ms = m["ms_per_step"]
            table.add_row(n, str(m["seeds"]), *(f"{ms[k]:.2f}" for k in ("grpo", "lad", "lad-theory")),
                          f"{m['peak_rss_mb']:.0f}", f"{m['peak_over_start_mb']:.0f}")
        console.print(table)
    if "cli_s" in r:
        console.print("wall (median): " + "; ".join(f"{r['cli_commands'][name]} {t:.2f} s"
                                                    for name, t in r["cli_s"].items()), soft_wrap=True)
        console.print(first_run_line(r["first_run"]), soft_wrap=True)
    if json_path is not None:
        write_json(json_path, r)
        console.print(f"wrote {json_path}")
