"""A token-tree run directory: what ``ladsim run tree`` writes (the bandit's layout, responses for arms).

Files (written into a temporary directory renamed into place only when complete):

* ``config.json``        every resolved setting, the tree's sizes, the reward spec, package versions;
* ``metrics.csv``        tidy: ``objective, seed, step`` and one column per metric (``ladsim.tree.world``);
* ``final_policy.csv``   tidy: ``objective, seed, response, length, probability, target, reward``; ``response``
  is the tokens as space-separated integers with the EOS (``2 1 3 0``);
* ``summary.json``       ``{"interval": method, "objectives": {name: {metric: {"mean", "lo", "hi"}}}}`` at the
  last step (``ladsim.stats``);
* ``distribution.png``   the responses against ``P_A``, their mass by length, and the learning curves.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ladsim.bandit.run import final_rows, package_versions
from ladsim.io import claimed_dir, unique_path, write_json
from ladsim.stats import METHOD, bootstrap_interval, mean_interval
from ladsim.tree.config import TreeConfig
from ladsim.tree.trainer import TreeResult, train_tree

SUMMARY_METRICS = ("js_to_target", "tv_to_target", "correct_mass", "top_response_mass", "entropy", "node_entropy",
                   "mode_coverage", "expected_reward", "mean_length", "length_correct", "length_incorrect",
                   "truncation_rate")
CURVES = ("js_to_target", "length_correct", "length_incorrect")


def summarize(result: TreeResult) -> dict:
    """``{"interval": METHOD, "objectives": {objective: {metric: {"mean", "lo", "hi"}}}}`` at the last step."""
    final = final_rows(result.metrics)
    return {"interval": METHOD, "objectives": {
        objective: {m: mean_interval(group[m].to_numpy()) for m in SUMMARY_METRICS}
        for objective, group in final.groupby("objective", sort=False)}}


def check_finite(result: TreeResult) -> None:
    """A diverged run (NaN or inf in the final policy or the distances to the target) is an error."""
    for objective, policy in result.final_policy.items():
        if not np.all(np.isfinite(policy)):
            raise ValueError(f"training diverged: objective {objective}'s final policy is not finite (NaN or inf); "
                             f"lower --lr or the reward scale")
    values = final_rows(result.metrics)[["js_to_target", "tv_to_target", "entropy", "expected_reward"]]
    if not np.all(np.isfinite(values.to_numpy(dtype=np.float64))):
        raise ValueError("training diverged: the final metrics are not finite (NaN or inf); lower --lr")


def final_policy_frame(result: TreeResult) -> pd.DataFrame:
    tree = result.config.tree()
    names, lengths = np.array(tree.response_strings()), tree.response_length
    frames = []
    for objective, policy in result.final_policy.items():
        S, R = policy.shape
        frames.append(pd.DataFrame({"objective": objective, "seed": np.repeat(np.arange(S), R),
                                    "response": np.tile(names, S), "length": np.tile(lengths, S),
                                    "probability": policy.reshape(-1), "target": np.tile(result.target, S),
                                    "reward": np.tile(result.rewards, S)}))
    return pd.concat(frames, ignore_index=True)


def curves(metrics: pd.DataFrame, names: tuple[str, ...] = CURVES) -> dict[str, dict[str, tuple]]:
    """metric -> objective -> ``(steps, mean, lo, hi)``: the mean over seeds at each logged step and its
    interval (``ladsim.stats.bootstrap_interval``)."""
    out: dict[str, dict[str, tuple]] = {name: {} for name in names}
    for objective, group in metrics.groupby("objective", sort=False):
        steps = np.sort(group["step"].unique())
        for name in names:
            rows = [bootstrap_interval(g[name].to_numpy()) for _, g in group.groupby("step", sort=True)]
            mean, lo, hi = (np.array(c) for c in zip(*rows))
            out[name][objective] = (steps, mean, lo, hi)
    return out


def default_run_dir(config: TreeConfig) -> Path:
    """``runs/tree-V<V>-L<L>-<time>``, made unique when it exists."""
    return unique_path(Path("runs") / f"tree-V{config.vocab}-L{config.length}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_tree(config: TreeConfig, out: str | Path | None = None, *, overwrite: bool = False,
             on_steps: Callable[[int], None] | None = None, threads: int | None = None
             ) -> tuple[Path, dict, TreeResult]:
    """Train ``config`` and write its run directory: ``(directory, summary, result)``.

    ``out`` is checked and claimed before any training (``ladsim.io.claimed_dir``); ``None`` picks
    :func:`default_run_dir`. A diverged run raises ``ValueError`` and writes nothing.
    """
    default_out = out is None
    out = default_run_dir(config) if default_out else Path(out)
    with claimed_dir(out, overwrite, unique=default_out) as claim:
        result = train_tree(config, on_steps=on_steps, threads=threads)
        check_finite(result)
        summary = write_run_files(result, claim.tmp)
    return claim.out, summary, result


def write_run_files(result: TreeResult, tmp: Path) -> dict:
    """Write the run's files into the claimed directory ``tmp``; return the summary."""
    from ladsim.plots import plot_tree_run, save_figure

    config, tree = result.config, result.config.tree()
    summary = summarize(result)
    write_json(tmp / "config.json", {
        "tree": config.to_dict(),
        "sizes": {"nodes": tree.n_nodes, "edges": tree.n_edges, "responses": tree.n_responses,
                  "tokens": tree.n_tokens},
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
    fig = plot_tree_run(result.target, means, tree.response_length, config.reward_spec().correct,
                        curves(result.metrics), labels=tree.response_strings(), spread=spread,
                        title=f"token tree V = {config.vocab}, L = {config.length}, f = {config.div}, "
                              f"eta = {config.eta}, {config.agg}, {config.ratio} ratio, {config.mode}, "
                              f"{config.steps} steps")
    save_figure(fig, tmp / "distribution.png")
    return summary
