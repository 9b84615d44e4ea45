"""The sweeps behind ``ladsim/ranges.py`` (docs/ranges.md): one magnitude setting at a time, every registered
objective (both LADs with every divergence), float64 and float32, tiny runs (8 arms, 4 seeds, 100 steps unless
a sweep says otherwise). Prints, per sweep, dtype and mode, the first swept value at which some run broke and
the runs that broke (``u`` prints each objective's last good and first broken value).

    .venv/bin/python docs/measure_ranges.py u|reward|offset|init_std|lr|kl_beta|entropy|prior

A few minutes per sweep on one core (``u``: about twenty).
"""

import math
import os
import sys
import tempfile

import numpy as np

import ladsim.bandit.config
from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import train_objective
from ladsim.divergences import DIVERGENCES

# The sweeps measure where the ranges should be, so they run past them: the config's range checks are off here.
ladsim.bandit.config.check_range = ladsim.bandit.config.check_exponent = lambda *args, **kwargs: None

OBJECTIVES = (["grpo", "entadv", "clip-cov", "kl-cov", "flowrl"] + [f"lad:{d}" for d in DIVERGENCES]
              + [f"lad-theory:{d}" for d in DIVERGENCES])
DTYPES = ("float64", "float32")
BASE = dict(arms=8, seeds=4, steps=100, log_every=100, reward="correct:2,5", init_std=0.1)
MODES = {"exact": dict(mode="exact"), "sampled-none": dict(mode="sampled", group_size=8, advantage_scale="none"),
         "sampled-std": dict(mode="sampled", group_size=8, advantage_scale="std")}
BIG = [10.0 ** k for k in (3, 6, 10, 15, 17, 18, 19, 20, 21, 25, 30, 38, 39, 50, 100, 145, 150, 152, 153, 154, 155,
                           160, 200, 300)]
TMP = tempfile.mkdtemp()


def train(name, **settings):
    """``(config, trajectory, final policy)`` of one objective (``lad:js`` = lad with the js divergence)."""
    objective, _, div = name.partition(":")
    config = BanditConfig(objectives=(objective,), div=div or "js", **settings)
    trajectory, final = train_objective(config, objective, threads=1)
    return config, trajectory, final


def finite(trajectory, final):
    return np.all(np.isfinite(final)) and all(np.all(np.isfinite(v)) for v in trajectory.values())


def rewards_file(values):
    path = os.path.join(TMP, f"r{abs(hash(tuple(values)))}.npy")
    np.save(path, np.asarray(values, dtype=np.float64))
    return path


def raises_reward(config, trajectory, final):
    """Broken unless finite and every seed's expected reward rose."""
    if not finite(trajectory, final):
        return "not finite"
    r = trajectory["expected_reward"]
    return "" if np.all(r[-1] > r[0]) else f"reward {r[0].mean():.3g} -> {r[-1].mean():.3g}"


def raises_entropy(config, trajectory, final):
    """Broken unless finite and every seed's entropy rose (a pull toward the uniform prior)."""
    if not finite(trajectory, final):
        return "not finite"
    h = trajectory["entropy"]
    return "" if np.all(h[-1] > h[0]) else f"entropy {h[0].mean():.3g} -> {h[-1].mean():.3g}"


def no_zero_probability(config, trajectory, final):
    if not finite(trajectory, final):
        return "not finite"
    return f"{int((final <= 0).sum())} zero probabilities" if np.any(final <= 0) else ""


def sweep(label, values, modes, settings, broken):
    """For each dtype and mode: the first value at which some objective's run is broken (``settings(mode, v)``
    gives the run's settings, ``broken(config, trajectory, final)`` a reason or '')."""
    for dtype in DTYPES:
        for mode in modes:
            first = None
            for v in values:
                bad = []
                for name in OBJECTIVES:
                    try:
                        why = broken(*train(name, dtype=dtype, **settings(mode, v)))
                    except ValueError as err:  # refused by the config (for instance by these very ranges)
                        why = f"refused: {str(err)[:50]}"
                    if why:
                        bad.append(f"{name} ({why})")
                if bad:
                    first = (v, bad)
                    break
            shown = f"{first[0]:g}: {', '.join(first[1][:6])}" if first else "none"
            print(f"{label:8s} {dtype:8s} {mode:13s} first broken at {shown}", flush=True)


def u():
    """u = max|A| / eta: rewards 0/1 (span 1) with eta = 1/u; with std-scaled groups max|A| = (G-1)/sqrt(G)."""
    grid = {"float64": [100, 150, 175, 200, 225, 250, 300, 350, 360, 380, 400, 450, 500, 600, 700, 750, 800, 1000,
                        2000, 5000, 1e4, 1e5, 1e100],
            "float32": [10, 20, 25, 28, 30, 32, 35, 40, 45, 50, 55, 60, 65, 70, 80, 88, 90, 100, 150, 200, 500, 1e3,
                        1e4, 1e30]}
    for dtype in DTYPES:
        for mode in MODES:
            top = 7 / math.sqrt(8) if mode == "sampled-std" else 1.0
            for name in OBJECTIVES:
                last = None
                for value in grid[dtype]:
                    why = raises_reward(*train(name, dtype=dtype, **{**BASE, "eta": top / value, **MODES[mode]}))
                    if why:
                        print(f"u {dtype} {mode} {name}: fine at {last}, broken at {value:g} ({why})", flush=True)
                        break
                    last = value
                else:
                    print(f"u {dtype} {mode} {name}: fine through {last:g}", flush=True)


def reward():
    """Rewards c R with eta = 0.2 c (u fixed; std-scaled groups: eta 0.2, their advantages do not scale)."""
    values = [10.0 ** k for k in (0, 10, 15, 17, 18, 19, 20, 21, 22, 25, 30, 38, 39, 100, 145, 150, 152, 153, 154,
                                  155, 156, 160, 200, 300)]

    def settings(mode, c):
        eta = 0.2 if mode == "sampled-std" else 0.2 * c
        return {**BASE, "eta": eta, "reward": rewards_file(c * np.array([0, 0, 1, 0, 0, 0.7, 0, 0.2])),
                **MODES[mode]}

    sweep("reward", values, MODES, settings, raises_reward)


def offset():
    """Rewards c + R: the advantages are centered, so the policy must stay within TV 1e-3 of c = 0's."""
    reference = {}

    def settings(mode, c):
        return {**BASE, "eta": 0.2, "reward": rewards_file(c + np.array([0, 0, 1, 0, 0, 0.7, 0, 0.2])),
                **MODES[mode]}

    def broken(config, trajectory, final):
        if not finite(trajectory, final):
            return "not finite"
        key = (config.objectives, config.div, config.dtype, config.mode)
        if key not in reference:
            reference[key] = final
            return ""
        tv = 0.5 * np.abs(final - reference[key]).sum(-1).max()
        return f"TV to c = 0: {tv:.2g}" if tv > 1e-3 else ""

    sweep("offset", [0.0] + [10.0 ** k for k in range(18)], ["exact", "sampled-none"], settings, broken)


def init_std():
    """Initial noise sigma over 100 seeds x 1000 arms, 2 steps: no probability may underflow to 0."""
    sweep("init_std", [1, 5, 8, 9, 10, 12, 15, 20, 30, 40, 50, 55, 60, 65, 70, 80, 100, 1e3], ["exact"],
          lambda mode, s: {**BASE, "arms": 1000, "seeds": 100, "steps": 2, "log_every": 1, "init_std": float(s)},
          no_zero_probability)


def lr():
    """One optimizer step: no probability may underflow to 0."""
    sweep("lr", [1e-2, 0.1, 1, 5, 10, 20, 40, 50, 100, 200, 350, 400, 1e3, 1e5, 1e10, 1e100], ["adam", "sgd"],
          lambda mode, v: {**BASE, "lr": float(v), "optimizer": mode, "steps": 1, "log_every": 1},
          no_zero_probability)


def kl_beta():
    """KL penalty to the uniform prior from init_std 1 (k1 does not pull toward it under pi_old's weights)."""
    sweep("kl_beta", BIG, ["k2", "k3", "k3+"],
          lambda mode, b: {**BASE, "init_std": 1.0, "kl": mode, "kl_beta": float(b)}, raises_entropy)


def entropy():
    sweep("entropy", BIG, ["exact"], lambda mode, c: {**BASE, "init_std": 1.0, "entropy_coef": float(c)},
          raises_entropy)


def prior():
    """A prior of 7 ones and one p."""
    values = [10.0 ** -k for k in (1, 5, 10, 20, 30, 37, 38, 39, 40, 44, 45, 46, 50, 100, 200, 300, 307, 308, 320)]
    sweep("prior", values, ["exact", "sampled-none"],
          lambda mode, p: {**BASE, "prior": (1.0,) * 7 + (float(p),), **MODES[mode]}, raises_reward)


if __name__ == "__main__":
    {"u": u, "reward": reward, "offset": offset, "init_std": init_std, "lr": lr, "kl_beta": kl_beta,
     "entropy": entropy, "prior": prior}[sys.argv[1]]()
