"""A many-prompt run directory: what ``ladsim run prompts`` writes.

Files (written into a temporary directory renamed into place only when complete):

* ``config.json``   every resolved setting, the sizes ``P, N, d``, where each part of the setting came from
  (a file and its SHA-256, or the seeds' streams), package versions;
* ``metrics.csv``   tidy: ``objective, seed, step`` and one column per metric, each the mean over prompts
  (``ladsim.prompts.world.PromptsWorld.metrics``);
* ``prompts.csv``   tidy: ``objective, seed, prompt, rho_base, rho_final, entropy_base, entropy_final``;
* ``passk.csv``     tidy: ``objective, seed, k, policy, pass_at_k`` with ``policy`` ``base`` or ``trained``
  (``ladsim.passk``);
* ``summary.json``  ``{"interval", "ks", "objectives": {name: {metric: {"mean", "lo", "hi"}}}, "base": {pass@k:
  ...}, "crossover_k": {name: k or null}, "crossover_gap": {name: trained - base there}, "seeds_crossing":
  {name: n}}`` at the last step;
* ``passk.png``     pass@k against ``k`` (log axis), the base and each objective, the gap ``trained - base``,
  and the coverage at ``k_max``, with 95% intervals over seeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ladsim.bandit.run import final_rows, package_versions
from ladsim.io import claimed_dir, unique_path, write_json
from ladsim.prompts.config import PromptsConfig
from ladsim.passk import crossovers, passk_intervals, passk_rows
from ladsim.prompts.setting import PARTS, SETTING_STREAMS, file_digest
from ladsim.prompts.trainer import PromptsResult, train_prompts
from ladsim.stats import METHOD, mean_interval

COVERAGE = ("solved_base_only", "solved_trained_only", "solved_both")


def summary_metrics(config: PromptsConfig) -> tuple[str, ...]:
    """The metrics a summary reports: rewards, pass@1 and pass@k_max, entropy, distances, coverage."""
    return ("expected_reward", f"pass@{config.ks()[-1]}", "entropy", "js_to_target", "kl_to_base", "unsolved",
            *COVERAGE)


def passk_frame(result: PromptsResult) -> pd.DataFrame:
    """Tidy ``objective, seed, k, policy, pass_at_k`` of every objective (its base rows repeated: each seed's
    base is its own)."""
    ks = result.config.ks()
    return pd.concat([passk_rows(name, result.rho_base, rho, ks) for name, rho in result.rho.items()],
                     ignore_index=True)


def prompts_frame(result: PromptsResult) -> pd.DataFrame:
    """Tidy ``objective, seed, prompt, rho_base, rho_final, entropy_base, entropy_final``."""
    frames = []
    for name, rho in result.rho.items():
        S, P = rho.shape
        frames.append(pd.DataFrame({"objective": name, "seed": np.repeat(np.arange(S), P),
                                    "prompt": np.tile(np.arange(P), S), "rho_base": result.rho_base.reshape(-1),
                                    "rho_final": rho.reshape(-1), "entropy_base": result.entropy_base.reshape(-1),
                                    "entropy_final": result.entropy[name].reshape(-1)}))
    return pd.concat(frames, ignore_index=True)


def summarize(result: PromptsResult, passk: pd.DataFrame | None = None) -> dict:
    """The run's summary (module docstring); ``passk``: :func:`passk_frame`'s, when already built."""
    passk = passk_frame(result) if passk is None else passk
    final = final_rows(result.metrics)
    metrics = summary_metrics(result.config)
    base = passk[(passk["policy"] == "base") & (passk["objective"] == passk["objective"].iloc[0])]
    cross = crossovers(passk).set_index("objective")
    return {
        "interval": METHOD, "ks": list(result.config.ks()),
        "objectives": {name: {m: mean_interval(group[m].to_numpy()) for m in metrics}
                       for name, group in final.groupby("objective", sort=False)},
        "base": {f"pass@{k}": mean_interval(g["pass_at_k"].to_numpy()) for k, g in base.groupby("k")},
        "crossover_k": {name: None if np.isnan(row.crossover_k) else int(row.crossover_k)
                        for name, row in cross.iterrows()},
        "crossover_gap": {name: None if np.isnan(row.gap) else float(row.gap) for name, row in cross.iterrows()},
        "seeds_crossing": {name: int(row.seeds_crossing) for name, row in cross.iterrows()},
        "crossover_note": "crossover_k: the smallest k where the base's pass@k (mean over seeds) exceeds the trained "
                          "policy's, null: never on the grid; crossover_gap: trained - base there (means over "
                          "seeds); seeds_crossing: seeds whose own curves cross",
    }


def check_finite(result: PromptsResult) -> None:
    """A diverged run (NaN or inf in the final policy's success or the final metrics) is an error."""
    for name, rho in result.rho.items():
        if not np.all(np.isfinite(rho)) or not np.all(np.isfinite(result.entropy[name])):
            raise ValueError(f"training diverged: objective {name}'s final policy is not finite (NaN or inf); "
                             f"lower --lr")
    values = final_rows(result.metrics).drop(columns=["objective", "seed", "step"])
    if not np.all(np.isfinite(values.to_numpy(dtype=np.float64))):
        raise ValueError("training diverged: the final metrics are not finite (NaN or inf); lower --lr")


def setting_sources(config: PromptsConfig) -> dict:
    """Where each part of the setting came from: its file and SHA-256, or the seeds' streams."""
    out = {}
    for part in PARTS:
        path = getattr(config, part)
        out[part] = ({"file": str(path), "sha256": file_digest(path)} if path is not None else
                     {"drawn": f"per seed i from the stream (seed, {SETTING_STREAMS} + i) (ladsim.prompts.setting)"})
    return out


def default_run_dir(config: PromptsConfig) -> Path:
    """``runs/prompts-P<P>-N<N>-d<d>-<time>``, made unique when it exists."""
    P, N, d = config.sizes
    return unique_path(Path("runs") / f"prompts-P{P}-N{N}-d{d}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_prompts(config: PromptsConfig, out: str | Path | None = None, *, overwrite: bool = False,
                on_steps: Callable[[int], None] | None = None, threads: int | None = None
                ) -> tuple[Path, dict, PromptsResult]:
    """Train ``config`` and write its run directory: ``(directory, summary, result)``.

    ``out`` is checked and claimed before any training (``ladsim.io.claimed_dir``); ``None`` picks
    :func:`default_run_dir`. A diverged run raises ``ValueError`` and writes nothing.
    """
    default_out = out is None
    out = default_run_dir(config) if default_out else Path(out)
    with claimed_dir(out, overwrite, unique=default_out) as claim:
        result = train_prompts(config, on_steps=on_steps, threads=threads)
        check_finite(result)
        summary = write_run_files(result, claim.tmp)
    return claim.out, summary, result


def write_run_files(result: PromptsResult, tmp: Path) -> dict:
    """Write the run's files into the claimed directory ``tmp``; return the summary."""
    from ladsim.plots import plot_prompts_run, save_figure

    config = result.config
    P, N, d = config.sizes
    passk = passk_frame(result)
    summary = summarize(result, passk)
    write_json(tmp / "config.json", {
        "prompts": config.to_dict(),
        "sizes": {"prompts": P, "answers": N, "features": d,
                  "trainable_per_seed": d + (P * N if config.tabular else 0)},
        "setting": setting_sources(config),
        "seed_indices": list(range(config.seeds)),
        "seed_note": "seed index i trains from its own random stream, keyed by (seed, i) (ladsim.streams)",
        "versions": package_versions(),
    })
    result.metrics.to_csv(tmp / "metrics.csv", index=False)
    prompts_frame(result).to_csv(tmp / "prompts.csv", index=False)
    passk.to_csv(tmp / "passk.csv", index=False)
    write_json(tmp / "summary.json", summary)
    final = final_rows(result.metrics)
    coverage = {name: {m: mean_interval(g[m].to_numpy()) for m in COVERAGE}
                for name, g in final.groupby("objective", sort=False)}
    fig = plot_prompts_run(passk_intervals(passk), coverage, summary["crossover_k"], summary["crossover_gap"],
                           k_max=config.ks()[-1],
                           title=f"{P} prompts x {N} answers, d = {d} shared features"
                                 + (" + tabular" if config.tabular else "") + f", {config.mode}, "
                                 + ("pi_old frozen" if config.refresh_every == 0 else
                                    f"pi_old refreshed every {config.refresh_every}") + f", {config.steps} steps, "
                                 f"{config.seeds} seeds")
    save_figure(fig, tmp / "passk.png")
    return summary
