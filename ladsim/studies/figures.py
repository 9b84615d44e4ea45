"""Studies end to end: run several study files (sharing one pool of workers) and draw their figures."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ladsim.studies.execute import make_executor, run_study
from ladsim.studies.gather import DEFAULT_DATA, StudyResult, load_data, save_data
from ladsim.studies.parse import Study, load_study

Progress = Callable[[Study, int, int], None]


def run_studies(files: Sequence[str | Path], cache_dir: str | Path, data_dir: str | Path = DEFAULT_DATA, *,
                jobs: int = 1, device: str = "cpu", on_progress: Progress | None = None) -> list[StudyResult]:
    """Load every study file (all of them before any work: a bad file costs nothing), run each (``jobs``
    worker processes shared by all), save its data; ``on_progress(study, steps_done, steps_total)``.

    ``device``: where bandit runs train (a landscape has no device); the cache keys do not depend on it.
    """
    parsed = [load_study(f) for f in files]
    if device != "cpu":
        from ladsim.bandit.trainer import resolve_device

        resolve_device(device)  # a clear one-line error before any work
        parsed = [load_study(s.path, {"device": device}) if s.kind == "bandit" else s for s in parsed]
    results = []
    executor = make_executor(jobs) if jobs > 1 else None
    try:
        for study in parsed:
            done = 0

            def advance(run, _computed, study=study):
                nonlocal done
                done += run.cost
                if on_progress is not None:
                    on_progress(study, done, study.cost)

            result = run_study(study, cache_dir, jobs=jobs, executor=executor, on_run=advance)
            save_data(result, data_dir)
            results.append(result)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return results


def draw_study(study: Study, data_dir: str | Path = DEFAULT_DATA, out_dir: str | Path = "figures",
               formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Draw ``study``'s figure from its saved data (no training) into ``out_dir/<name>.<format>``."""
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
