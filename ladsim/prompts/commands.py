"""CLI commands of the many-prompt world: ``ladsim run prompts`` and ``ladsim bench prompts``. Parse, delegate,
report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ladsim import options
from ladsim.losses import KL_ESTIMATORS

from ladsim.bandit.commands import console, progress_bar, summary_table
from ladsim.prompts.config import OBJECTIVES
from ladsim.settings import MODES
from ladsim.resources import check_threads

TABLE_NAMES = {"expected_reward": "pass@1", "entropy": "entropy", "js_to_target": "JS to target",
               "unsolved": "unsolved", "solved_base_only": "base only", "solved_trained_only": "trained only",
               "solved_both": "both"}


def run_prompts(
    prompts: Optional[int] = typer.Option(None, help="Prompts P (default 64; the setting files fix it)."),
    arms: Optional[int] = typer.Option(None, help="Answers per prompt N (default 32; the setting files fix it)."),
    dim: Optional[int] = typer.Option(None, help="Shared features d (default 8; a --features file fixes it)."),
    base_scale: float = typer.Option(2.0, help="Random base logits: N(0, s^2) with this s."),
    correct: int = typer.Option(2, help="Random rewards: K correct answers per prompt, 1 <= K < N."),
    base_logits: Optional[Path] = typer.Option(None, help="Base logits from a .npy file of shape (P, N)."),
    features: Optional[Path] = typer.Option(None, help="Features from a .npy file of shape (P, N, d)."),
    reward: Optional[Path] = typer.Option(None, help="Rewards in [0, 1] from a .npy file of shape (P, N)."),
    tabular: bool = typer.Option(False, help="Add a free logit per prompt and answer to the shared w."),
    objective: List[str] = typer.Option(list(OBJECTIVES), "--objective", "-o",
                                        help="Objective to train (repeatable); `ladsim objectives` lists them."),
    set_: List[str] = options.SET,
    kl: Optional[str] = typer.Option(None, help=f"Add a KL penalty to the base policy with this estimator: "
                                                f"{', '.join(KL_ESTIMATORS)}."),
    kl_beta: float = options.KL_BETA,
    kl_bias_correction: bool = options.KL_BIAS_CORRECTION,
    entropy_coef: float = options.ENTROPY_COEF,
    entropy_target: Optional[float] = options.ENTROPY_TARGET,
    entropy_coef_delta: float = options.ENTROPY_COEF_DELTA,
    entropy_coef_min: float = options.ENTROPY_COEF_MIN,
    entropy_coef_max: float = options.ENTROPY_COEF_MAX,
    top_entropy_quantile: float = options.TOP_ENTROPY_QUANTILE,
    eta: float = options.ETA,
    div: str = options.DIV,
    steps: int = typer.Option(2000, help="Optimizer steps."),
    lr: float = options.LR,
    optimizer: str = options.OPTIMIZER,
    mode: str = typer.Option("exact", help=f"Expectations: {', '.join(MODES)} (exact = over every answer)."),
    group_size: int = typer.Option(16, help="Answers sampled per prompt and seed in sampled mode (G >= 2)."),
    advantage_scale: str = options.ADVANTAGE_SCALE,
    advantage: Optional[str] = options.ADVANTAGE,
    refresh_every: int = options.REFRESH_EVERY,
    epochs: int = options.EPOCHS,
    init_std: float = typer.Option(0.0, help="Std of Gaussian noise on the initial shared parameters w."),
    clip: Optional[float] = options.CLIP,
    max_k: int = typer.Option(1024, help="pass@k for k = 1, 2, 4, ... up to this."),
    seeds: int = typer.Option(8, help="Seeds, trained together as one batch (each draws its own random setting)."),
    seed: int = options.SEED,
    log_every: int = options.LOG_EVERY,
    dtype: str = options.DTYPE,
    device: str = options.DEVICE,
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: one below 4096 seeds x prompts "
                                                     "x answers, else all cores)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/prompts-P<P>-N<N>-d<d>-<time>)."),
    overwrite: bool = options.OVERWRITE,
) -> None:
    """Train objectives on many prompts whose logits b + phi . w share the parameters w, and write a run
    directory with pass@k against k for the base and each trained policy, and where the base overtakes it.

    The defaults: 64 prompts of 32 answers, d = 8 random features, random base logits N(0, 2^2) and 2 correct
    answers per prompt (each seed draws its own setting), GRPO and practical LAD, pi_old frozen at the base,
    exact expectations, 2000 Adam steps at lr 5e-3, eta = 0.2.
    """
    from ladsim.bandit.trainer import resolve_device
    from ladsim.objectives import parse_assignments
    from ladsim.prompts.config import PromptsConfig, powers_of_two
    from ladsim.prompts.run import run_prompts as run
    from ladsim.prompts.run import summary_metrics

    check_threads(threads)
    config = PromptsConfig(  # the one validation pass over every setting, before any work
        prompts=prompts, arms=arms, dim=dim, base_scale=base_scale, correct=correct,
        base_logits=None if base_logits is None else str(base_logits),
        features=None if features is None else str(features), reward=None if reward is None else str(reward),
        tabular=tabular, objectives=tuple(objective), div=div, eta=eta, steps=steps, lr=lr, optimizer=optimizer,
        mode=mode, group_size=group_size, advantage_scale=advantage_scale, advantage=advantage,
        refresh_every=refresh_every,
        epochs=epochs, init_std=init_std, clip=clip, metric_ks=powers_of_two(max_k), seeds=seeds, seed=seed,
        log_every=log_every,
        dtype=dtype, params=parse_assignments(set_), kl=kl, kl_beta=kl_beta,
        kl_bias_correction=kl_bias_correction, entropy_coef=entropy_coef, entropy_target=entropy_target,
        entropy_coef_delta=entropy_coef_delta, entropy_coef_min=entropy_coef_min,
        entropy_coef_max=entropy_coef_max,
        top_entropy_quantile=top_entropy_quantile,
        device=device)
    resolve_device(config.device)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"training {', '.join(config.objectives)}", total=config.steps * len(config.objectives))
        out, summary, _ = run(config, out, overwrite=overwrite, on_steps=lambda n: bar.advance(task, n),
                              threads=threads)
    P, N, d = config.sizes
    k_max = config.ks()[-1]
    metrics = tuple(m for m in summary_metrics(config) if m != "kl_to_base")
    console.print(summary_table(summary, f"final step {config.steps}, {P} prompts x {N} answers, d = {d}: mean "
                                         f"±half-width of the 95% bootstrap interval over {seeds} seeds "
                                         f"(coverage at k = {k_max})", metrics, TABLE_NAMES))
    base = summary["base"]
    console.print(f"base: pass@1 {base['pass@1']['mean']:.3g}, pass@{k_max} {base[f'pass@{k_max}']['mean']:.3g}; "
                  "crossover k (the base's mean pass@k first above the trained policy's): "
                  + ", ".join(f"{name} {'none' if k is None else k} ({summary['seeds_crossing'][name]}/{seeds} "
                              f"seeds cross)" for name, k in summary["crossover_k"].items()), soft_wrap=True)
    console.print(f"wrote {out}/ (config.json, metrics.csv, prompts.csv, passk.csv, summary.json) in "
                  f"{time.perf_counter() - start:.1f} s", soft_wrap=True)
    console.print(f"figure: {out / 'passk.png'}", soft_wrap=True)


def bench_prompts(
    case: List[str] = typer.Option(["issue", "float32", "shared"], "--case",
                                   help="Cases to time (repeatable): issue (P=256, N=64, d=16, 8 seeds, 1000 exact "
                                        "steps, float64, each seed its own features), float32 (the same in "
                                        "float32), shared (the same sizes, one setting file for every seed)."),
    objective: List[str] = typer.Option(["lad", "grpo"], "--objective", "-o", help="Objectives to time."),
    runs: int = typer.Option(3, help="Timed runs of the fused engine per case (the fastest is reported)."),
    autograd: bool = typer.Option(True, help="Also time the autograd reference on each case."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: the trainer's, one below 4096 "
                                                     "seeds x prompts x answers, else all cores)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the measurements as JSON here."),
) -> None:
    """The many-prompt world's fused engine against its autograd reference, each case in a fresh process."""
    from rich.table import Table

    from ladsim.io import check_out_file, write_json
    from ladsim.prompts.bench import bench_prompts as measure

    if runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}")
    if json_path is not None:
        check_out_file(json_path)
    check_threads(threads)
    r = measure(tuple(case), tuple(objective), runs=runs, autograd=autograd, threads=threads)
    load = r["load_average"]
    used = sorted({c["threads"] for c in r["cases"].values()})
    console.print(f"{r['date']}, {r['machine']}, {r['cpus']} CPUs, {'/'.join(map(str, used))} torch thread(s)" +
                  (f", load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""))
    table = Table(title="many prompts sharing w, 1000 exact steps: seconds")
    for column in ("case", "objective", "fused", "autograd", "ratio", "max diff", "MB", "target"):
        table.add_column(column, justify="left" if column in ("case", "objective") else "right", no_wrap=True)
    for key, c in r["cases"].items():
        auto = c.get("autograd_s")
        table.add_row(c["case"], c["objective"], f"{c['fused_s']:.3f}", "" if auto is None else f"{auto:.3f}",
                      "" if auto is None else f"{c['autograd_over_fused']:.1f}x",
                      "" if auto is None else f"{c['max_policy_diff']:.1e}", f"{c['peak_rss_mb']:.0f}",
                      f"{c['target_s']:g}" if "target_s" in c else "")
    console.print(table)
    for key, c in r["cases"].items():
        console.print(f"{key}: fused runs {' '.join(f'{t:.3f}' for t in c['fused_runs'])} s (the fastest above)",
                      soft_wrap=True)
    if json_path is not None:
        write_json(json_path, r)
        console.print(f"wrote {json_path}")
