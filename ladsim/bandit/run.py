"""A bandit run directory: what ``ladsim run bandit`` writes, and the summary it prints.

Files (written into a temporary directory that is renamed into place only when complete):

* ``config.json``        every resolved setting, the seeds, the reward spec, package versions;
* ``metrics.csv``        tidy: ``objective, seed, step`` and one column per metric (``ladsim.bandit.metrics``);
* ``final_policy.csv``   tidy: ``objective, seed, arm, probability`` plus the target and the reward per arm;
* ``summary.json``       ``{"interval": method, "objectives": {name: {metric: {"mean", "lo", "hi"}}}}`` at the
  final step, the interval being ladsim's one estimator (``ladsim.stats``: 95% percentile bootstrap of the mean
  over seeds; ``lo = hi = mean`` for one seed or when every seed agrees);
* ``distribution.png``   the target beside each objective's final policy (the paper's Figure 1 layout).
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ladsim.bandit.metrics import STD_TARGET_METRICS, SUMMARY_METRICS
from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import TrainResult, train
from ladsim.io import claimed_dir, unique_path, write_json
from ladsim.stats import METHOD, mean_interval
from ladsim.plots import distance_notes, plot_distribution, save_figure


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("ladsim", "torch", "numpy", "scipy", "pandas", "matplotlib", "typer"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of a tidy metrics frame at its last logged step (every objective and seed)."""
    return metrics[metrics["step"] == metrics["step"].max()]


def summarize(result: TrainResult, metrics: tuple[str, ...] = SUMMARY_METRICS) -> dict:
    """``{"interval": METHOD, "objectives": {objective: {metric: {"mean", "lo", "hi"}}}}`` at the last logged
    step, the intervals from :func:`ladsim.stats.mean_interval`."""
    final = final_rows(result.metrics)
    metrics = tuple(metrics) + tuple(m for m in STD_TARGET_METRICS if m in final.columns and m not in metrics)
    return {"interval": METHOD, "objectives": {
        objective: {m: mean_interval(group[m].to_numpy()) for m in metrics}
        for objective, group in final.groupby("objective", sort=False)
    }}


def final_policy_frame(result: TrainResult) -> pd.DataFrame:
    frames = []
    for objective, policy in result.final_policy.items():
        S, N = policy.shape
        frames.append(pd.DataFrame({
            "objective": objective,
            "seed": np.repeat(np.arange(S), N),
            "arm": np.tile(np.arange(N), S),
            "probability": policy.reshape(-1),
            "target": np.tile(result.target, S),
            "reward": np.tile(result.rewards, S),
        }))
    return pd.concat(frames, ignore_index=True)


def check_finite(result: TrainResult) -> None:
    """Refuse a run whose final policy or summary metrics are not finite (``ValueError``): a diverged run
    (a learning rate or rewards too large for the dtype) must fail loudly, not write NaN tables."""
    for objective, policy in result.final_policy.items():
        if not np.all(np.isfinite(policy)):
            raise ValueError(f"training diverged: objective {objective}'s final policy is not finite (NaN or inf); "
                             f"lower --lr or the reward scale")
    values = final_rows(result.metrics)[list(SUMMARY_METRICS)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("training diverged: the final metrics are not finite (NaN or inf); lower --lr or the "
                         "reward scale")


def default_run_dir(config: BanditConfig) -> Path:
    """``runs/bandit-<div>-<time>``, made unique (``-2``, ``-3``, ...) when it exists."""
    return unique_path(Path("runs") / f"bandit-{config.div}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(config: BanditConfig, out: str | Path | None = None, *, overwrite: bool = False,
        on_steps: Callable[[int], None] | None = None, threads: int | None = None) -> tuple[Path, dict, TrainResult]:
    """Train ``config`` and write its run directory: ``(directory, summary, result)``.

    ``out`` is checked before any training and claimed exclusively while the run writes (a concurrent run with
    the same ``out`` gets a ``ValueError``); ``None`` picks :func:`default_run_dir`. ``overwrite`` replaces only
    a directory ladsim wrote. A diverged run (non-finite metrics) raises ``ValueError`` and writes nothing.
    ``threads``: torch threads for the training (default: chosen by problem size, ``train``'s rule).
    """
    default_out = out is None
    out = default_run_dir(config) if default_out else Path(out)
    with claimed_dir(out, overwrite, unique=default_out) as claim:  # checks `out` first: before any training
        result = train(config, on_steps=on_steps, threads=threads)
        check_finite(result)
        summary = write_run_files(result, claim.tmp)
    return claim.out, summary, result


def write_run_files(result: TrainResult, tmp: Path) -> dict:
    """Write the run's files into the (temporary, claimed) directory ``tmp``; return the summary."""
    config = result.config
    summary = summarize(result)
    write_json(tmp / "config.json", {
        "bandit": config.to_dict(),
        "seed_indices": list(range(config.seeds)),
        "seed_note": "seed index i draws from its own random stream, keyed by (seed, i) (ladsim.streams)",
        "reward_spec": config.reward_spec().describe(),
        "versions": package_versions(),
    })
    result.metrics.to_csv(tmp / "metrics.csv", index=False)
    final_policy_frame(result).to_csv(tmp / "final_policy.csv", index=False)
    write_json(tmp / "summary.json", summary)
    means = {name: p.mean(0) for name, p in result.final_policy.items()}
    spread = {name: np.percentile(p, [2.5, 97.5], axis=0) for name, p in result.final_policy.items()
              if p.shape[0] > 1}
    notes = distance_notes(final_rows(result.metrics), len(config.reward_spec().modes()))
    fig = plot_distribution(result.target, means, spread=spread, notes=notes,
                            title=f"{config.arms}-armed bandit, f = {config.div}, eta = {config.eta}, "
                                  f"{config.steps} steps, {config.mode} expectations")
    save_figure(fig, tmp / "distribution.png")
    return summary
