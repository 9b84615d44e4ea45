"""CLI commands of the token tree: ``ladsim run tree`` and ``ladsim bench tree``. Parse, delegate, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ladsim import options
from ladsim.losses import KL_ESTIMATORS

from ladsim.bandit.commands import console, progress_bar, summary_table
from ladsim.llm.objective_loss import RATIOS
from ladsim.llm.token_loss import AGG_MODES
from ladsim.resources import check_threads
from ladsim.settings import MODES
from ladsim.tree.config import OBJECTIVES
from ladsim.tree.rewards import DEFAULT_ANSWERS

TABLE_METRICS = ("js_to_target", "correct_mass", "mode_coverage", "entropy", "mean_length", "length_correct",
                 "length_incorrect")
TABLE_NAMES = {"js_to_target": "JS to P_A", "correct_mass": "correct mass", "mode_coverage": "modes kept",
               "entropy": "entropy", "mean_length": "E|y|", "length_correct": "E|y| correct",
               "length_incorrect": "E|y| wrong"}


def run_tree(
    vocab: int = typer.Option(4, help="Vocabulary size V (token 0 is the EOS)."),
    length: int = typer.Option(5, help="Maximum response length L in tokens, EOS included."),
    reward: str = typer.Option(DEFAULT_ANSWERS, help="'answers:BODY,BODY,...[;partial=P][;length=C]' (bodies are "
                               "tokens, e.g. 213 or 2.1.3; truncated responses score 0), or a .npy/.csv file "
                               "with one reward per response."),
    objective: List[str] = typer.Option(list(OBJECTIVES), "--objective", "-o",
                                        help="Objective to train (repeatable); `ladsim objectives` lists them."),
    set_: List[str] = options.SET,
    agg: str = typer.Option("token-mean", help=f"verl's loss_agg_mode: {', '.join(AGG_MODES)} (exact mode: its "
                                               "large-batch limit)."),
    ratio: str = typer.Option("token", help=f"Importance ratio per token: {', '.join(RATIOS)} (sequence-mean = "
                                            "GSPO's length-normalized ratio)."),
    kl: Optional[str] = typer.Option(None, help=f"Add a per-token KL penalty to pi_0 with this estimator: "
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
    mode: str = typer.Option("exact", help=f"Expectations: {', '.join(MODES)} (exact = over every response)."),
    group_size: int = typer.Option(16, help="Responses sampled per seed and batch in sampled mode (G >= 2)."),
    advantage_scale: str = options.ADVANTAGE_SCALE,
    advantage: Optional[str] = options.ADVANTAGE,
    refresh_every: int = options.REFRESH_EVERY,
    epochs: int = options.EPOCHS,
    init_std: float = typer.Option(0.0, help="Std of Gaussian noise added to the initial logits."),
    clip: Optional[float] = options.CLIP,
    seeds: int = typer.Option(8, help="Seeds, trained together as one batch."),
    seed: int = options.SEED,
    log_every: int = options.LOG_EVERY,
    dtype: str = options.DTYPE,
    device: str = options.DEVICE,
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default 1)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/tree-V<V>-L<L>-<time>)."),
    overwrite: bool = options.OVERWRITE,
) -> None:
    """Train objectives on a token tree (responses of up to L tokens, every one enumerated) with the LLM
    path's token losses, and write a run directory.

    The defaults: V = 4 tokens, L = 5 (364 responses), the answers 12, 213 and 3111, GRPO and practical LAD
    with verl's token-mean aggregation and per-token ratios, pi_old frozen at the uniform policy, exact
    expectations, 2000 Adam steps at lr 5e-3, eta = 0.2.
    """
    from ladsim.bandit.trainer import resolve_device
    from ladsim.objectives import parse_assignments
    from ladsim.tree.config import TreeConfig
    from ladsim.tree.run import run_tree as run

    check_threads(threads)
    config = TreeConfig(  # the one validation pass over every setting, before any work
        vocab=vocab, length=length, reward=reward, objectives=tuple(objective), agg=agg, ratio=ratio, div=div,
        eta=eta, steps=steps, lr=lr, optimizer=optimizer, mode=mode, group_size=group_size,
        advantage_scale=advantage_scale, advantage=advantage, refresh_every=refresh_every, epochs=epochs,
        init_std=init_std, clip=clip, seeds=seeds, seed=seed, log_every=log_every, dtype=dtype,
        params=parse_assignments(set_), kl=kl, kl_beta=kl_beta, kl_bias_correction=kl_bias_correction,
        entropy_coef=entropy_coef, entropy_target=entropy_target, entropy_coef_delta=entropy_coef_delta,
        entropy_coef_min=entropy_coef_min, entropy_coef_max=entropy_coef_max,
        top_entropy_quantile=top_entropy_quantile, device=device)
    resolve_device(config.device)  # a clear error now, before any file is touched
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"training {', '.join(config.objectives)}", total=config.steps * len(config.objectives))
        out, summary, _ = run(config, out, overwrite=overwrite, on_steps=lambda n: bar.advance(task, n),
                              threads=threads)
    tree = config.tree()
    console.print(summary_table(summary, f"final step {config.steps}, {tree.n_responses:,} responses: mean "
                                         f"±half-width of the 95% bootstrap interval over {seeds} seeds",
                                TABLE_METRICS, TABLE_NAMES))
    console.print(f"wrote {out}/ (config.json, metrics.csv, final_policy.csv, summary.json) in "
                  f"{time.perf_counter() - start:.1f} s", soft_wrap=True)
    console.print(f"figure: {out / 'distribution.png'}", soft_wrap=True)


def bench_tree(
    case: List[str] = typer.Option(["small", "large", "sampled"], "--case",
                                   help="Cases to time (repeatable): small (V=4, L=5, 8 seeds, 2000 exact steps), "
                                        "large (V=8, L=6, 2 seeds, 200 exact steps), sampled (V=4, L=5, G=16, "
                                        "on-policy)."),
    runs: int = typer.Option(3, help="Timed runs of the fused engine per case (the fastest is reported)."),
    autograd: bool = typer.Option(True, help="Also time the autograd reference on each case."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the measurements as JSON here."),
) -> None:
    """The token tree's fused engine against its autograd reference, each case in a fresh process."""
    from rich.table import Table

    from ladsim.io import check_out_file, write_json
    from ladsim.tree.bench import bench_tree as measure

    if runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}")
    if json_path is not None:
        check_out_file(json_path)
    r = measure(tuple(case), runs=runs, autograd=autograd)
    load = r["load_average"]
    console.print(f"{r['date']}, {r['machine']}, {r['cpus']} CPUs" +
                  (f", load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""))
    table = Table(title="practical LAD on the token tree (token ratio, token-mean), seconds")
    for column in ("case", "responses", "fused", "autograd", "ratio", "max diff", "peak MB", "target"):
        table.add_column(column, justify="left" if column == "case" else "right", no_wrap=True)
    for name, c in r["cases"].items():
        auto = c.get("autograd_s")
        table.add_row(name, f"{c['responses']:,}", f"{c['fused_s']:.3f}", "" if auto is None else f"{auto:.3f}",
                      "" if auto is None else f"{c['autograd_over_fused']:.1f}x",
                      "" if auto is None else f"{c['max_policy_diff']:.1e}", f"{c['peak_rss_mb']:.0f}",
                      f"{c['target_s']:g}" if "target_s" in c else "")
    console.print(table)
    for name, c in r["cases"].items():
        console.print(f"{name}: fused runs {' '.join(f'{t:.3f}' for t in c['fused_runs'])} s (the fastest above); "
                      f"{c['tokens']:,} tokens per seed; memory estimate {c['estimated_memory_mb']:.0f} MB",
                      soft_wrap=True)
    if json_path is not None:
        write_json(json_path, r)
        console.print(f"wrote {json_path}")
