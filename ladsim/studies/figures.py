"""Studies end to end: run several study files (sharing one executor: a pool of workers or a Ray cluster) and
draw their figures."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

from ladsim.studies.execute import check_executor, open_executor, run_study
from ladsim.studies.gather import DEFAULT_DATA, StudyResult, load_data, save_data
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
