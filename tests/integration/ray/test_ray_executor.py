"""Studies on a real local Ray cluster (2 CPUs, no dashboard; `make test-ray`): the same files as the local
executor, a worker killed mid-study retried, a cell that keeps failing named in a one-line error with every
finished cell cached. Needs ray (`make env-ray`): without it these tests fail, they never skip."""

from __future__ import annotations

import logging
import os

import pytest
import ray

from ladsim import studies
from ladsim.studies.compute import compute_run
from ladsim.studies.ray_executor import RayExecutor

TINY = """
[study]
name = "tiny"
frames = ["final", "policy"]
summary = ["expected_reward", "entropy"]
curves = ["entropy"]

[base]
arms = 6
reward = "correct:1,4"
mode = "sampled"
group_size = 4
steps = 12
seeds = 5
init_std = 0.1
log_every = 4

[[grid]]
objective = ["grpo", "lad"]
eta = [1, 2]
"""


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The tiny study run by the local executor: its study and data directory."""
    root = tmp_path_factory.mktemp("local")
    (root / "tiny.toml").write_text(TINY)
    study = studies.load_study(root / "tiny.toml")
    studies.save_data(studies.run_study(study, root / "cache", executor="local"), root / "data")
    return study, root / "data"


def same_files(a, b) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and len(names) == 5  # 4 frames (csv) and the index
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_ray_gives_byte_identical_files(cluster, local, tmp_path):
    study, local_data = local
    seen = []
    result = studies.run_study(study, tmp_path / "cache", executor="ray", on_run=lambda r, c: seen.append(c))
    assert (result.computed, result.cached) == (4, 0) and seen == [True] * 4
    studies.save_data(result, tmp_path / "data")
    same_files(local_data, tmp_path / "data")
    assert ray.is_initialized()  # a session we did not start is left open
    again = studies.run_study(study, tmp_path / "cache", executor="ray")
    assert (again.computed, again.cached) == (0, 4)  # resumed from the driver's cache


def test_a_worker_killed_mid_study_is_retried(cluster, local, tmp_path):
    study, local_data = local
    victim = study.runs[2].key
    marker = tmp_path / "died"

    def compute(run):  # pickled by value to the workers; dies on its first attempt at one cell only
        if run.key == victim and not marker.exists():
            marker.touch()
            os._exit(1)
        return compute_run(run)

    with RayExecutor(compute=compute) as executor:
        result = studies.run_study(study, tmp_path / "cache", executor=executor)
    assert marker.exists()  # the worker did die
    assert result.computed == 4
    studies.save_data(result, tmp_path / "data")
    same_files(local_data, tmp_path / "data")


@pytest.mark.parametrize("how", ["dies", "raises"])
def test_a_cell_that_keeps_failing_is_named_and_the_rest_cached(cluster, local, tmp_path, how):
    study, _ = local
    victim = study.runs[1]  # eta=2, grpo
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def compute(run):
        if run.key == victim.key:
            (attempts / str(os.getpid())).touch()  # one file per worker process that tried it
            if how == "dies":
                os._exit(1)
            raise FloatingPointError("planted failure")
        return compute_run(run)

    with pytest.raises(ValueError) as err, RayExecutor(compute=compute, max_retries=1) as executor:
        studies.run_study(study, tmp_path / "cache", executor=executor)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("study tiny: run (eta=2, objective=grpo) failed: ")
    assert message.endswith("; the 3 finished run(s) are cached")
    if how == "dies":  # a dead worker is retried (max_retries=1: two tries, each in a fresh worker process)
        assert "WorkerCrashedError" in message and "(tried 2 times)" in message
        assert len(list(attempts.iterdir())) == 2
    else:  # an error of the run itself is the same every time: not retried
        assert "FloatingPointError: planted failure" in message
        assert len(list(attempts.iterdir())) == 1
    cached = sorted(p.stem for p in (tmp_path / "cache").iterdir())
    assert cached == sorted(r.key for r in study.runs if r.key != victim.key)
    resumed = studies.run_study(study, tmp_path / "cache", executor="ray")
    assert (resumed.computed, resumed.cached) == (1, 3)
