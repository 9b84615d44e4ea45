"""pass@k over many prompts: the tidy frames of a run, their intervals over seeds, and the crossover.

For each seed, ``pass@k`` is the mean over prompts of ``1 - (1 - rho_x)^k`` (``ladsim.prompts.world``), for the
base policy and for each trained one. The **crossover** of an objective is the smallest ``k`` of the grid at
which the base's pass@k, averaged over seeds, exceeds the trained policy's (Yue et al. 2025, arXiv:2504.13837:
the base model overtakes the RL-trained one at large ``k``); ``None`` when it never does on the grid. Intervals
are ladsim's one estimator (``ladsim.stats``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ladsim.stats import bootstrap_interval

POLICIES = ("base", "trained")


def pass_at_k(rho: np.ndarray, k: int) -> np.ndarray:
    """``1 - (1 - rho)^k`` elementwise, as ``-expm1(k log1p(-rho))``; ``rho = 1`` (a prompt the policy always
    solves, ``log1p(-1) = -inf``) gives exactly 1."""
    with np.errstate(divide="ignore"):
        return -np.expm1(k * np.log1p(-np.clip(rho, 0.0, 1.0)))


def passk_rows(objective: str, rho_base: np.ndarray, rho: np.ndarray, ks: Sequence[int]) -> pd.DataFrame:
    """Tidy ``objective, seed, k, policy, pass_at_k`` from each prompt's success under the base and the trained
    policy, ``rho_base, rho (S, P)``: the mean over prompts per seed."""
    S = rho.shape[0]
    frames = []
    for policy, values in (("base", rho_base), ("trained", rho)):
        table = np.stack([pass_at_k(values, k).mean(-1) for k in ks], 1)  # (S, K)
        frames.append(pd.DataFrame({"objective": objective, "seed": np.repeat(np.arange(S), len(ks)),
                                    "k": np.tile(np.asarray(ks), S), "policy": policy,
                                    "pass_at_k": table.reshape(-1)}))
    return pd.concat(frames, ignore_index=True)


def crossover_k(ks: Sequence[int], base: np.ndarray, trained: np.ndarray) -> int | None:
    """The smallest ``k`` of ``ks`` where ``base > trained`` (each ``(K,)``, pass@k at the grid), else ``None``."""
    above = np.flatnonzero(np.asarray(base) > np.asarray(trained))
    return int(ks[above[0]]) if above.size else None


def passk_intervals(passk: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per ``keys`` (grid columns), objective, policy and ``k``: ``mean, lo, hi`` of pass@k over seeds, and per
    ``keys``, objective and ``k`` the same of the gap ``trained - base`` (seeds paired), as ``policy = "gap"``."""
    keys = list(keys)
    wide = passk.pivot_table(index=[*keys, "objective", "seed", "k"], columns="policy", values="pass_at_k",
                             sort=False).reset_index()
    wide["gap"] = wide["trained"] - wide["base"]
    rows = []
    for group, part in wide.groupby([*keys, "objective", "k"], sort=False, dropna=False):
        for policy in (*POLICIES, "gap"):
            mean, lo, hi = bootstrap_interval(part[policy].to_numpy())
            rows.append({**dict(zip([*keys, "objective", "k"], group)), "policy": policy, "seeds": len(part),
                         "mean": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def crossovers(passk: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per ``keys`` and objective: ``crossover_k`` (from the seed means; NaN where none), ``gap`` (the mean
    ``pass@k(trained) - pass@k(base)`` there, negative; NaN where none), ``seeds_crossing`` (seeds whose own
    curves cross on the grid) and ``seeds``."""
    keys = list(keys)
    rows = []
    for group, part in passk.groupby([*keys, "objective"], sort=False, dropna=False):
        ks = np.sort(part["k"].unique())
        table = part.pivot_table(index="k", columns=["policy", "seed"], values="pass_at_k").reindex(ks)
        base, trained = table["base"].to_numpy(), table["trained"].to_numpy()  # (K, S), seeds in one order
        k = crossover_k(ks, base.mean(1), trained.mean(1))
        per_seed = [crossover_k(ks, base[:, i], trained[:, i]) for i in range(base.shape[1])]
        rows.append({**dict(zip([*keys, "objective"], group if isinstance(group, tuple) else (group,))),
                     "crossover_k": np.nan if k is None else k,
                     "gap": np.nan if k is None else float(trained.mean(1)[ks == k][0] - base.mean(1)[ks == k][0]),
                     "seeds_crossing": sum(c is not None for c in per_seed), "seeds": len(per_seed)})
    return pd.DataFrame(rows)
