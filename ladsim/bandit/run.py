"""A bandit run directory: what ``ladsim run bandit`` writes, and the summary it prints.

Files (written into a temporary directory that is renamed into place only when complete):

* ``config.json``        every resolved setting, the seeds, the reward spec, package versions;
* ``metrics.csv``        tidy: ``objective, seed, step`` and one column per metric (``ladsim.bandit.metrics``);
* ``final_policy.csv``   tidy: ``objective, seed, arm, probability`` plus the target and the reward per arm;
* ``summary.json``       ``{"interval": method, "objectives": {name: {metric: {"mean", "lo", "hi"}}}}`` at the
  final step, the interval being ladsim's one estimator (``ladsim.stats``: 95% percentile bootstrap of the mean
  over seeds; ``lo = hi = mean`` for one seed or when every seed agrees);
* ``distribution.png``   the target beside each objective's final policy (the paper's Figure 1 layout) and the
  learning curves below: JS to the target, entropy and mass on the top arm over the steps, mean and the
  middle 95% of the seeds (``ladsim.quicklook``).

The run is written from numpy arrays (:class:`RunArrays`) with the ``csv`` module and Pillow: neither pandas nor
matplotlib (0.2 s and 0.4 s to import) is on the path of ``ladsim run bandit``. :func:`run` gives Python callers
the usual :class:`~ladsim.bandit.trainer.TrainResult` with its pandas frame.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from ladsim.bandit import trainer
from ladsim.bandit.config import BanditConfig
from ladsim.bandit.metrics import STD_TARGET_METRICS, SUMMARY_METRICS
from ladsim.bandit.trainer import TrainResult, target_log_distribution
from ladsim.io import claimed_dir, unique_path, write_json
from ladsim.stats import METHOD, mean_interval

if TYPE_CHECKING:
    import pandas as pd

FIGURE = "distribution.png"
SPREAD = (2.5, 97.5)  # the band over seeds drawn in the figure: percentiles of the seeds


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("ladsim", "torch", "numpy", "scipy", "pandas", "matplotlib", "typer"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class RunArrays:
    """A trained bandit run as numpy arrays: what the run directory is written from.

    Attributes:
        config: the settings.
        steps: ``(T,)`` the logged steps.
        trajectories: objective -> metric -> ``(T, S)`` values at the logged steps.
        final_policy: objective -> ``(S, N)`` final action probabilities.
        target: ``(N,)`` the target ``pi_old exp(A/eta) / Z`` at the prior.
        rewards: ``(N,)`` expected reward per arm.
    """

    config: BanditConfig
    steps: np.ndarray
    trajectories: dict[str, dict[str, np.ndarray]]
    final_policy: dict[str, np.ndarray]
    target: np.ndarray
    rewards: np.ndarray

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """The tidy metrics as columns: ``objective, seed, step`` and one per metric, a row per (objective,
        logged step, seed) in that order (the rows and columns of ``TrainResult.metrics``)."""
        T, S = len(self.steps), self.config.seeds
        names = list(self.trajectories)
        columns = {"objective": np.repeat(np.array(names, dtype=object), T * S),
                   "seed": np.tile(np.arange(S), T * len(names)),
                   "step": np.tile(np.repeat(self.steps, S), len(names))}
        for metric in self.trajectories[names[0]]:
            columns[metric] = np.concatenate([t[metric].reshape(-1) for t in self.trajectories.values()])
        return columns

    def to_result(self) -> TrainResult:
        """The same run as ``trainer.train`` returns it (a pandas frame of the metrics)."""
        import pandas as pd

        return TrainResult(self.config, pd.DataFrame(self.metrics), self.final_policy, self.target, self.rewards)


def train_arrays(config: BanditConfig, on_steps: Callable[[int], None] | None = None,
                 threads: int | None = None) -> RunArrays:
    """Train every objective of ``config`` (``trainer.train_objective``, the fused engine) into numpy arrays."""
    trajectories, finals = {}, {}
    for objective in config.objectives:
        trajectory, finals[objective] = trainer.train_objective(config, objective, on_steps, threads=threads)
        steps = trajectory.pop("step")
        trajectories[objective] = trajectory
    return RunArrays(config, steps, trajectories, finals, target_log_distribution(config).exp().numpy(),
                     config.reward_spec().expected_rewards())


def last_step(metrics: Mapping) -> np.ndarray:
    """The boolean mask of the rows at the last logged step, for tidy ``metrics`` (a frame or columns)."""
    step = np.asarray(metrics["step"])
    return step == step.max()


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of a tidy metrics frame at its last logged step (every objective and seed)."""
    return metrics[last_step(metrics)]


def summarize(result: TrainResult | RunArrays, metrics: tuple[str, ...] = SUMMARY_METRICS) -> dict:
    """``{"interval": METHOD, "objectives": {objective: {metric: {"mean", "lo", "hi"}}}}`` at the last logged
    step, the intervals from :func:`ladsim.stats.mean_interval`."""
    columns, last = result.metrics, last_step(result.metrics)
    objective = np.asarray(columns["objective"])[last]
    metrics = tuple(metrics) + tuple(m for m in STD_TARGET_METRICS if m in columns and m not in metrics)
    return {"interval": METHOD, "objectives": {
        name: {m: mean_interval(np.asarray(columns[m])[last][objective == name]) for m in metrics}
        for name in dict.fromkeys(objective)
    }}


def final_policy_columns(result: TrainResult | RunArrays) -> dict[str, np.ndarray]:
    """``objective, seed, arm, probability, target, reward``: a row per (objective, seed, arm)."""
    parts = []
    for objective, policy in result.final_policy.items():
        S, N = policy.shape
        parts.append({"objective": np.full(S * N, objective, dtype=object), "seed": np.repeat(np.arange(S), N),
                      "arm": np.tile(np.arange(N), S), "probability": policy.reshape(-1),
                      "target": np.tile(result.target, S), "reward": np.tile(result.rewards, S)})
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def final_policy_frame(result: TrainResult | RunArrays) -> pd.DataFrame:
    """:func:`final_policy_columns` as a pandas frame."""
    import pandas as pd

    return pd.DataFrame(final_policy_columns(result))


def write_csv(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    """Tidy ``columns`` as CSV, byte for byte what ``pandas.DataFrame(columns).to_csv(path, index=False)``
    writes: a header, then each value as numpy's ``str`` (floats in their shortest round-trip form, in their
    own dtype), NaN as an empty cell, a text cell quoted where it holds a comma, a quote or a line break."""
    cells = []
    for column in map(np.asarray, columns.values()):
        text = column.astype(str)
        if column.dtype.kind == "f":
            text[np.isnan(column)] = ""
        elif column.dtype.kind in "OU":
            quoted = {value: csv_field(value) for value in set(text.tolist())}
            text = np.array([quoted[value] for value in text.tolist()], dtype=object)
        cells.append(text.tolist())
    with open(path, "w") as f:
        f.write(",".join(map(csv_field, columns)) + "\n")
        f.writelines(",".join(row) + "\n" for row in zip(*cells))


def csv_field(text: str) -> str:
    """``text`` as a CSV cell: quoted (inner quotes doubled) where it holds a comma, a quote or a line break,
    as the ``csv`` module's minimal quoting does."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def check_finite(result: TrainResult | RunArrays) -> None:
    """Refuse a run whose final policy or summary metrics are not finite (``ValueError``): a diverged run
    (a learning rate or rewards too large for the dtype) must fail loudly, not write NaN tables."""
    for objective, policy in result.final_policy.items():
        if not np.all(np.isfinite(policy)):
            raise ValueError(f"training diverged: objective {objective}'s final policy is not finite (NaN or inf); "
                             f"lower --lr or the reward scale")
    last = last_step(result.metrics)
    if not all(np.all(np.isfinite(np.asarray(result.metrics[m], dtype=np.float64)[last])) for m in SUMMARY_METRICS):
        raise ValueError("training diverged: the final metrics are not finite (NaN or inf); lower --lr or the "
                         "reward scale")


def default_run_dir(config: BanditConfig) -> Path:
    """``runs/bandit-<div>-<time>``, made unique (``-2``, ``-3``, ...) when it exists."""
    return unique_path(Path("runs") / f"bandit-{config.div}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(config: BanditConfig, out: str | Path | None = None, *, overwrite: bool = False,
        on_steps: Callable[[int], None] | None = None, threads: int | None = None,
        frames: bool = True) -> tuple[Path, dict, TrainResult | RunArrays]:
    """Train ``config`` and write its run directory: ``(directory, summary, result)``.

    ``out`` is checked before any training and claimed exclusively while the run writes (a concurrent run with
    the same ``out`` gets a ``ValueError``); ``None`` picks :func:`default_run_dir`. ``overwrite`` replaces only
    a directory ladsim wrote. A diverged run (non-finite metrics) raises ``ValueError`` and writes nothing.
    ``threads``: torch threads for the training (default: chosen by problem size, ``train``'s rule).
    ``result`` is a ``TrainResult`` (pandas frames); ``frames=False``: the :class:`RunArrays` (no pandas).
    """
    default_out = out is None
    out = default_run_dir(config) if default_out else Path(out)
    with claimed_dir(out, overwrite, unique=default_out) as claim:  # checks `out` first: before any training
        result = train_arrays(config, on_steps=on_steps, threads=threads)
        check_finite(result)
        summary = write_run_files(result, claim.tmp)
    return claim.out, summary, result.to_result() if frames else result


def write_run_files(result: RunArrays, tmp: Path) -> dict:
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
    write_csv(tmp / "metrics.csv", result.metrics)
    write_csv(tmp / "final_policy.csv", final_policy_columns(result))
    write_json(tmp / "summary.json", summary)
    draw_run_figure(result, summary, len(config.reward_spec().modes())).save(tmp / FIGURE)
    return summary


def spread(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """The band over seeds (axis ``axis``) the figure draws: the ``SPREAD`` percentiles, ``(2, ...)``."""
    return np.percentile(values, SPREAD, axis=axis)


def draw_run_figure(result: RunArrays, summary: dict, n_modes: int):
    """The run's figure (``ladsim.quicklook.bandit_run_figure``): final policies, their distance notes from
    ``summary``, and the learning curves of ``quicklook.CURVES`` (mean and ``SPREAD`` band over seeds)."""
    from ladsim.quicklook import CURVES, bandit_run_figure

    config = result.config
    means = {name: p.mean(0) for name, p in result.final_policy.items()}
    bands = {name: spread(p) for name, p in result.final_policy.items() if p.shape[0] > 1}
    notes = {name: f"JS to P_A = {m['js_to_target']['mean']:.2g} nats\nmodes kept: {m['mode_coverage']['mean']:.0f} "
                   f"of {n_modes}\ntop arm: {m['top_arm_mass']['mean']:.2f}"  # Figure 1's notes (plots.distance_notes)
             for name, m in summary["objectives"].items()}
    curves = {metric: {name: (result.steps, t[metric].mean(1), *spread(t[metric], axis=1))
                       for name, t in result.trajectories.items()} for metric in CURVES}
    return bandit_run_figure(result.target, means, curves, spread=bands, notes=notes, seeds=config.seeds,
                             title=f"{config.arms}-armed bandit, f = {config.div}, eta = {config.eta}, "
                                   f"{config.steps} steps, {config.mode} expectations")
