"""Training a many-prompt experiment: every objective of a :class:`PromptsConfig` through the world engine.

``train_prompts(config)`` returns a :class:`PromptsResult` with tidy frames, as the bandit's ``train`` and
``train_tree`` do; the loop is ``ladsim.engine.train_world`` on a :class:`ladsim.prompts.world.PromptsWorld`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ladsim.bandit.trainer import resolve_device, threads_for, torch_threads
from ladsim.engine import Schedule, train_world
from ladsim.prompts.config import PromptsConfig
from ladsim.prompts.setting import make_setting
from ladsim.prompts.world import PromptsWorld

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class PromptsResult:
    """What a many-prompt experiment produced.

    Attributes:
        config: the settings.
        metrics: tidy frame, one row per (objective, seed, logged step), one column per metric (each the mean
            over prompts, ``PromptsWorld.metrics``).
        rho: objective -> ``(S, P)`` each prompt's final success ``rho_x``; ``rho_base``: ``(S, P)`` the base's.
        entropy: objective -> ``(S, P)`` each prompt's final entropy; ``entropy_base``: ``(S, P)`` the base's.
    """

    config: PromptsConfig
    metrics: pd.DataFrame
    rho: dict[str, np.ndarray]
    entropy: dict[str, np.ndarray]
    rho_base: np.ndarray
    entropy_base: np.ndarray


# Threads as the bandit chooses them (``ladsim.bandit.trainer.threads_for``): one below 4096 entries of seeds x
# prompts x answers, all cores above. Measured on the 2-core EPYC with its other core nearly idle (load average
# about 1, 2026-12-03 09:16 UTC; practical LAD, exact, a throwaway script alternating the two): at P = 256,
# N = 64, d = 16, 8 seeds, 1000 steps one thread 2.71-2.97 s, two 1.61-1.63 s; at P = 64, N = 32, d = 8, 8
# seeds, 2000 on-policy steps one thread 0.80-0.99 s, two 0.75 s. With the other core busy two threads varied
# from 1.3 to 5.3 s against one thread's 2.6-3.3 s: pass --threads 1 on a loaded machine.


def make_world(config: PromptsConfig) -> PromptsWorld:
    """The :class:`PromptsWorld` of ``config`` on its device (its setting drawn or read), its metrics' targets
    set."""
    P, N, d = config.sizes
    setting = make_setting(P, N, d, config.seeds, seed=config.seed, base_scale=config.base_scale,
                           correct=config.correct, files=config.setting_files(), dtype=getattr(torch, config.dtype),
                           device=resolve_device(config.device))
    world = PromptsWorld(setting, config.seeds, tabular=config.tabular, group_size=config.group_size,
                         advantage_scale=config.advantage_scale, estimators=config.estimators(),
                         top_entropy_quantile=config.top_entropy_quantile,
                         init_std=config.init_std)
    world.set_targets(config.eta, config.ks())
    return world


def schedule(config: PromptsConfig) -> Schedule:
    """The engine's schedule of ``config``."""
    return Schedule(steps=config.steps, lr=config.lr, optimizer=config.optimizer, sampled=config.mode == "sampled",
                    refresh_every=config.refresh_every, epochs=config.epochs, log_every=config.log_every,
                    seed=config.seed, kl=config.kl_penalty(), bonus=config.entropy_bonus(),
                    entropy_control=config.entropy_control())


def train_objective(config: PromptsConfig, objective: str, on_steps: Callable[[int], None] | None = None,
                    engine: str = "fused", threads: int | None = None,
                    world: PromptsWorld | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train ``config.seeds`` policies under one objective: ``(trajectory, final log-policy (S, P, N))``."""
    world = make_world(config) if world is None else world
    elements = config.seeds * world.prompts * world.arms
    with torch_threads(threads if threads is not None else threads_for(elements)):
        trajectory, params = train_world(world, objective, config.objective_params(objective), schedule(config),
                                         engine=engine, on_steps=on_steps)
        final = world.log_policy(params)
    return trajectory, final.cpu().numpy()


def train_prompts(config: PromptsConfig, on_steps: Callable[[int], None] | None = None, engine: str = "fused",
          threads: int | None = None) -> PromptsResult:
    """Train every objective of ``config`` and gather a tidy metrics frame and each prompt's final success."""
    import pandas as pd

    world = make_world(config)
    frames, rho, entropy = [], {}, {}
    for objective in config.objectives:
        trajectory, final = train_objective(config, objective, on_steps, engine, threads, world)
        logp = torch.as_tensor(final)
        rho[objective] = world.success(logp.to(world.device)).cpu().numpy()
        entropy[objective] = world.entropy(logp).numpy()
        steps = trajectory.pop("step")
        T, S = len(steps), config.seeds
        frames.append(pd.DataFrame({"objective": objective, "seed": np.tile(np.arange(S), T),
                                    "step": np.repeat(steps, S),
                                    **{name: values.reshape(-1) for name, values in trajectory.items()}}))
    return PromptsResult(config=config, metrics=pd.concat(frames, ignore_index=True), rho=rho, entropy=entropy,
                         rho_base=world.success(world.log_base).cpu().numpy(),
                         entropy_base=world.entropy(world.log_base).cpu().numpy())
