"""Studies end to end: run several study files (sharing one executor: a pool of workers or a Ray cluster) and
draw their figures.

A figure is redrawn only when what it is drawn from changed (:func:`update_figure`): its key, the SHA-256 of the
study's figure settings (figure, title, caption, ``[plot]``, formats), the bytes of its data files, the source of
the plotting code (``ladsim.plots`` and every ladsim module it imports, found by reading their imports) and
matplotlib's version, is kept in ``<data>/<study>.figure.json`` with the SHA-256 of every file drawn; a figure
whose key and files all match is up to date. Drawing and saving is most of a cached ``make figures`` (10 of its
14 s with eleven figures, measured 2026-12-03), and a redrawn figure is the same bytes anyway (the PDFs carry no
date).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

from ladsim.io import write_json
from ladsim.studies.execute import check_executor, open_executor, run_study
from ladsim.studies.gather import DEFAULT_DATA, StudyResult, data_path, load_data, save_data
from ladsim.studies.grid import TRAINED
from ladsim.studies.parse import Study, load_study

Progress = Callable[[Study, int, int], None]


def run_studies(files: Sequence[str | Path], cache_dir: str | Path, data_dir: str | Path = DEFAULT_DATA, *,
                jobs: int = 1, device: str = "cpu", on_progress: Progress | None = None,
                executor: str | None = None, address: str | None = None) -> list[StudyResult]:
    """Load every study file (all of them before any work: a bad file costs nothing), run each, save its data;
    ``on_progress(study, steps_done, steps_total)``.

    ``executor``: ``"local"`` (``jobs`` worker processes shared by all studies) or ``"ray"`` (one Ray cluster,
    at ``address`` or started here with ``jobs`` CPUs, shared by all); ``None``: each study file's ``executor``,
    else ``"local"``. ``device``: where bandit runs train (a landscape has no device); the cache keys do not
    depend on it.
    """
    check_executor(executor, address)
    parsed = [load_study(f) for f in files]
    if device != "cpu":
        from ladsim.bandit.trainer import resolve_device

        if executor != "ray":  # on a cluster the GPUs are the workers', not this machine's
            resolve_device(device)  # a clear one-line error before any work
        parsed = [load_study(s.path, {"device": device}) if s.kind in TRAINED else s for s in parsed]
    results = []
    with ExitStack() as stack:
        opened: dict[str, object] = {}  # one executor of each kind, opened when a study first needs it

        def executor_for(study: Study):
            name = executor or study.executor or "local"
            if name not in opened:
                opened[name] = stack.enter_context(open_executor(
                    name, jobs=jobs, address=address if name == "ray" else None))
            return opened[name]

        for study in parsed:
            done = 0

            def advance(run, _computed, study=study):
                nonlocal done
                done += run.cost
                if on_progress is not None:
                    on_progress(study, done, study.cost)

            result = run_study(study, cache_dir, jobs=jobs, executor=executor_for(study), on_run=advance)
            save_data(result, data_dir)
            results.append(result)
    return results


FIGURE_KEY_VERSION = 1  # bump to redraw every figure
PLOT_MODULE = "ladsim.plots"


def draw_study(study: Study, data_dir: str | Path = DEFAULT_DATA, out_dir: str | Path = "figures",
               formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Draw ``study``'s figure from its saved data (no training) into ``out_dir/<name>.<format>``, whether or
    not it is up to date (:func:`update_figure` draws only what changed)."""
    from ladsim import plots

    frames = load_data(study, data_dir)
    if study.figure not in plots.FIGURES:
        raise ValueError(f"{study.path}: unknown figure {study.figure!r}; "
                         f"choose from: {', '.join(plots.FIGURES)}")
    try:
        fig = plots.FIGURES[study.figure](frames, title=study.title, caption=study.caption, **study.plot)
    except KeyError as err:  # data written by another version, or edited by hand
        raise ValueError(f"the data of study {study.name} in {data_dir} lacks {err}; run "
                         f"`ladsim study run {study.path}` again") from None
    return plots.save_figure(fig, Path(out_dir) / study.name, formats=tuple(formats))


def update_figure(study: Study, data_dir: str | Path = DEFAULT_DATA, out_dir: str | Path = "figures",
                  formats: Sequence[str] = ("png", "pdf"), force: bool = False) -> tuple[list[Path], bool]:
    """``(paths, drawn)``: ``study``'s figure files, drawn (``drawn=True``) unless they are up to date with
    their key (:func:`figure_key`) or ``force``; the key and the files' hashes are then stored in
    ``<data_dir>/<study>.figure.json``."""
    key = figure_key(study, data_dir, formats)
    paths = [Path(out_dir) / f"{study.name}.{fmt}" for fmt in formats]
    record = figure_record(study, data_dir)
    if not force and record.get("key") == key and record.get("files") == file_hashes(paths):
        return paths, False
    paths = draw_study(study, data_dir, out_dir, formats)
    write_json(figure_record_path(study, data_dir), {"study": study.name, "key": key, "files": file_hashes(paths)})
    return paths, True


def figure_key(study: Study, data_dir: str | Path = DEFAULT_DATA, formats: Sequence[str] = ("png", "pdf")) -> str:
    """SHA-256 of everything ``study``'s figure is drawn from: its figure settings and ``formats``, its data
    files (the index and every frame it lists), the plotting code's source (:func:`plot_sources`) and
    matplotlib's version. ``ValueError`` when the study has no data in ``data_dir``."""
    index = Path(data_dir) / f"{study.name}.json"
    if not index.is_file():
        raise ValueError(f"no data for study {study.name} in {data_dir}; run `ladsim study run {study.path}` first")
    digest = hashlib.sha256()
    settings = {"version": FIGURE_KEY_VERSION, "figure": study.figure, "title": study.title,
                "caption": study.caption, "plot": study.plot, "formats": list(formats),
                "matplotlib": importlib.metadata.version("matplotlib")}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    frames = [data_path(data_dir, study, name) for name in json.loads(index.read_text()).get("frames", [])]
    for label, path in [(p.name, p) for p in (index, *frames)] + list(plot_sources().items()):
        digest.update(label.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(missing)")
    return digest.hexdigest()


def plot_sources(module: str = PLOT_MODULE) -> dict[str, Path]:
    """``{module name: source file}`` of ``module`` and of every ladsim module it imports, at any depth and
    wherever the import stands (the figure functions import theirs lazily), sorted by name."""
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        if name in found or spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        found[name] = Path(spec.origin)
        for node in ast.walk(ast.parse(found[name].read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ladsim":
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.split(".")[0] == "ladsim"]
    return {name: found[name] for name in sorted(found)}


def figure_record_path(study: Study, data_dir: str | Path) -> Path:
    return Path(data_dir) / f"{study.name}.figure.json"


def figure_record(study: Study, data_dir: str | Path) -> dict:
    """What :func:`update_figure` stored when it last drew ``study`` (``{}`` if nothing readable)."""
    try:
        return json.loads(figure_record_path(study, data_dir).read_text())
    except (OSError, ValueError):
        return {}


def file_hashes(paths: Sequence[Path]) -> dict[str, str | None]:
    """``{path: SHA-256 of its bytes, or None if it is missing}``."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None for p in paths}
