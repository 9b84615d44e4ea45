"""The 3-armed bandit of the paper's Figure 2: logits ``(theta1, theta2, 0)``, one point per policy.

With ``theta3 = 0`` fixed, every policy over three arms is one point of the plane, so a loss can be drawn as
contours and an optimizer's path as a curve on them. ``pi_old`` is frozen (uniform unless ``prior`` is given)
and every expectation is exact, as in ladsim's Figure 1 setting. The losses are the registry's
(``ladsim.objectives``, on the shared loss core), evaluated on a ``(P, 3)`` batch of logits; by default:

* ``grpo``        ``-E_{pi_theta}[A]`` (unclipped, ``beta = 0``), which has no minimizer: it drives the
  policy toward the best arm, so its path leaves any window;
* ``lad-theory``  ``D_f(P_pi || P_A)`` with exact partition functions;
* ``lad``         practical LAD ``E_{pi_old}[exp(u) f(r exp(-u))]``, the loss whose contours are drawn.

The two LAD losses share the closed-form minimizer ``pi* = pi_old exp(A/eta) / Z`` (Lemma 3.2); in the
``theta3 = 0`` chart that is ``theta*_i = log(pi*_i / pi*_3)``, which ``optimum`` returns.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ladsim.divergences import get_divergence
from ladsim.objectives import Batch, get_objective, layered_params, make_params, objective_loss
from ladsim.validation import check_field_types

DTYPE = torch.float64
OBJECTIVES = ("grpo", "lad-theory", "lad")  # the default set: the paper's Figure 2
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class LandscapeConfig:
    """Every setting of one landscape run (one divergence, every objective in ``objectives``).

    ``rewards``: expected reward of arms 1, 2, 3. ``start``: the common starting logits ``(theta1, theta2)``.
    ``window``: ``(lo, hi)`` of both axes of the contour grid, ``grid`` points per axis.
    ``objectives``: any registered objectives (``ladsim.objectives``); ``eta`` and ``div`` fill their
    parameters of those names, ``params`` (``{"flowrl": {"beta": 2}}``) sets others.
    """

    rewards: tuple[float, float, float] = (1.0, 0.6, 0.0)
    eta: float = 0.5
    div: str = "hd"
    prior: tuple[float, float, float] | None = None
    objectives: tuple[str, ...] = OBJECTIVES
    start: tuple[float, float] = (-2.0, 3.0)
    steps: int = 2000
    lr: float = 0.05
    optimizer: str = "sgd"
    window: tuple[float, float] = (-4.0, 5.0)
    grid: int = 81
    params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        check_field_types(self, flag_prefix="")
        need(len(self.rewards) == 3 and all(math.isfinite(r) for r in self.rewards),
             f"landscape rewards must be 3 finite numbers, got {self.rewards}")
        need(math.isfinite(self.eta) and self.eta > 0, f"eta must be a finite number > 0, got {self.eta}")
        get_divergence(self.div)
        need(self.prior is None or (len(self.prior) == 3 and all(p > 0 for p in self.prior)),
             f"the prior must be 3 probabilities > 0, got {self.prior}")
        need(len(self.objectives) > 0, "give at least one objective")
        for obj in self.objectives:
            get_objective(obj)
        need(isinstance(self.params, dict), "params must be a mapping objective -> {param: value}")
        for name, values in self.params.items():
            make_params(name, values)
        need(len(self.start) == 2, f"start must be (theta1, theta2), got {self.start}")
        need(isinstance(self.steps, int) and self.steps >= 1,
             f"steps must be an integer >= 1, got {self.steps}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr}")
        need(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose from: "
                                           f"{', '.join(OPTIMIZERS)}")
        need(len(self.window) == 2 and self.window[0] < self.window[1],
             f"window must be (lo, hi), got {self.window}")
        need(isinstance(self.grid, int) and self.grid >= 3, f"grid must be an integer >= 3, got {self.grid}")

    def replace(self, **changes) -> "LandscapeConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _log_prior(config: LandscapeConfig) -> Tensor:
    if config.prior is None:
        return torch.full((3,), -math.log(3.0), dtype=DTYPE)
    prior = torch.tensor(config.prior, dtype=DTYPE)
    return torch.log(prior / prior.sum())


def _advantages(config: LandscapeConfig, log_prior: Tensor) -> Tensor:
    rewards = torch.tensor(config.rewards, dtype=DTYPE)
    return rewards - (log_prior.exp() * rewards).sum()


def optimum(config: LandscapeConfig) -> np.ndarray:
    """``(theta1*, theta2*)`` of ``pi* = pi_old exp(A/eta) / Z`` in the ``theta3 = 0`` chart; shape ``(2,)``.
    """
    log_prior = _log_prior(config)
    log_target = log_prior + _advantages(config, log_prior) / config.eta
    return (log_target[:2] - log_target[2]).numpy()


def _logits(theta: Tensor) -> Tensor:
    """``(..., 2)`` -> ``(..., 3)`` logits with ``theta3 = 0``."""
    return torch.cat([theta, torch.zeros_like(theta[..., :1])], dim=-1)


def objective_params(config: LandscapeConfig, objective: str):
    """The objective's parameters: registry defaults < ``eta``/``div`` < ``config.params``."""
    name = get_objective(objective).name
    return layered_params(name, {"eta": config.eta, "div": config.div}, config.params.get(name, {}))


def loss_function(config: LandscapeConfig, objective: str) -> Callable[[Tensor, dict | None], Tensor]:
    """:func:`losses` for one objective as a function of ``(theta, state)``, with the parameters, ``pi_old``
    and the advantages, which do not move, computed once (a trajectory evaluates it at every step)."""
    obj = get_objective(objective)
    params = objective_params(config, objective)
    log_prior = _log_prior(config)
    adv = _advantages(config, log_prior)

    def loss(theta: Tensor, state: dict | None = None) -> Tensor:
        logp = torch.log_softmax(_logits(theta), dim=-1)
        logp_old = log_prior.expand_as(logp)
        entropy = -(logp.exp() * logp).sum(-1, keepdim=True) if "entropy" in obj.needs else None
        batch = Batch(logp, logp_old, adv.expand_as(logp), weights=logp_old.exp(), logp_ref=logp_old,
                      entropy=entropy)
        if state is None:
            state = obj.state(params, tuple(theta.shape[:-1]), DTYPE)
        return objective_loss(obj, batch, params, state)

    return loss


def losses(config: LandscapeConfig, objective: str, theta: Tensor, state: dict | None = None) -> Tensor:
    """The objective's exact loss at logits ``theta (..., 2)`` -> ``(...)``, through the registry.

    The batch is every arm weighted by ``pi_old``, with ``pi_old`` as the reference policy. ``state``: the
    objective's own (FlowRL's ``log Z``, of shape ``theta.shape[:-1]``); fresh state when ``None``.
    """
    return loss_function(config, objective)(theta, state)


def trajectory(config: LandscapeConfig, objective: str) -> np.ndarray:
    """The optimizer's path from ``start``: ``(steps + 1, 3)`` rows of ``theta1, theta2, loss``."""
    theta = torch.tensor(config.start, dtype=DTYPE, requires_grad=True)
    obj = get_objective(objective)
    state = obj.state(objective_params(config, objective), (), DTYPE)
    loss_at = loss_function(config, objective)
    opt = (torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam)([theta, *state.values()],
                                                                                 lr=config.lr)
    path = np.empty((config.steps + 1, 3))
    for step in range(config.steps + 1):
        loss = loss_at(theta, state)
        path[step] = (*theta.detach().tolist(), loss.item())
        if step == config.steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return path


def run_landscape(config: LandscapeConfig) -> dict[str, pd.DataFrame]:
    """Contours of practical LAD, each objective's path and the optimum, as tidy frames.

    Returns ``{"grid": [theta1, theta2, loss], "trajectory": [objective, step, theta1, theta2, loss],
    "optimum": [theta1, theta2, pi1, pi2, pi3]}``; ``grid`` is ``config.grid ** 2`` rows (theta1 varies
    fastest), the practical LAD loss of ``config.div`` at each point.
    """
    axis = np.linspace(*config.window, config.grid)
    t1, t2 = np.meshgrid(axis, axis)  # t1 varies along columns (fastest)
    points = torch.tensor(np.stack([t1.ravel(), t2.ravel()], axis=-1), dtype=DTYPE)
    with torch.no_grad():
        grid_loss = losses(config, "lad", points).numpy()
    frames = []
    for objective in config.objectives:
        path = trajectory(config, objective)
        frames.append(pd.DataFrame({"objective": objective, "step": np.arange(len(path)),
                                    "theta1": path[:, 0], "theta2": path[:, 1], "loss": path[:, 2]}))
    star = optimum(config)
    pi_star = torch.softmax(_logits(torch.tensor(star, dtype=DTYPE)), -1).numpy()
    return {
        "grid": pd.DataFrame({"theta1": t1.ravel(), "theta2": t2.ravel(), "loss": grid_loss}),
        "trajectory": pd.concat(frames, ignore_index=True),
        "optimum": pd.DataFrame({"theta1": [star[0]], "theta2": [star[1]], "pi1": [pi_star[0]],
                                 "pi2": [pi_star[1]], "pi3": [pi_star[2]]}),
    }
