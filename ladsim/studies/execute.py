"""Executing a study: every run not in the cache is computed (in this process or a pool of workers) and
cached; the driver alone writes the cache. This is where another executor (a cluster) plugs in."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from ladsim.studies.cache import CACHE_VERSION, DEFAULT_CACHE, cache_path, load_frames, save_frames
from ladsim.studies.gather import StudyResult, gather
from ladsim.studies.grid import Run
from ladsim.studies.parse import Study


def compute_run(run: Run) -> dict[str, pd.DataFrame]:
    """Train one run (no cache). Bandit: ``{final, trajectory, policy}``; landscape: ``run_landscape``."""
    if run.kind == "landscape":
        from ladsim.bandit.landscape import run_landscape

        return run_landscape(run.config)
    from ladsim.bandit.run import check_finite, final_policy_frame
    from ladsim.bandit.trainer import train

    result = train(run.config)
    check_finite(result)  # a diverged run is an error, never cached NaN data
    trajectory = result.metrics
    final = trajectory[trajectory["step"] == trajectory["step"].max()].reset_index(drop=True)
    final["modes"] = len(run.config.reward_spec().modes())  # what mode_coverage counts out of
    return {"final": final, "trajectory": trajectory, "policy": final_policy_frame(result)}


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
    path = cache_path(cache_dir, run.key)
    save_frames(path, frames, {"version": CACHE_VERSION, "key": run.key, "kind": run.kind,
                               "config": run.config.to_dict(), "seconds": time.perf_counter() - start})
    return str(path)


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
        frames = load_frames(cache_path(cache_dir, run.key), run.key)
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
        frames = load_frames(cache_path(cache_dir, run.key), run.key)
        if frames is None:
            raise OSError(f"run {run.key[:12]} of study {study.name} was computed but its cache file "
                          f"{cache_path(cache_dir, run.key)} cannot be read")
        loaded[run.key] = frames
    frames = gather(study, loaded)
    return StudyResult(study, frames, computed=len(todo), cached=len(study.runs) - len(todo),
                       seconds=time.perf_counter() - start)


def make_executor(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for runs (spawned, one torch thread each: the tensors are tiny)."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
