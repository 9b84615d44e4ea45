"""Studies on a Ray cluster (``ladsim[ray]``): one Ray task per run; the frames come back to the driver.

The task only computes (:func:`ladsim.studies.compute.compute_timed`); the driver saves, so the cluster's nodes
need ladsim and its dependencies installed (the same version) but no filesystem shared with the driver. Each
task asks Ray for one CPU, and one GPU where its run trains on ``cuda``. A task whose worker process dies (killed,
out of memory, node lost) is retried up to ``max_retries`` times; an exception raised by the run itself (a
diverged run, a bad setting) is not retried: it fails the same way every time.

``ray`` is imported here only, and only when a Ray executor is opened: ``import ladsim`` never imports it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterator

from ladsim.studies.compute import Frames, Outcome, compute_run, compute_timed, one_line, require_ray
from ladsim.studies.grid import Run

MAX_RETRIES = 3  # retries of a task whose worker died (Ray's own default for tasks)


def task(run: Run, compute: Callable[[Run], Frames]) -> tuple[Frames, float]:
    """A Ray task's body. A ``cuda:K`` run trains on the GPU Ray assigned to the task (Ray sets the task's
    ``CUDA_VISIBLE_DEVICES``, where that GPU is ``cuda``); the device is not part of the cache key."""
    device = getattr(run.config, "device", "cpu")
    if device.startswith("cuda:"):
        run = dataclasses.replace(run, config=dataclasses.replace(run.config, device="cuda"))
    return compute_timed(run, compute)


def resources(run: Run) -> dict[str, float]:
    """What one run asks of the cluster: a CPU, and a GPU where it trains on ``cuda``."""
    return {"num_cpus": 1, "num_gpus": 1 if getattr(run.config, "device", "cpu").startswith("cuda") else 0}


class RayExecutor:
    """Runs as Ray tasks, as a context manager: entering connects to the cluster at ``address`` (``None``: the
    ``RAY_ADDRESS`` environment variable, else a new local cluster of ``num_cpus`` CPUs), leaving disconnects
    (and stops the local cluster it started). Inside an already initialized Ray session it uses that session
    and leaves it open.

    ``compute``: a run -> its frames (default :func:`ladsim.studies.compute.compute_run`); it travels to the
    workers by pickle, so the tests can plant a failing one.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 compute: Callable[[Run], Frames] = compute_run, max_retries: int = MAX_RETRIES):
        self.ray = require_ray()
        self.address, self.num_cpus, self.compute, self.max_retries = address, num_cpus, compute, max_retries
        self.owned = False
        self.remote = None

    def __enter__(self) -> RayExecutor:
        ray = self.ray
        if not ray.is_initialized():
            local = self.address is None
            ray.init(address=self.address, num_cpus=self.num_cpus if local else None,
                     include_dashboard=False if local else None, logging_level=logging.WARNING)
            self.owned = True
        self.remote = ray.remote(task)
        return self

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.ray.shutdown()  # a cluster started here goes with its workers; a remote one is only left
            self.owned = False

    def outcomes(self, runs: list[Run]) -> Iterator[Outcome]:
        """Submit one task per run, yield each outcome as its task finishes; when the driver stops early
        (Ctrl-C) the tasks left are cancelled, or stopped with the cluster this executor started."""
        ray = self.ray
        if self.remote is None:
            raise RuntimeError("a RayExecutor is used inside `with RayExecutor(...)`")
        pending = {}
        for run in runs:
            ref = self.remote.options(**resources(run), max_retries=self.max_retries,
                                      retry_exceptions=False).remote(run, self.compute)
            pending[ref] = run
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        frames, seconds = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:  # the run raised: report its own error
                        cause = err.cause if isinstance(err.cause, BaseException) else err
                        yield Outcome(run, error=one_line(cause))
                    except ray.exceptions.RayError as err:  # e.g. the worker died, and kept dying
                        tries = isinstance(err, ray.exceptions.WorkerCrashedError)
                        yield Outcome(run, error=one_line(err) + (f" (tried {1 + self.max_retries} times)"
                                                                  if tries else ""))
                    else:
                        yield Outcome(run, frames, seconds)
        finally:  # a cluster started here is stopped whole on leaving; on another's, our tasks are cancelled
            if not self.owned:  # (cancelling next to a shutdown can hit a fatal check in Ray 2.60's driver)
                for ref in pending:
                    ray.cancel(ref)
