"""The world engine: trains any world of WORLDS.md under any registered objective, fused or by autograd.

A world (the token tree, ``ladsim.tree``; the many-prompt world) says what a response is and how the policy is
parameterized; the engine does the rest. Its policy is a stack of softmax rows ``logp = log_softmax(logits)``
(the world chooses the layout; the tree stores ``(S, V, M)``, each node's softmax over the middle axis), with
``S`` seeds as the leading tensor axis (each seed with its own random stream), and an objective sees a
:class:`ladsim.objectives.Batch` of *entries* (tokens, or whole responses) built from those rows. One
optimizer step, top to bottom:

1. every ``refresh_every`` steps: ``pi_old <- pi_theta`` (``World.behaviour``: what depends on ``pi_old`` alone,
   e.g. exact advantages ``A = R - E_{pi_old}[R]``);
2. sampled mode, every ``epochs`` steps: ``G`` responses per seed (and prompt) from ``pi_old``
   (``World.draw``), group-relative advantages;
3. the loss (``World.entries``): the objective's per-entry terms times the entries' aggregation weights, plus
   the run's KL penalty and entropy bonus on the token entries (``Entries.modifiers``), as an LLM trainer adds
   them; a full-support objective (theoretical LAD) gets the exact batch over every response;
4. the gradient and the optimizer step.

Step 4 has two engines that agree to rounding, as in the bandit (``ladsim.bandit.fused``). The autograd
reference builds the entries from the rows with differentiable gathers and sums, and backpropagates the loss.
The fused engine takes the objective's hand gradient per entry (``Objective.grad``), weights it, maps it back
onto the rows with the world's hand-written adjoint of those gathers (``Part.adjoint``: a scatter into the
rows, a subtree sum), applies the log-softmax backward per row and the chain rule to the world's parameters
(``World.params_grad``), and steps torch's fused Adam. Objectives without a hand gradient are differentiated
by autograd per entry inside the fused step.

The bandit is the world of one row whose entries are the row itself (``ladsim.tree`` with ``L = 1`` reproduces
it number for number); it keeps its own loop (``ladsim.bandit.trainer``), tuned to the few microseconds one of
its steps costs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch
from torch import Tensor

from ladsim.bandit.fused import FusedOptimizer
from ladsim.bandit.trainer import make_optimizer
from ladsim.objectives import (AdaptiveEntropy, Batch, EntropyBonus, KLPenalty, Objective, get_objective,
                               mean_entropy)
from ladsim.streams import SeedStreams


@dataclass
class Part:
    """A set of loss entries and how the loss reads them.

    Attributes:
        batch: what the objective (or the modifiers) sees, ``(S, ..., n)``.
        weights: ``(S, ..., n)`` each entry's weight in the loss, ``loss = sum weights * terms`` (the
            aggregation mode's large-batch limit in exact mode, its literal weights on a sample); ``None`` for a
            full-support objective, whose loss is already reduced.
        adjoint: maps ``dL/d(entry logp) (S, ..., n)`` onto ``dL/dlogp`` of the policy rows (``log_policy``'s
            shape): the transpose of how ``batch.logp`` was gathered from the rows (fused engine only).
        row_mass: the summed ``weights`` of the entries that read each row's entropy, broadcastable against
            the rows (the entropy bonus's weight per row, fused engine), or ``None``.
        scale: the factor of a full-support objective's reduced loss (``obj.loss``, one value per row of the
            batch): ``1/P`` where a world averages ``P`` prompts' losses.
    """

    batch: Batch
    weights: Tensor | None
    adjoint: Callable[[Tensor], Tensor]
    row_mass: Tensor | None = None
    scale: float = 1.0


def top_entropy_mask(entropy: Tensor, valid: Tensor | None, quantile: float) -> Tensor:
    """TRL's ``get_high_entropy_mask`` per seed (a row is one seed's sampled batch): keep the valid tokens whose
    entropy is at least the ``1 - quantile`` quantile of the row's valid tokens' (``torch.quantile``'s linear
    interpolation). ``entropy``, ``valid (S, T)`` (``None``: every token) -> bool ``(S, T)``; the entropies
    are detached."""
    entropy = entropy.detach()
    if valid is None:
        return entropy >= torch.quantile(entropy, 1.0 - quantile, dim=-1, keepdim=True)
    threshold = torch.nanquantile(torch.where(valid, entropy, float("nan")), 1.0 - quantile, dim=-1, keepdim=True)
    return (entropy >= threshold) & valid


@dataclass
class Entries:
    """The objective's part and the modifiers' (token) part of one step's loss; often the same."""

    objective: Part
    modifiers: Part | None = None


class World(Protocol):
    """What a world gives the engine. ``old`` and ``sample`` are the world's own objects."""

    seeds: int
    device: torch.device

    def initial_params(self, streams: SeedStreams) -> list[Tensor]:
        """The trainable tensors at the start (the policy's logits come from them)."""

    def log_policy(self, params: list[Tensor]) -> Tensor:
        """``log_softmax`` of the policy's logits (each row over the world's softmax axis), differentiable."""

    def params_grad(self, params: list[Tensor], logp_grad: Tensor, logp: Tensor) -> list[Tensor]:
        """The chain rule from ``dL/dlogp`` (the log-softmax backward of each row, then the parameterization)
        to each of ``params`` (fused engine)."""

    def prior(self) -> Tensor:
        """``log pi_old`` rows at the start (and of the reference policy), shaped as ``log_policy``'s."""

    def behaviour(self, logp_old: Tensor) -> Any:
        """Everything that depends on ``pi_old`` alone (advantages, weights), built at each refresh."""

    def draw(self, old: Any, streams: SeedStreams) -> Any:
        """Sampled mode: a fresh sample of responses from ``pi_old`` with their advantages."""

    def entries(self, obj: Objective, logp: Tensor, old: Any, sample: Any, memo: dict, streams: SeedStreams,
                modifiers: frozenset[str]) -> Entries:
        """The step's loss entries from the policy rows ``logp`` (differentiable gathers); ``modifiers``: the
        Batch fields the run's KL penalty and entropy bonus read (``logp_ref``, ``entropy``), empty without
        them."""

    def state_shape(self) -> tuple[int, ...]:
        """The shape of an objective's own state (FlowRL's ``log Z``): one per seed, or per seed and prompt."""

    def metrics(self, logp: Tensor) -> dict[str, Tensor]:
        """Exact metrics of the policy rows, ``{name: (S,)}``."""


@dataclass(frozen=True)
class Schedule:
    """How the engine trains: the settings every world shares (a run's config resolves them)."""

    steps: int
    lr: float
    optimizer: str = "adam"
    sampled: bool = False
    refresh_every: int = 0
    epochs: int = 1
    log_every: int = 50
    seed: int = 0
    kl: KLPenalty | None = None
    bonus: EntropyBonus | None = None
    entropy_control: AdaptiveEntropy | None = None  # supplies each step's bonus instead of ``bonus``


ENGINES = ("fused", "autograd")


def train_world(world: World, objective: str | Objective, params: Any, schedule: Schedule,
                engine: str = "fused", on_steps: Callable[[int], None] | None = None
                ) -> tuple[dict[str, np.ndarray], list[Tensor]]:
    """Train ``world.seeds`` policies of ``world`` under one registered objective.

    Returns ``(trajectory, params)``: ``trajectory`` maps ``"step"`` to ``(T,)`` and each metric to ``(T, S)``
    at the logged steps (0, ``log_every``, ..., ``steps``); ``params`` are the final trainable tensors.
    ``on_steps(n)`` is called as training advances by ``n`` steps.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    obj = get_objective(objective)
    grad_mode = torch.enable_grad() if engine == "autograd" else torch.no_grad()
    with grad_mode:
        return _train(world, obj, params, schedule, engine, on_steps)


def _train(world: World, obj: Objective, params: Any, sch: Schedule, engine: str,
           on_steps: Callable[[int], None] | None) -> tuple[dict[str, np.ndarray], list[Tensor]]:
    streams = SeedStreams(sch.seed, world.seeds, world.device)
    tensors = world.initial_params(streams)
    prior = world.prior()
    state = obj.state(params, world.state_shape(), prior.dtype, prior.device)
    fused = engine == "fused"
    if fused:
        state = {k: v.detach() for k, v in state.items()}
        opt = FusedOptimizer([*tensors, *state.values()], sch.optimizer, sch.lr)
    else:
        for t in tensors:
            t.requires_grad_(True)
        opt = make_optimizer([*tensors, *state.values()], sch)  # reads its `optimizer` and `lr`
    sampled = sch.sampled and not obj.full_support
    modifiers = frozenset().union(*(m.needs for m in (sch.kl, sch.bonus, sch.entropy_control) if m is not None))
    control = sch.entropy_control
    controllers = None if control is None else control.begin(world.seeds, prior.dtype, prior.device)
    bonus = sch.bonus

    old = world.behaviour(prior)
    sample = None
    memo: dict = {}
    steps_logged, logged = [], []

    def log(step: int) -> None:
        steps_logged.append(step)
        with torch.no_grad():
            logged.append(world.metrics(world.log_policy([t.detach() for t in tensors])))

    chunk = max(1, sch.steps // 100)
    for step in range(sch.steps):
        if sch.refresh_every and step % sch.refresh_every == 0:
            with torch.no_grad():
                old = world.behaviour(world.log_policy([t.detach() for t in tensors]))
            memo = {}
        if sampled and step % sch.epochs == 0:
            sample = world.draw(old, streams)
            memo = {}
        if step % sch.log_every == 0:
            log(step)
        logp = world.log_policy(tensors)
        entries = world.entries(obj, logp, old, sample if sampled else None, memo, streams, modifiers)
        if control is not None:
            bonus = control.bonus(controllers)
        if fused:
            g, d_state = rows_gradient(obj, entries, params, state, sch.kl, bonus, logp)
            opt.step([*world.params_grad(tensors, g, logp), *(d_state[k] for k in state)])
        else:
            loss = entries_loss(obj, entries, params, state, sch.kl, bonus)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        if control is not None:  # the step's mean token entropy, over the modifiers' entries
            mods = entries.modifiers
            control.update(controllers, mean_entropy(mods.weights, mods.batch.entropy))
        if on_steps is not None and (step + 1) % chunk == 0:
            on_steps(chunk)
    if on_steps is not None:
        on_steps(sch.steps % chunk)
    log(sch.steps)
    trajectory = {"step": np.array(steps_logged)}
    for name in logged[0]:
        trajectory[name] = torch.stack([m[name] for m in logged]).cpu().numpy()
    return trajectory, [t.detach() for t in tensors]


def entries_loss(obj: Objective, entries: Entries, params: Any, state: Mapping[str, Tensor],
                 kl: KLPenalty | None, bonus: EntropyBonus | None) -> Tensor:
    """The step's loss per seed (and prompt), ``(S, ...)``: the autograd reference's.

    ``sum weights * l`` over the objective's entries (``obj.loss`` for a full-support objective), plus
    ``sum weights * (beta k + (-coef H))`` over the modifiers' entries.
    """
    part = entries.objective
    if obj.full_support:
        loss = part.scale * obj.loss(part.batch, params, state)
    else:
        loss = (part.weights * obj.terms(part.batch, params, state)).sum(-1)
    mods = entries.modifiers
    for modifier in (kl, bonus):
        if modifier is not None:
            loss = loss + (mods.weights * modifier.terms(mods.batch)).sum(-1)
    return loss


def rows_gradient(obj: Objective, entries: Entries, params: Any, state: Mapping[str, Tensor],
                  kl: KLPenalty | None, bonus: EntropyBonus | None, logp: Tensor
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """``(dL/dlogp (the rows' shape), {name: dL/dstate})`` of the summed :func:`entries_loss`, by hand.

    Per entry: the objective's ``dl/dlogp`` (``Objective.grad``; autograd of its terms where it has none)
    times the entry's weight; a full-support objective's gradient is already the reduced loss's. The KL
    penalty adds ``weights * beta k'`` on the modifiers' entries, the entropy bonus ``coef m pi (logp + 1)``
    per row (``m = Part.row_mass``). Each part's entries go back onto the rows by its adjoint.
    """
    part, mods = entries.objective, entries.modifiers
    d_entries, d_state = entry_gradient(obj, part, params, state)
    if kl is not None and mods is part:  # one scatter for both when they share the entries
        d_entries = d_entries + part.weights * kl.grad(part.batch)
    g = part.adjoint(d_entries)
    if kl is not None and mods is not part:
        g = g + mods.adjoint(mods.weights * kl.grad(mods.batch))
    if bonus is not None:
        g = g + bonus.grad(logp, mods.row_mass)
    return g, d_state


def entry_gradient(obj: Objective, part: Part, params: Any, state: Mapping[str, Tensor]
                   ) -> tuple[Tensor, dict[str, Tensor]]:
    """``(dL/d(entry logp) (S, ..., n), {name: dL/dstate})`` of the part's loss ``sum weights * l``: the
    objective's hand gradient (``Objective.grad``) times the weights, a full-support objective's (already the
    reduced loss's), or autograd's of that loss in ``batch.logp`` and the state where it registers none."""
    batch = part.batch
    if obj.grad is not None:
        d_terms, d_state = obj.grad(batch, params, state)
        if obj.full_support:
            if part.scale == 1.0:
                return d_terms, d_state
            return part.scale * d_terms, {k: part.scale * v for k, v in d_state.items()}
        return part.weights * d_terms, {k: (part.weights * v).sum(-1) for k, v in d_state.items()}
    with torch.enable_grad():
        leaf = batch.logp.detach().requires_grad_(True)
        leaves = {k: v.detach().requires_grad_(True) for k, v in state.items()}
        changes: dict[str, Any] = {"logp": leaf}
        if batch.entropy is not None:  # objectives read the entropy detached (the registry's contract)
            changes["entropy"] = batch.entropy.detach()
        local = dataclasses.replace(batch, **changes)
        if obj.full_support:
            loss = part.scale * obj.loss(local, params, leaves)
        else:
            loss = (part.weights * obj.terms(local, params, leaves)).sum(-1)
        grads = torch.autograd.grad(loss.sum(), [leaf, *leaves.values()], allow_unused=True)
    g = grads[0] if grads[0] is not None else torch.zeros_like(leaf)
    return g, {k: (v if v is not None else torch.zeros_like(leaves[k])) for k, v in zip(leaves, grads[1:])}
