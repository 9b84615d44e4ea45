"""Studies: a TOML file -> a grid of runs -> tidy DataFrames, every run cached under a hash of its settings.

A study file (``studies/*.toml``)::

    [study]
    name = "fig3_eta"              # default: the file's stem; also the figure's file name
    kind = "bandit"                # "bandit" (ladsim.bandit), "tree" (ladsim.tree), "prompts" or "landscape"
    figure = "eta_sweep"           # the plot function (ladsim.plots.FIGURES) that draws the data
    title = "..."                  # the figure's title
    frames = ["final"]             # the frames saved as figure data (see below)
    summary = ["expected_reward"]  # metrics summarized over seeds (mean, 95% bootstrap interval)
    curves = ["entropy"]           # metrics summarized over seeds at every logged step (frame ``curves``)
    executor = "local"             # where the runs are computed: "local" (default) or "ray" (docs/cluster.md)

    [base]                         # settings shared by every run (BanditConfig / LandscapeConfig fields)
    reward = "correct"
    steps = 1000

    [[grid]]                       # a Cartesian product; several [[grid]] blocks are concatenated
    objective = ["lad"]            # one run per objective
    eta = [0.5, 1, 2]              # a scalar axis: the setting of the same name
    regime = [{label = "exact", mode = "exact"}, {label = "G=4", mode = "sampled", group_size = 4}]
                                   # a table axis: each value sets several settings; its column holds `label`

    [plot]                         # passed to the figure function as keyword arguments

Frames of a bandit or tree run: ``final`` (objective, seed and every metric at the last step), ``trajectory``
(every logged step), ``policy`` (objective, seed, arm, probability, target, reward; a tree's has ``response,
length`` for ``arm``). Frames of a prompts run: ``final``, ``trajectory``, ``passk`` (objective, seed, k,
policy, pass_at_k) and ``prompts`` (objective, seed, prompt, rho and entropy at the base and at the end:
``ladsim.prompts.run``). Frames of a landscape run:
``grid``, ``trajectory``, ``optimum`` (``ladsim.bandit.landscape.run_landscape``). Each saved frame carries the
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

import inspect
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladsim.studies.grid import KINDS, TRAINED, Run, expand_grid

BANDIT_FRAMES = ("final", "trajectory", "policy")
PROMPTS_FRAMES = ("final", "trajectory", "passk", "prompts")  # ladsim.prompts.run's passk.csv and prompts.csv
LANDSCAPE_FRAMES = ("grid", "trajectory", "optimum")
STUDY_KEYS = {"name", "kind", "figure", "title", "caption", "frames", "summary", "curves", "pools", "executor"}
EXECUTORS = ("local", "ray")  # where a study's runs are computed (ladsim.studies.execute)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a file-name stem: no '/', no '..', not absolute


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
    executor: str | None = None  # the file's choice; None: the caller's (default "local")

    @property
    def cost(self) -> int:
        return sum(r.cost for r in self.runs)


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
        return parse_study(doc, path, overrides or {})
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None


def check_name(name: Any, what: str = "study name") -> str:
    """A name that becomes part of output file names: a plain stem (letters, digits, ``_ . -``), never a path
    (``/tmp/x``, ``../../x``) that would write outside the output directory."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} must be a plain file-name stem (letters, digits, '_', '.', '-'; no '/' or "
                         f"'..'), got {name!r}")
    return name


def check_meta_types(meta: dict) -> None:
    for key in ("name", "kind", "figure", "title", "caption", "executor"):
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


def parse_study(doc: dict, path: Path, overrides: dict[str, Any]) -> Study:
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
    check_meta_types(meta)
    if meta.get("executor", "local") not in EXECUTORS:
        raise ValueError(f"unknown executor {meta['executor']!r}; choose from: {', '.join(EXECUTORS)}")
    name = check_name(meta.get("name", path.stem))
    figure = meta.get("figure", path.stem)
    if "figure" in meta or doc.get("plot"):  # a study without either is data only (drawn by nothing)
        check_plot_options(figure, doc.get("plot", {}))
    kind = meta.get("kind", "bandit")
    if kind not in KINDS:
        raise ValueError(f"unknown study kind {kind!r}; choose from: {', '.join(KINDS)}")
    known_frames = PROMPTS_FRAMES if kind == "prompts" else BANDIT_FRAMES if kind in TRAINED else LANDSCAPE_FRAMES
    frames = tuple(meta.get("frames", ["final"] if kind in TRAINED else list(LANDSCAPE_FRAMES)))
    for frame in frames:
        if frame not in known_frames:
            raise ValueError(f"unknown frame {frame!r} for a {kind} study; "
                             f"choose from: {', '.join(known_frames)}")
    summary = tuple(meta.get("summary", []))
    curves = tuple(meta.get("curves", []))
    if (summary or curves) and kind not in TRAINED:
        raise ValueError(f"summary metrics and curves exist for {' and '.join(TRAINED)} studies only")

    base = dict(doc.get("base", {}))
    blocks = doc.get("grid", [{}])
    if isinstance(blocks, dict):
        blocks = [blocks]
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ValueError("[[grid]] must be one or more tables of axis = [values]")
    runs, axes = expand_grid(kind, base, blocks, overrides)
    if not runs:
        raise ValueError("the grid is empty")
    return Study(
        name=name, kind=kind, figure=figure,
        title=meta.get("title", ""), frames=frames, summary=summary, axes=tuple(axes), runs=runs,
        plot=dict(doc.get("plot", {})), pools=parse_pools(meta.get("pools", {}), runs, axes),
        caption=meta.get("caption", ""), path=path, curves=curves, executor=meta.get("executor"),
    )


def parse_pools(pools: dict, runs: list[Run], axes: list[str]) -> dict[str, dict[str, list]]:
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


def study_files(directory: str | Path = "studies") -> list[Path]:
    files = sorted(Path(directory).glob("*.toml"))
    if not files:
        raise ValueError(f"no study files (*.toml) in {directory}")
    return files
