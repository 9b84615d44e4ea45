"""CLI commands for studies: ``ladsim study run FILE``, ``ladsim study plot FILE`` and ``ladsim figures``.

Parse, delegate (:mod:`ladsim.studies` computes and draws), report.
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


EXECUTOR_HELP = "Where runs are computed: local (worker processes) or ray (a Ray cluster; needs " \
    "pip install 'ladsim[ray]'). Default: the study file's [study] executor, else local."
ADDRESS_HELP = "The Ray cluster (ray://HOST:10001, or HOST:6379 on a node); default: $RAY_ADDRESS, else a " \
    "local cluster of --jobs CPUs. See docs/cluster.md."


def _run_studies(files: list[Path], cache: Path, data: Path, jobs: int, device: str = "cpu",
                 executor: Optional[str] = None, address: Optional[str] = None) -> list:
    from ladsim.studies.figures import run_studies

    tasks = {}
    with progress_bar() as bar:
        def on_progress(study, done, total):
            if study.name not in tasks:
                tasks[study.name] = bar.add_task(f"{study.name} ({len(study.runs)} runs)", total=total)
            bar.update(tasks[study.name], completed=done)

        results = run_studies(files, cache, data, jobs=jobs, device=device, on_progress=on_progress,
                              executor=executor, address=address)
    for r in results:
        console.print(f"{r.study.name}: {r.computed} run(s) computed, {r.cached} from the cache, "
                      f"{r.seconds:.1f} s -> {data}/{r.study.name}_*.csv", soft_wrap=True)
    return results


@study_app.command("run")
def study_run(
    file: Path = typer.Argument(..., help="A study file (studies/*.toml)."),
    cache: Path = typer.Option(Path("studies/cache"), help="Directory of cached runs."),
    data: Path = typer.Option(Path("figures/data"), help="Where the study's tidy CSV frames are written."),
    jobs: int = typer.Option(_default_jobs(), help="Worker processes (1 = in this process)."),
    device: str = typer.Option("cpu", help="Where bandit runs train: cpu or cuda (cuda:K)."),
    executor: Optional[str] = typer.Option(None, help=EXECUTOR_HELP),
    address: Optional[str] = typer.Option(None, help=ADDRESS_HELP),
) -> None:
    """Run every run of FILE not yet in the cache, then save the study's tidy frames beside the figures."""
    _run_studies([file], cache, data, jobs, device, executor, address)


@study_app.command("plot")
def study_plot(
    file: Path = typer.Argument(..., help="A study file (studies/*.toml) already run."),
    data: Path = typer.Option(Path("figures/data"), help="Where `study run` wrote the study's frames."),
    out: Path = typer.Option(Path("figures"), help="Directory of the figure files."),
    formats: List[str] = typer.Option(["png", "pdf"], "--format", help="File formats (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Redraw even where the figure is up to date."),
) -> None:
    """Draw FILE's figure from its saved data (no training), unless it is up to date with them."""
    from ladsim.studies import load_study

    report_figure(load_study(file), data, out, tuple(formats), force)


def report_figure(study, data: Path, out: Path, formats: tuple[str, ...], force: bool) -> bool:
    """Draw ``study``'s figure where its inputs changed (``ladsim.studies.update_figure``) and print each file:
    ``wrote PATH``, or ``up to date: PATH``. Returns whether it was drawn."""
    from ladsim.studies.figures import update_figure

    paths, drawn = update_figure(study, data, out, formats, force=force)
    for path in paths:
        console.print(f"wrote {path}" if drawn else f"up to date: {path}", soft_wrap=True)
    return drawn


def figures(
    studies_dir: Path = typer.Option(Path("studies"), "--studies", help="Directory of study files."),
    cache: Path = typer.Option(Path("studies/cache"), help="Directory of cached runs."),
    out: Path = typer.Option(Path("figures"), help="Directory of the figures; data goes to OUT/data."),
    jobs: int = typer.Option(_default_jobs(), help="Worker processes (1 = in this process)."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only these studies (file stems)."),
    device: str = typer.Option("cpu", help="Where bandit runs train: cpu or cuda (cuda:K)."),
    executor: Optional[str] = typer.Option(None, help=EXECUTOR_HELP),
    address: Optional[str] = typer.Option(None, help=ADDRESS_HELP),
    force: bool = typer.Option(False, "--force", help="Redraw every figure, also those up to date."),
) -> None:
    """Run every study in studies/ (cached runs are reused) and draw every figure (PNG and PDF)."""
    from ladsim.studies import clean_stale_temps, study_files

    start = time.perf_counter()
    files = study_files(studies_dir)
    if only:
        files = [f for f in files if f.stem in only]
        if not files:
            raise ValueError(f"no study named {', '.join(only)} in {studies_dir}")
    data = out / "data"
    clean_stale_temps(cache, out, data)
    results = _run_studies(files, cache, data, jobs, device, executor, address)
    drawn = sum(report_figure(r.study, data, out, ("png", "pdf"), force) for r in results)
    console.print(f"figures done in {time.perf_counter() - start:.1f} s "
                  f"({sum(r.computed for r in results)} runs computed, "
                  f"{sum(r.cached for r in results)} cached; {drawn} figure(s) drawn, "
                  f"{len(results) - drawn} up to date)", soft_wrap=True)
