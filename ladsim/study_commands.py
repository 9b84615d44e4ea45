"""CLI commands for studies: ``ladsim study run FILE``, ``ladsim study plot FILE`` and ``ladsim figures``.

Parse, delegate (``ladsim.studies`` computes, ``ladsim.plots`` draws), report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ladsim.bandit.commands import progress_bar

console = Console(stderr=False)
study_app = typer.Typer(help="Run a study file (a grid of cached runs) and draw its figure.",
                        no_args_is_help=True)


def _default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run_studies(files: list[Path], cache: Path, data: Path, jobs: int, device: str = "cpu") -> list:
    from ladsim import studies

    parsed = [studies.load_study(f) for f in files]
    if device != "cpu":  # bandit studies train there (a landscape has no device); the cache keys stay the same
        from ladsim.bandit.trainer import resolve_device

        resolve_device(device)
        parsed = [studies.load_study(s.path, {"device": device}) if s.kind == "bandit" else s for s in parsed]
    results = []
    executor = studies.make_executor(jobs) if jobs > 1 else None
    try:
        with progress_bar() as bar:
            for study in parsed:
                task = bar.add_task(f"{study.name} ({len(study.runs)} runs)", total=study.cost)
                result = studies.run_study(study, cache, jobs=jobs, executor=executor,
                                           on_run=lambda run, _computed, t=task: bar.advance(t, run.cost))
                studies.save_data(result, data)
                results.append(result)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    for r in results:
        console.print(f"{r.study.name}: {r.computed} run(s) computed, {r.cached} from the cache, "
                      f"{r.seconds:.1f} s -> {data}/{r.study.name}_*.csv")
    return results


def _plot(study, data: Path, out: Path, formats: tuple[str, ...]) -> list[Path]:
    from ladsim import plots, studies

    frames = studies.load_data(study, data)
    if study.figure not in plots.FIGURES:
        raise ValueError(f"{study.path}: unknown figure {study.figure!r}; "
                         f"choose from: {', '.join(plots.FIGURES)}")
    try:
        fig = plots.FIGURES[study.figure](frames, title=study.title, caption=study.caption, **study.plot)
    except KeyError as err:  # data written by another version, or edited by hand
        raise ValueError(f"the data of study {study.name} in {data} lacks {err}; run "
                         f"`ladsim study run {study.path}` again") from None
    return plots.save_figure(fig, out / study.name, formats=formats)


@study_app.command("run")
def study_run(
    file: Path = typer.Argument(..., help="A study file (studies/*.toml)."),
    cache: Path = typer.Option(Path("studies/cache"), help="Directory of cached runs."),
    data: Path = typer.Option(Path("figures/data"), help="Where the study's tidy CSV frames are written."),
    jobs: int = typer.Option(_default_jobs(), help="Worker processes (1 = in this process)."),
    device: str = typer.Option("cpu", help="Where bandit runs train: cpu or cuda (cuda:K)."),
) -> None:
    """Run every run of FILE not yet in the cache, then save the study's tidy frames beside the figures."""
    _run_studies([file], cache, data, jobs, device)


@study_app.command("plot")
def study_plot(
    file: Path = typer.Argument(..., help="A study file (studies/*.toml) already run."),
    data: Path = typer.Option(Path("figures/data"), help="Where `study run` wrote the study's frames."),
    out: Path = typer.Option(Path("figures"), help="Directory of the figure files."),
    formats: List[str] = typer.Option(["png", "pdf"], "--format", help="File formats (repeatable)."),
) -> None:
    """Draw FILE's figure from its saved data (no training)."""
    from ladsim import studies

    for path in _plot(studies.load_study(file), data, out, tuple(formats)):
        console.print(f"wrote {path}")


def figures(
    studies_dir: Path = typer.Option(Path("studies"), "--studies", help="Directory of study files."),
    cache: Path = typer.Option(Path("studies/cache"), help="Directory of cached runs."),
    out: Path = typer.Option(Path("figures"), help="Directory of the figures; data goes to OUT/data."),
    jobs: int = typer.Option(_default_jobs(), help="Worker processes (1 = in this process)."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only these studies (file stems)."),
    device: str = typer.Option("cpu", help="Where bandit runs train: cpu or cuda (cuda:K)."),
) -> None:
    """Run every study in studies/ (cached runs are reused) and draw every figure (PNG and PDF)."""
    from ladsim import studies

    start = time.perf_counter()
    files = studies.study_files(studies_dir)
    if only:
        files = [f for f in files if f.stem in only]
        if not files:
            raise ValueError(f"no study named {', '.join(only)} in {studies_dir}")
    data = out / "data"
    studies.clean_stale_temps(cache, out, data)
    results = _run_studies(files, cache, data, jobs, device)
    for result in results:
        for path in _plot(result.study, data, out, ("png", "pdf")):
            console.print(f"wrote {path}")
    console.print(f"figures done in {time.perf_counter() - start:.1f} s "
                  f"({sum(r.computed for r in results)} runs computed, "
                  f"{sum(r.cached for r in results)} cached)")
