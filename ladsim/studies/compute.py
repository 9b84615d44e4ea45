"""What a worker does with a run: compute its frames and hand them back (no file written; the driver saves).

Shared by every executor (:mod:`ladsim.studies.execute`): this process, a pool of worker processes, Ray tasks
(:mod:`ladsim.studies.ray_executor`).
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import pandas as pd

from ladsim.studies.grid import Run

Frames = dict[str, pd.DataFrame]


def compute_run(run: Run) -> Frames:
    """Train one run (no cache). Bandit and tree: ``{final, trajectory, policy}``; prompts: ``{final, trajectory,
    passk, prompts}``; landscape: ``run_landscape``."""
    if run.kind == "landscape":
        from ladsim.bandit.landscape import run_landscape

        return run_landscape(run.config)
    from ladsim.bandit.run import final_rows
    if run.kind == "prompts":
        from ladsim.prompts.run import check_finite, passk_frame, prompts_frame
        from ladsim.prompts.trainer import train_prompts as train

        result = train(run.config)
        check_finite(result)  # a diverged run is an error, never cached NaN data
        final = final_rows(result.metrics).reset_index(drop=True)
        return {"final": final, "trajectory": result.metrics, "passk": passk_frame(result),
                "prompts": prompts_frame(result)}
    if run.kind == "tree":
        from ladsim.tree.run import check_finite, final_policy_frame
        from ladsim.tree.trainer import train_tree as train
    else:
        from ladsim.bandit.run import check_finite, final_policy_frame
        from ladsim.bandit.trainer import train

    result = train(run.config)
    check_finite(result)  # a diverged run is an error, never cached NaN data
    trajectory = result.metrics
    final = final_rows(trajectory).reset_index(drop=True)
    final["modes"] = len(run.config.reward_spec().modes())  # what mode_coverage counts out of
    return {"final": final, "trajectory": trajectory, "policy": final_policy_frame(result)}


def compute_timed(run: Run, compute: Callable[[Run], Frames] = compute_run) -> tuple[Frames, float]:
    """A worker's unit of work: ``(frames, seconds)`` of ``compute(run)`` on one torch thread; writes nothing."""
    from ladsim.bandit.trainer import torch_threads

    start = time.perf_counter()
    with torch_threads(1):  # the tensors are tiny: threads' synchronization would cost more than it saves
        frames = compute(run)
    return frames, time.perf_counter() - start


class Outcome(NamedTuple):
    """A finished run: its frames and compute seconds, or ``error`` (one line) when it failed."""

    run: Run
    frames: Frames | None = None
    seconds: float = 0.0
    error: str | None = None


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (a worker's traceback stays in its log)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def require_ray():
    """The ``ray`` module, or a one-line ``ValueError`` saying how to install it (Ray is optional)."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray executor needs Ray, which is not installed: pip install 'ladsim[ray]'") from None
    return ray
