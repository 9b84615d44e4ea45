"""A bandit run directory: what ``ladsim run bandit`` writes, and the summary it prints.

Files (written into a temporary directory that is renamed into place only when complete):

* ``config.json``        every resolved setting, the seeds, the reward spec, package versions;
* ``metrics.csv``        tidy: ``objective, seed, step`` and one column per metric (``ladsim.bandit.metrics``);
* ``final_policy.csv``   tidy: ``objective, seed, arm, probability`` plus the target and the reward per arm;
* ``summary.json``       ``{"objectives": {name: {metric: {"mean", "lo", "hi"}}}}`` at the final step, the
  interval being a 95% Student-t interval of the mean over seeds (``lo = hi = mean`` for one seed or when
  every seed agrees);
* ``distribution.png``   the target beside each objective's final policy (the paper's Figure 1 layout).
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from ladsim.bandit.metrics import STD_TARGET_METRICS, SUMMARY_METRICS
from ladsim.bandit.trainer import TrainResult
from ladsim.io import atomic_dir, write_json
from ladsim.plots import plot_distribution, save_figure


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("ladsim", "torch", "numpy", "scipy", "pandas", "matplotlib", "typer"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def mean_interval(values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean and a Student-t ``level`` interval of the mean of ``values (S,)``."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0:
        return {"mean": mean, "lo": mean, "hi": mean}
    from scipy.special import stdtrit  # the Student-t quantile, without scipy.stats' 0.4 s import

    half = stdtrit(values.size - 1, 0.5 + level / 2) * values.std(ddof=1) / np.sqrt(values.size)
    return {"mean": mean, "lo": float(mean - half), "hi": float(mean + half)}


def summarize(result: TrainResult, metrics: tuple[str, ...] = SUMMARY_METRICS) -> dict:
    """``{"objectives": {objective: {metric: {"mean", "lo", "hi"}}}}`` at the last logged step."""
    frame = result.metrics
    final = frame[frame["step"] == frame["step"].max()]
    metrics = tuple(metrics) + tuple(m for m in STD_TARGET_METRICS if m in frame.columns and m not in metrics)
    return {"objectives": {
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
    final = result.metrics[result.metrics["step"] == result.metrics["step"].max()]
    values = final[list(SUMMARY_METRICS)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("training diverged: the final metrics are not finite (NaN or inf); lower --lr or the "
                         "reward scale")


def write_run(result: TrainResult, out: str | Path, overwrite: bool = False) -> dict:
    """Check ``result`` (``check_finite``), write the run directory ``out`` atomically, return the summary."""
    check_finite(result)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        return write_run_files(result, tmp)


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
    fig = plot_distribution(result.target, means, spread=spread,
                            title=f"{config.arms}-armed bandit, f = {config.div}, eta = {config.eta}, "
                                  f"{config.steps} steps, {config.mode} expectations")
    save_figure(fig, tmp / "distribution.png")
    return summary
