"""Executing a study: every run not in the cache is computed on a worker and saved by the driver.

One path for every executor: a worker *computes* a run (:func:`ladsim.studies.compute.compute_timed`, no
file written) and hands its frames back; the driver alone writes the cache (:func:`save_run`) and the outputs,
so workers need no shared filesystem and the cache is the same whichever executor ran the study. An executor
is anything with ``outcomes(runs) -> iterator of Outcome`` (in completion order):

* ``"local"`` with ``jobs = 1``: this process (:class:`InProcess`);
* ``"local"`` with ``jobs > 1``, or a ``concurrent.futures.Executor``: a pool of workers (:class:`PoolExecutor`);
* ``"ray"``: one Ray task per run on a Ray cluster (:mod:`ladsim.studies.ray_executor`, ``ladsim[ray]``).
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from ladsim.studies.cache import CACHE_VERSION, DEFAULT_CACHE, cache_path, load_frames, save_frames
from ladsim.studies.compute import Frames, Outcome, compute_run, compute_timed, one_line, require_ray
from ladsim.studies.gather import StudyResult, gather
from ladsim.studies.grid import Run
from ladsim.studies.parse import EXECUTORS, Study


def save_run(cache_dir: str | Path, run: Run, frames: Frames, seconds: float) -> Path:
    """Store a computed run in the cache (the driver's job); returns the path."""
    path = cache_path(cache_dir, run.key)
    save_frames(path, frames, {"version": CACHE_VERSION, "key": run.key, "kind": run.kind,
                               "config": run.config.to_dict(), "seconds": seconds})
    return path


def describe(run: Run) -> str:
    """The cell a run is: its grid labels and objective(s), e.g. ``eta=1, regime=G=4, objective=lad``."""
    labels = [f"{axis}={label}" for axis, label in run.labels]
    objectives = getattr(run.config, "objectives", ())
    name = "objective" if len(objectives) == 1 else "objectives"
    return ", ".join(labels + ([f"{name}={','.join(objectives)}"] if objectives else []))


class RunExecutor(Protocol):
    def outcomes(self, runs: list[Run]) -> Iterator[Outcome]:
        """One ``Outcome`` per run, as each finishes."""


class InProcess:
    """Runs computed one after the other in this process (``compute``: a run -> its frames)."""

    def __init__(self, compute: Callable[[Run], Frames] = compute_run):
        self.compute = compute

    def outcomes(self, runs: list[Run]) -> Iterator[Outcome]:
        for run in runs:
            try:
                frames, seconds = compute_timed(run, self.compute)
            except Exception as err:
                yield Outcome(run, error=one_line(err))
            else:
                yield Outcome(run, frames, seconds)


class PoolExecutor:
    """Runs computed by a ``concurrent.futures`` pool (frames come back to the driver by pickle; ``compute``
    must pickle for a process pool)."""

    def __init__(self, pool: Executor, compute: Callable[[Run], Frames] = compute_run):
        self.pool, self.compute = pool, compute

    def outcomes(self, runs: list[Run]) -> Iterator[Outcome]:
        pending = {self.pool.submit(compute_timed, run, self.compute): run for run in runs}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    run = pending.pop(fut)
                    try:
                        frames, seconds = fut.result()
                    except Exception as err:
                        yield Outcome(run, error=one_line(err))
                    else:
                        yield Outcome(run, frames, seconds)
        finally:  # the driver stopped (Ctrl-C, an error saving): what has not started never will
            for fut in pending:
                fut.cancel()


def make_executor(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for runs (spawned; each run computes on one torch thread, ``compute_timed``)."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def check_executor(executor: object, address: str | None) -> None:
    """``ValueError`` for an unknown executor name, an ``address`` without Ray, or Ray asked for but not
    installed (checked before any work)."""
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "ray":
        raise ValueError(f"an address ({address}) is for the ray executor only; add --executor ray")
    if executor == "ray":
        require_ray()


@contextmanager
def open_executor(executor: str | Executor | RunExecutor = "local", *, jobs: int = 1,
                  address: str | None = None) -> Iterator[RunExecutor]:
    """The executor named by ``executor`` for the duration: ``"local"`` (``jobs`` worker processes, 1 = this
    process), ``"ray"`` (a cluster at ``address``; none = a local one of ``jobs`` CPUs), or an executor object
    given by the caller (used as is, never shut down here)."""
    check_executor(executor, address)
    if isinstance(executor, Executor):
        yield PoolExecutor(executor)
    elif not isinstance(executor, str):
        if not hasattr(executor, "outcomes"):
            raise TypeError(f"executor must be 'local', 'ray' or an executor object, got {executor!r}")
        yield executor
    elif executor == "ray":
        from ladsim.studies.ray_executor import RayExecutor

        with RayExecutor(address, num_cpus=jobs) as ray_executor:
            yield ray_executor
    elif jobs <= 1:
        yield InProcess()
    else:
        pool = make_executor(jobs)
        try:
            yield PoolExecutor(pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def execute(runs: Iterable[Run], cache_dir: Path, executor: RunExecutor, study: Study,
            on_run: Callable[[Run, bool], None] | None = None) -> None:
    """Compute ``runs`` with ``executor``, saving each in the cache as it arrives; a run that fails does not stop
    the others, and once all are done the first failure is raised (``ValueError`` naming the cell)."""
    failed: list[Outcome] = []
    runs = list(runs)
    with closing(executor.outcomes(runs)) as outcomes:
        for outcome in outcomes:
            if outcome.error is not None:
                failed.append(outcome)
                continue
            save_run(cache_dir, outcome.run, outcome.frames, outcome.seconds)
            if on_run is not None:
                on_run(outcome.run, True)
    if failed:
        first = failed[0]
        more = f" ({len(failed) - 1} more run(s) failed)" if len(failed) > 1 else ""
        raise ValueError(f"study {study.name}: run ({describe(first.run)}) failed: {first.error}{more}; "
                         f"the {len(runs) - len(failed)} finished run(s) are cached")


def run_study(study: Study, cache_dir: str | Path = DEFAULT_CACHE, *, jobs: int = 1,
              on_run: Callable[[Run, bool], None] | None = None,
              executor: str | Executor | RunExecutor | None = None, address: str | None = None) -> StudyResult:
    """Run every uncached run of ``study``, then gather the tidy frames from the cache.

    ``executor``: ``"local"`` (``jobs`` worker processes; 1 = this process), ``"ray"`` (one Ray task per run
    on the cluster at ``address``, none = start a local one; needs ``ladsim[ray]``), or an executor object
    (a ``concurrent.futures.Executor``, or one from :func:`open_executor`) shared by several studies. ``None``:
    the study file's ``executor``, else ``"local"``. Every executor gives the same cache and frames.

    ``on_run(run, computed)`` is called once per run as it is found in the cache (``computed=False``) or
    finishes (``computed=True``). A run that fails (after Ray's retries of a dead worker) fails the study with
    a ``ValueError`` naming its cell, once the other runs are finished and cached.
    """
    start = time.perf_counter()
    executor = executor if executor is not None else (study.executor or "local")
    check_executor(executor, address)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, Frames] = {}
    todo = []
    for run in study.runs:
        frames = load_frames(cache_path(cache_dir, run.key), run.key)
        if frames is None:
            todo.append(run)
        else:
            loaded[run.key] = frames
            if on_run is not None:
                on_run(run, False)
    if todo:
        with open_executor(executor, jobs=jobs, address=address) as runner:
            execute(todo, cache_dir, runner, study, on_run)
    for run in todo:  # the frames as the cache holds them: the same whichever executor computed them
        frames = load_frames(cache_path(cache_dir, run.key), run.key)
        if frames is None:
            raise OSError(f"run {run.key[:12]} of study {study.name} was computed but its cache file "
                          f"{cache_path(cache_dir, run.key)} cannot be read")
        loaded[run.key] = frames
    frames = gather(study, loaded)
    return StudyResult(study, frames, computed=len(todo), cached=len(study.runs) - len(todo),
                       seconds=time.perf_counter() - start)
