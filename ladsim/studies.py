"""Studies: a TOML file -> a grid of runs -> tidy DataFrames, every run cached under a hash of its settings.

A study file (``studies/*.toml``)::

    [study]
    name = "fig3_eta"              # default: the file's stem; also the figure's file name
    kind = "bandit"                # "bandit" (ladsim.bandit) or "landscape" (ladsim.landscape)
    figure = "eta_sweep"           # the plot function (ladsim.plots.FIGURES) that draws the data
    title = "..."                  # the figure's title
    frames = ["final"]             # the frames saved as figure data (see below)
    summary = ["expected_reward"]  # metrics summarized over seeds (mean, 95% bootstrap interval)
    curves = ["entropy"]           # metrics summarized over seeds at every logged step (frame ``curves``)

    [base]                         # settings shared by every run (BanditConfig / LandscapeConfig fields)
    reward = "correct"
    steps = 1000

    [[grid]]                       # a Cartesian product; several [[grid]] blocks are concatenated
    objective = ["lad"]            # one run per objective
    eta = [0.5, 1, 2]              # a scalar axis: the setting of the same name
    regime = [{label = "exact", mode = "exact"}, {label = "G=4", mode = "sampled", group_size = 4}]
                                   # a table axis: each value sets several settings; its column holds `label`

    [plot]                         # passed to the figure function as keyword arguments

Frames of a bandit run: ``final`` (objective, seed and every metric at the last step), ``trajectory`` (every
logged step), ``policy`` (objective, seed, arm, probability, target, reward). Frames of a landscape run:
``grid``, ``trajectory``, ``optimum`` (``ladsim.landscape.run_landscape``). Each saved frame carries the
grid's columns first. With ``summary`` the study also returns ``summary``: one row per grid point, objective
and metric with ``mean, lo, hi`` (``scipy.stats.bootstrap``, percentile method, 95%) over seeds. ``pools``
(``[study.pools.AXIS]``, label = list of values) add rows for groups of values along an axis, each metric
averaged per seed over the group before the bootstrap (the strict/non-strict classes of Figure 4). With
``curves`` it also returns ``curves``: the same summary at every logged step (a ``step`` column).

Objective parameters: a dotted setting ``"flowrl.beta" = 5`` (in ``[base]``, as a grid axis or inside a
table axis) sets that objective's parameter (``ladsim objectives`` lists them); it is the ``params`` field of
the run's configuration.

Caching: a run is one configuration with one objective (bandit) or one full landscape config. Its key is the
SHA-256 of the canonical JSON of ``{kind, every setting, CACHE_VERSION}``; its result is one ``.npz`` file
``<cache>/<key>.npz`` written atomically, so an interrupted study resumes where it stopped, a finished run is
never recomputed, runs shared by two studies are computed once, and a changed setting changes exactly the keys
of the runs it enters. A cache file that cannot be read is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import re
import time
import tomllib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from ladsim.io import atomic_file, write_json

CACHE_VERSION = 2  # bump when a run's output format or meaning changes: every cached run is then recomputed
KINDS = ("bandit", "landscape")
BANDIT_FRAMES = ("final", "trajectory", "policy")
LANDSCAPE_FRAMES = ("grid", "trajectory", "optimum")
STUDY_KEYS = {"name", "kind", "figure", "title", "caption", "frames", "summary", "curves", "pools"}
BOOTSTRAP_RESAMPLES = 4999
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a file-name stem: no '/', no '..', not absolute
DEFAULT_CACHE = Path("studies") / "cache"
DEFAULT_DATA = Path("figures") / "data"


# --- configurations -------------------------------------------------------------------------------

def _config_class(kind: str):
    if kind == "bandit":
        from ladsim.bandit.config import BanditConfig

        return BanditConfig
    from ladsim.landscape import LandscapeConfig

    return LandscapeConfig


def _coerce(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as the config class expects them: lists -> tuples, integers in float fields -> floats.

    ``eta = 1`` and ``eta = 1.0`` are the same setting and must hash the same.
    """
    cls = _config_class(kind)
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out = {}
    for key, value in settings.items():
        if key not in fields:
            raise ValueError(f"unknown {kind} setting {key!r}; known: {', '.join(sorted(fields))}")
        kind_of = fields[key]
        if isinstance(value, list):
            value = tuple(float(v) if "float" in kind_of and isinstance(v, int) else v for v in value)
        elif isinstance(value, int) and not isinstance(value, bool) and kind_of.startswith("float"):
            value = float(value)
        out[key] = value
    return out


def run_key(kind: str, config) -> str:
    """SHA-256 of the canonical JSON of the run's full configuration and the cache format version."""
    settings = {k: v for k, v in config.to_dict().items() if k != "device"}  # where it ran is not what it is
    payload = {"kind": kind, "config": settings, "version": CACHE_VERSION}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Run:
    """One cached unit of work: a validated config (one objective for a bandit run) and its grid labels."""

    kind: str
    config: Any
    labels: tuple[tuple[str, Any], ...]
    key: str

    @property
    def cost(self) -> int:
        """Optimizer steps the run takes (the progress bar's unit)."""
        return self.config.steps * len(self.config.objectives)


@dataclass
class Study:
    """A parsed study file: its runs in grid order and what to save and draw."""

    name: str
    kind: str
    figure: str
    title: str
    frames: tuple[str, ...]
    summary: tuple[str, ...]
    axes: tuple[str, ...]
    runs: list[Run]
    plot: dict[str, Any] = field(default_factory=dict)
    pools: dict[str, dict[str, list]] = field(default_factory=dict)
    caption: str = ""
    path: Path | None = None
    curves: tuple[str, ...] = ()

    @property
    def cost(self) -> int:
        return sum(r.cost for r in self.runs)


def _axis_values(name: str, values: Any) -> list[tuple[Any, dict[str, Any]]]:
    """A grid axis -> ``[(label, settings)]``."""
    if not isinstance(values, list) or not values:
        raise ValueError(f"grid axis {name!r} must be a non-empty list, got {values!r}")
    out = []
    for value in values:
        if isinstance(value, dict):
            if "label" not in value:
                raise ValueError(f"each table of grid axis {name!r} needs a 'label', got {value!r}")
            settings = {k: v for k, v in value.items() if k != "label"}
            out.append((value["label"], settings))
        else:
            out.append((value, {name: value}))
    return out


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Parse and validate a study file; ``overrides`` replace ``[base]`` settings (and win over the grid).

    Raises ``ValueError`` naming the file and the problem (unknown settings, bad values, empty grids).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"study file {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"study file {path} is not valid TOML: {err}") from None
    try:
        return _parse_study(doc, path, overrides or {})
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None


def check_name(name: Any, what: str = "study name") -> str:
    """A name that becomes part of output file names: a plain stem (letters, digits, ``_ . -``), never a path
    (``/tmp/x``, ``../../x``) that would write outside the output directory."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} must be a plain file-name stem (letters, digits, '_', '.', '-'; no '/' or "
                         f"'..'), got {name!r}")
    return name


def _check_meta_types(meta: dict) -> None:
    for key in ("name", "kind", "figure", "title", "caption"):
        if key in meta and not isinstance(meta[key], str):
            raise ValueError(f"[study] {key} must be a string, got {meta[key]!r}")
    for key in ("frames", "summary"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            raise ValueError(f"[study] {key} must be a list of strings, got {meta[key]!r}")
    pools = meta.get("pools", {})
    if not isinstance(pools, dict) or not all(isinstance(g, dict) and all(isinstance(m, list) for m in g.values())
                                              for g in pools.values()):
        raise ValueError(f"[study.pools] must map an axis to tables of label = [values], got {pools!r}")


def check_plot_options(figure: str, options: dict[str, Any]) -> None:
    """``[plot]`` keys must be keyword parameters of the figure function (checked when the study is loaded,
    not when it is drawn after all the runs)."""
    from ladsim.plots import FIGURES

    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; choose from: {', '.join(FIGURES)}")
    params = inspect.signature(FIGURES[figure]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
             and n not in ("title", "caption")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown [plot] key(s) {unknown} for figure {figure!r}; known: "
                         f"{', '.join(known) or 'none'}")


def _parse_study(doc: dict, path: Path, overrides: dict[str, Any]) -> Study:
    unknown = set(doc) - {"study", "base", "grid", "plot"}
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; a study has [study], [base], [[grid]], [plot]")
    meta = doc.get("study", {})
    for table in ("study", "base", "plot"):
        if not isinstance(doc.get(table, {}), dict):
            raise ValueError(f"[{table}] must be a table")
    bad = set(meta) - STUDY_KEYS
    if bad:
        raise ValueError(f"unknown [study] key(s) {sorted(bad)}; known: {', '.join(sorted(STUDY_KEYS))}")
    _check_meta_types(meta)
    name = check_name(meta.get("name", path.stem))
    figure = meta.get("figure", path.stem)
    if "figure" in meta or doc.get("plot"):  # a study without either is data only (drawn by nothing)
        check_plot_options(figure, doc.get("plot", {}))
    kind = meta.get("kind", "bandit")
    if kind not in KINDS:
        raise ValueError(f"unknown study kind {kind!r}; choose from: {', '.join(KINDS)}")
    known_frames = BANDIT_FRAMES if kind == "bandit" else LANDSCAPE_FRAMES
    frames = tuple(meta.get("frames", ["final"] if kind == "bandit" else list(LANDSCAPE_FRAMES)))
    for frame in frames:
        if frame not in known_frames:
            raise ValueError(f"unknown frame {frame!r} for a {kind} study; "
                             f"choose from: {', '.join(known_frames)}")
    summary = tuple(meta.get("summary", []))
    curves = tuple(meta.get("curves", []))
    if (summary or curves) and kind != "bandit":
        raise ValueError("summary metrics and curves exist for bandit studies only")

    base = dict(doc.get("base", {}))
    blocks = doc.get("grid", [{}])
    if isinstance(blocks, dict):
        blocks = [blocks]
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ValueError("[[grid]] must be one or more tables of axis = [values]")
    runs: list[Run] = []
    axes: list[str] = []
    seen: set[str] = set()
    cls = _config_class(kind)
    for block in blocks:
        named = [(name, _axis_values(name, values)) for name, values in block.items()]
        for name, _ in named:
            if name not in axes and name != "objective":  # the frames carry their objective already
                axes.append(name)
        for combo in itertools.product(*[values for _, values in named]) if named else [()]:
            settings = dict(base)
            labels = []
            for (name, _), (label, values) in zip(named, combo):
                settings.update(values)
                labels.append((name, label))
            objectives = [settings.pop("objective")] if "objective" in settings else None
            if objectives is None:
                objectives = list(settings.pop("objectives", cls().objectives))
            settings.update(overrides)
            _gather_params(settings)
            if kind == "landscape":
                settings["objectives"] = objectives
                objectives = [None]
            for objective in objectives:
                one = dict(settings)
                if objective is not None:
                    one["objectives"] = [objective]
                config = cls(**_coerce(kind, one))
                key = run_key(kind, config)
                if key in seen:
                    continue
                seen.add(key)
                row = tuple(labels)
                runs.append(Run(kind, config, row, key))
    if not runs:
        raise ValueError("the grid is empty")
    # every run reports every axis (a block without an axis gets a missing value there)
    runs = [dataclasses.replace(r, labels=tuple((a, dict(r.labels).get(a)) for a in axes)) for r in runs]
    return Study(
        name=name, kind=kind, figure=figure,
        title=meta.get("title", ""), frames=frames, summary=summary, axes=tuple(axes), runs=runs,
        plot=dict(doc.get("plot", {})), pools=_parse_pools(meta.get("pools", {}), runs, axes),
        caption=meta.get("caption", ""), path=path, curves=curves,
    )


def _gather_params(settings: dict[str, Any]) -> None:
    """Move dotted settings (``"flowrl.beta": 5``) into ``settings["params"]`` (``{"flowrl": {"beta": 5}}``)."""
    dotted = [k for k in settings if "." in k]
    if not dotted:
        return
    params = {name: dict(values) for name, values in settings.get("params", {}).items()}
    for key in dotted:
        name, _, param = key.rpartition(".")
        params.setdefault(name, {})[param] = settings.pop(key)
    settings["params"] = params


def _parse_pools(pools: dict, runs: list[Run], axes: list[str]) -> dict[str, dict[str, list]]:
    """``{axis: {pool label: [axis values]}}``, every value one the grid has."""
    for axis, groups in pools.items():
        if axis not in axes:
            raise ValueError(f"pool axis {axis!r} is not a grid axis ({', '.join(axes)})")
        have = {dict(r.labels)[axis] for r in runs}
        for label, members in groups.items():
            missing = [m for m in members if m not in have]
            if not members or missing:
                raise ValueError(f"pool {label!r} of axis {axis!r} names values the grid lacks: "
                                 f"{missing or '[]'}")
    return {axis: {label: list(members) for label, members in groups.items()}
            for axis, groups in pools.items()}


# --- one run --------------------------------------------------------------------------------------

def compute_run(run: Run) -> dict[str, pd.DataFrame]:
    """Train one run (no cache). Bandit: ``{final, trajectory, policy}``; landscape: ``run_landscape``."""
    if run.kind == "landscape":
        from ladsim.landscape import run_landscape

        return run_landscape(run.config)
    from ladsim.bandit.run import check_finite, final_policy_frame
    from ladsim.bandit.trainer import train

    result = train(run.config)
    check_finite(result)  # a diverged run is an error, never cached NaN data
    trajectory = result.metrics
    final = trajectory[trajectory["step"] == trajectory["step"].max()].reset_index(drop=True)
    final["modes"] = len(run.config.reward_spec().modes())  # what mode_coverage counts out of
    return {"final": final, "trajectory": trajectory, "policy": final_policy_frame(result)}


def cache_path(cache_dir: str | Path, run: Run) -> Path:
    return Path(cache_dir) / f"{run.key}.npz"


def save_frames(path: str | Path, frames: dict[str, pd.DataFrame], meta: dict) -> None:
    """Write frames as one ``.npz`` (no pickles; strings as unicode arrays), atomically."""
    arrays: dict[str, np.ndarray] = {}
    layout = {}
    for name, frame in frames.items():
        layout[name] = list(frame.columns)
        for i, col in enumerate(frame.columns):
            values = frame[col].to_numpy()
            if values.dtype == object:
                values = values.astype(str)
            arrays[f"{name}.{i}"] = values
    arrays["__meta__"] = np.array(json.dumps({"layout": layout, **meta}))
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_frames(path: str | Path, key: str | None = None) -> dict[str, pd.DataFrame] | None:
    """Frames written by ``save_frames``; ``None`` when the file is missing, unreadable, not ours, or (with
    ``key``) stored under another run's key: a cache file copied or renamed over another is never trusted."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            if meta.get("version") != CACHE_VERSION or (key is not None and meta.get("key") != key):
                return None
            return {name: pd.DataFrame({col: data[f"{name}.{i}"] for i, col in enumerate(cols)})
                    for name, cols in meta["layout"].items()}
    except Exception:  # truncated, corrupt or foreign file: recompute
        return None


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the duration: the tensors here are tiny (seeds x arms), and on a
    busy machine the threads' synchronization costs more than the arithmetic (a 4 x 50 log_softmax measured
    at ~7 ms with 2 threads under load, well under 0.1 ms with one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def execute_run(run: Run, cache_dir: str | Path) -> str:
    """Compute ``run`` and store it in the cache (a worker process's unit of work); returns the path."""
    start = time.perf_counter()
    frames = compute_run(run)
    path = cache_path(cache_dir, run)
    save_frames(path, frames, {"version": CACHE_VERSION, "key": run.key, "kind": run.kind,
                               "config": run.config.to_dict(), "seconds": time.perf_counter() - start})
    return str(path)


# --- a study --------------------------------------------------------------------------------------

@dataclass
class StudyResult:
    """A study's frames (grid columns first) and what running it cost."""

    study: Study
    frames: dict[str, pd.DataFrame]
    computed: int
    cached: int
    seconds: float


def run_study(study: Study, cache_dir: str | Path = DEFAULT_CACHE, *, jobs: int = 1,
              on_run: Callable[[Run, bool], None] | None = None,
              executor: ProcessPoolExecutor | None = None) -> StudyResult:
    """Run every uncached run of ``study`` (in ``jobs`` worker processes when ``jobs > 1`` or an ``executor``
    is given), then gather the tidy frames from the cache.

    ``on_run(run, computed)`` is called once per run as it is found in the cache (``computed=False``) or
    finishes (``computed=True``).
    """
    start = time.perf_counter()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, dict[str, pd.DataFrame]] = {}
    todo = []
    for run in study.runs:
        frames = load_frames(cache_path(cache_dir, run), run.key)
        if frames is None:
            todo.append(run)
        else:
            loaded[run.key] = frames
            if on_run is not None:
                on_run(run, False)
    if todo and executor is None and jobs <= 1:
        with _one_thread():
            for run in todo:
                execute_run(run, cache_dir)
                if on_run is not None:
                    on_run(run, True)
    elif todo:
        own = executor is None
        pool = executor or make_executor(jobs)
        try:
            pending = {pool.submit(execute_run, run, str(cache_dir)): run for run in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    run = pending.pop(fut)
                    fut.result()
                    if on_run is not None:
                        on_run(run, True)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
    for run in todo:
        frames = load_frames(cache_path(cache_dir, run), run.key)
        if frames is None:
            raise OSError(f"run {run.key[:12]} of study {study.name} was computed but its cache file "
                          f"{cache_path(cache_dir, run)} cannot be read")
        loaded[run.key] = frames
    frames = gather(study, loaded)
    return StudyResult(study, frames, computed=len(todo), cached=len(study.runs) - len(todo),
                       seconds=time.perf_counter() - start)


def make_executor(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for runs (spawned, one torch thread each: the tensors are tiny)."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)


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


def bootstrap_interval(values: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values (S,)`` and its ``level`` percentile-bootstrap interval.

    ``scipy.stats.bootstrap`` with ``BOOTSTRAP_RESAMPLES`` resamples and a fixed seed (reproducible data).
    With one value, or all values equal, the interval is the mean itself.
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0:
        return mean, mean, mean
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", random_state=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


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


# --- figure data on disk --------------------------------------------------------------------------

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


def study_files(directory: str | Path = "studies") -> list[Path]:
    files = sorted(Path(directory).glob("*.toml"))
    if not files:
        raise ValueError(f"no study files (*.toml) in {directory}")
    return files


def clean_stale_temps(*directories: str | Path, older_than_s: float = 60.0) -> int:
    """Remove the temporary files (``.NAME.*.tmp``) an interrupted writer left; return how many."""
    removed = 0
    now = time.time()
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for tmp in directory.glob(".*.tmp"):
            try:
                if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
            except OSError:
                pass
    return removed


