"""Gathering a study: the cached runs' frames -> tidy frames with the grid's columns first, their summaries over
seeds (``summary`` at the last step, ``curves`` at every logged step, pools of grid values), and the figure data
on disk (``<data>/<study>_<frame>.csv`` plus a ``<study>.json`` index)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ladsim.io import atomic_file, write_json
from ladsim.stats import METHOD, bootstrap_interval
from ladsim.studies.parse import Study

DEFAULT_DATA = Path("figures") / "data"


@dataclass
class StudyResult:
    """A study's frames (grid columns first) and what running it cost."""

    study: Study
    frames: dict[str, pd.DataFrame]
    computed: int
    cached: int
    seconds: float


def gather(study: Study, results: dict[str, dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Concatenate each saved frame over the runs, grid columns first; add ``summary`` if asked."""
    out = {}
    names = study.frames + (("final",) if study.summary and "final" not in study.frames else ()) \
        + (("trajectory",) if study.curves and "trajectory" not in study.frames else ())
    for name in names:
        parts = []
        for run in study.runs:
            frame = results[run.key][name].copy()
            for i, (axis, label) in enumerate(run.labels):
                frame.insert(i, axis, label)
            parts.append(frame)
        out[name] = pd.concat(parts, ignore_index=True)
    if study.summary:
        final = out["final"]
        pooled = [pool(final, list(study.axes), axis, label, members, study.summary)
                  for axis, groups in study.pools.items() for label, members in groups.items()]
        out["summary"] = summarize(pd.concat([final, *pooled], ignore_index=True), list(study.axes),
                                   study.summary)
        if "final" not in study.frames:
            del out["final"]
    if study.curves:
        out["curves"] = summarize(out["trajectory"], list(study.axes) + ["step"], study.curves)
        if "trajectory" not in study.frames:
            del out["trajectory"]
    return out


def pool(final: pd.DataFrame, axes: list[str], axis: str, label: str, members: list,
         metrics: tuple[str, ...]) -> pd.DataFrame:
    """Rows standing for a pool of grid values: per (other axes, objective, seed), each metric averaged over
    the pool's ``members`` on ``axis``; ``axis`` holds ``label``. Averaging per seed first keeps the seeds
    paired, so the bootstrap over seeds gives the interval of the pool's mean."""
    rows = final[final[axis].isin(members)]
    keys = [a for a in axes if a != axis] + ["objective", "seed"]
    grouped = rows.groupby(keys, sort=False, dropna=False)
    if len(rows) and (grouped[axis].nunique().to_numpy() != len(members)).any():
        raise ValueError(f"pool {label!r}: not every grid point has all of {members}")
    out = grouped[list(metrics)].mean().reset_index()
    out.insert(0, axis, label)
    return out


def summarize(final: pd.DataFrame, axes: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per (grid point, objective, metric): ``seeds, mean, lo, hi`` over seeds at the last step."""
    missing = [m for m in metrics if m not in final.columns]
    if missing:
        raise ValueError(f"unknown summary metric(s) {missing}; known: "
                         f"{', '.join(c for c in final.columns if c not in (*axes, 'objective', 'seed'))}")
    keys = list(axes) + ["objective"]
    rows = []
    for group_key, group in final.groupby(keys, sort=False, dropna=False):
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        for metric in metrics:
            mean, lo, hi = bootstrap_interval(group[metric].to_numpy())
            rows.append({**dict(zip(keys, group_key)), "metric": metric, "seeds": len(group),
                         "mean": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def data_path(data_dir: str | Path, study: Study, frame: str) -> Path:
    return Path(data_dir) / f"{study.name}_{frame}.csv"


def save_data(result: StudyResult, data_dir: str | Path = DEFAULT_DATA) -> list[Path]:
    """Write each frame as ``<data_dir>/<study>_<frame>.csv`` and a ``<study>.json`` index, atomically."""
    written = []
    for name, frame in result.frames.items():
        path = data_path(data_dir, result.study, name)
        with atomic_file(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        written.append(path)
    index = Path(data_dir) / f"{result.study.name}.json"
    write_json(index, {
        "study": result.study.name, "file": str(result.study.path) if result.study.path else None,
        "frames": sorted(result.frames), "runs": len(result.study.runs),
        "columns": {name: [str(c) for c in frame.columns] for name, frame in result.frames.items()},
        "run_keys": [r.key for r in result.study.runs],
        **({"interval": METHOD} if {"summary", "curves"} & set(result.frames) else {}),
    })
    return written + [index]


def load_data(study: Study, data_dir: str | Path = DEFAULT_DATA) -> dict[str, pd.DataFrame]:
    """The frames ``save_data`` wrote for ``study``; ``ValueError`` when the study has not been run."""
    index = Path(data_dir) / f"{study.name}.json"
    if not index.is_file():
        raise ValueError(f"no data for study {study.name} in {data_dir}; "
                         f"run `ladsim study run {study.path}` first")
    meta = json.loads(index.read_text())
    keys = [r.key for r in study.runs]
    if meta.get("run_keys") != keys:
        raise ValueError(f"the data in {data_dir} for study {study.name} is from other settings than "
                         f"{study.path}; run `ladsim study run {study.path}` again")
    frames = {}
    for name in meta["frames"]:
        path = data_path(data_dir, study, name)
        if not path.is_file():
            raise ValueError(f"{path} is missing; run `ladsim study run {study.path}` again")
        frames[name] = pd.read_csv(path)
        missing = [c for c in meta.get("columns", {}).get(name, []) if c not in frames[name].columns]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}; run `ladsim study run {study.path}` again")
    return frames
