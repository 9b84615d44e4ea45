"""Training a token-tree experiment: every objective of a :class:`TreeConfig` through the world engine.

``train_tree(config)`` returns a :class:`TreeResult` with tidy frames, as the bandit's ``train`` does; the loop is
``ladsim.engine.train_world`` on a :class:`ladsim.tree.world.TreeWorld`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ladsim.bandit.trainer import resolve_device, torch_threads
from ladsim.engine import Schedule, train_world
from ladsim.tree.config import TreeConfig
from ladsim.tree.world import TreeWorld

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TreeResult:
    """What a token-tree experiment produced.

    Attributes:
        config: the settings.
        metrics: tidy frame, one row per (objective, seed, logged step), one column per metric.
        final_policy: objective -> ``(S, R)`` final probability of every response.
        target: ``(R,)`` ``P_A(y) ∝ pi_0(y) exp(R(y)/eta)`` over responses.
        rewards: ``(R,)`` the reward of each response.
    """

    config: TreeConfig
    metrics: pd.DataFrame
    final_policy: dict[str, np.ndarray]
    target: np.ndarray
    rewards: np.ndarray


# One torch thread unless asked: the tree's kernels are small (at most a few hundred thousand entries), and two
# threads did not pay (practical LAD, exact, the other core nearly idle, 2026-12-03 09:17 UTC, a throwaway script
# alternating the two: V = 4, L = 5, 8 seeds, 2000 steps one thread 0.152-0.162 s, two 0.192-0.193 s; V = 8,
# L = 6, 2 seeds, 200 steps one thread 0.926 s, two 0.903-0.945 s; with the other core busy two threads took
# 6.1 s against one thread's 1.15 s).
DEFAULT_THREADS = 1


def make_world(config: TreeConfig) -> TreeWorld:
    """The :class:`TreeWorld` of ``config`` on its device, its metrics' targets set."""
    world = TreeWorld(config.tree(), config.reward_spec(), config.seeds, agg=config.agg, ratio=config.ratio,
                      group_size=config.group_size, advantage_scale=config.advantage_scale,
                      estimators=config.estimators(), top_entropy_quantile=config.top_entropy_quantile,
                      init_std=config.init_std, dtype=getattr(torch, config.dtype),
                      device=resolve_device(config.device))
    world.set_targets(config.eta, config.metric_ks, std_target=config.std_scaled())
    return world


def schedule(config: TreeConfig) -> Schedule:
    """The engine's schedule of ``config``."""
    return Schedule(steps=config.steps, lr=config.lr, optimizer=config.optimizer, sampled=config.mode == "sampled",
                    refresh_every=config.refresh_every, epochs=config.epochs, log_every=config.log_every,
                    seed=config.seed, kl=config.kl_penalty(), bonus=config.entropy_bonus(),
                    entropy_control=config.entropy_control())


def train_objective(config: TreeConfig, objective: str, on_steps: Callable[[int], None] | None = None,
                    engine: str = "fused", threads: int | None = None,
                    world: TreeWorld | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train ``config.seeds`` tree policies under one objective: ``(trajectory, final (S, R))``."""
    world = make_world(config) if world is None else world
    with torch_threads(threads if threads is not None else DEFAULT_THREADS):
        trajectory, params = train_world(world, objective, config.objective_params(objective), schedule(config),
                                         engine=engine, on_steps=on_steps)
        final = world.response_log_probs(world.log_policy(params)).exp()
    return trajectory, final.cpu().numpy()


def train_tree(config: TreeConfig, on_steps: Callable[[int], None] | None = None, engine: str = "fused",
          threads: int | None = None) -> TreeResult:
    """Train every objective of ``config`` and gather a tidy metrics frame."""
    import pandas as pd

    world = make_world(config)
    frames, finals = [], {}
    for objective in config.objectives:
        trajectory, finals[objective] = train_objective(config, objective, on_steps, engine, threads, world)
        steps = trajectory.pop("step")
        T, S = len(steps), config.seeds
        frames.append(pd.DataFrame({"objective": objective, "seed": np.tile(np.arange(S), T),
                                    "step": np.repeat(steps, S),
                                    **{name: values.reshape(-1) for name, values in trajectory.items()}}))
    return TreeResult(config=config, metrics=pd.concat(frames, ignore_index=True), final_policy=finals,
                      target=world.target_log_distribution(eta=config.eta).exp().cpu().numpy(),
                      rewards=config.reward_spec().values)
