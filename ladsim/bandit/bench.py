"""``ladsim bench bandit``: the vectorized engine against a naive per-seed loop, timed side by side in one run.

The naive baseline is what a paper script does: one seed at a time, a ``(N,)`` logit vector, the same loss core
and optimizer, 4000 Python-level steps per seed. It is timed on a few seeds and scaled to the full seed count
(its cost is linear in seeds); the vectorized engine trains every seed in one ``(S, N)`` computation.
"""

from __future__ import annotations

import time

import torch

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import exact_advantages, log_prior, make_optimizer, torch_dtype, train_objective
from ladsim.losses import lad_loss


def naive_single_seed(config: BanditConfig) -> torch.Tensor:
    """Practical LAD, exact mode, frozen ``pi_old``, for one seed, written plainly. Returns the policy ``(N,)``."""
    rewards = torch.tensor(config.reward_spec().expected_rewards(), dtype=torch_dtype(config))
    logp_old = log_prior(config)
    weights = logp_old.exp()
    advantages = exact_advantages(rewards, logp_old[None])[0]
    theta = logp_old.clone().requires_grad_(True)
    opt = make_optimizer(theta, config)
    for _ in range(config.steps):
        loss = lad_loss(torch.log_softmax(theta, -1), logp_old, advantages, eta=config.eta, div=config.div,
                        weights=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return torch.softmax(theta.detach(), -1)


def bench_bandit(seeds: int = 1000, steps: int = 4000, arms: int = 50, naive_seeds: int = 3,
                 div: str = "js", dtype: str = "float64") -> dict:
    """Time both engines; returns ``{"vectorized_s", "naive_per_seed_s", "speedup", ...}``.

    ``naive_per_seed_s`` is the naive loop's time for all ``seeds`` seeds, scaled from ``naive_seeds`` timed
    runs; ``naive_one_seed_s`` is its measured mean time for one seed.
    """
    if seeds < 1 or steps < 1 or naive_seeds < 1:
        raise ValueError("--seeds, --steps and --naive-seeds must be >= 1")
    config = BanditConfig(arms=arms, seeds=seeds, steps=steps, objectives=("lad",), div=div, log_every=steps,
                          dtype=dtype)
    # Warm up both paths briefly (first-call allocations, lazy imports) so neither pays them in the timing.
    train_objective(config.replace(steps=10, log_every=10), "lad")
    naive_single_seed(config.replace(steps=10, seeds=1))

    start = time.perf_counter()
    vectorized_policy = train_objective(config, "lad")[1]
    vectorized_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(naive_seeds):
        naive_policy = naive_single_seed(config.replace(seeds=1))
    naive_one = (time.perf_counter() - start) / naive_seeds
    # Same maths, so the same policy (the engines differ only in batching).
    max_policy_diff = float((torch.as_tensor(vectorized_policy[0]) - naive_policy).abs().max())
    naive_total = naive_one * seeds
    return {
        "seeds": seeds, "steps": steps, "arms": arms, "div": div, "dtype": dtype, "naive_seeds_timed": naive_seeds,
        "threads": torch.get_num_threads(),
        "vectorized_s": vectorized_s,
        "naive_one_seed_s": naive_one,
        "naive_per_seed_s": naive_total,
        "speedup": naive_total / vectorized_s,
        "max_policy_diff": max_policy_diff,
    }
