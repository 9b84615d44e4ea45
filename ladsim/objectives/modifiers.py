"""Modifiers that compose with any objective: a KL penalty to a reference policy and an entropy bonus.

Both contribute per-action terms that ``objective_loss`` reduces the way it reduces the objective's own terms
(exact expectation under ``pi_old`` or the sample mean), as an LLM trainer adds ``beta * kl`` and
``-alpha_H * H`` to every token's loss (OBJECTIVES.md "KL penalty", "entropy bonus"). The estimators
themselves are the loss core's (:func:`ladsim.losses.kl_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch
from torch import Tensor

from ladsim.losses import KL_ESTIMATORS, kl_terms
from ladsim.objectives.registry import Batch, check_number

@dataclass(frozen=True)
class KLPenalty:
    """``+ beta * k(logp - logp_ref)`` per action; ``beta`` default 0.001 and k3 as in verl (``kl_loss_coef``,
    ``low_var_kl``). ``bias_correction``: ``+ beta * r * k`` with the (differentiable) token ratio ``r = pi /
    pi_old``, TRL's ``use_bias_correction_kl``: under ``pi_old``'s samples (or weights) it estimates the KL of
    the current policy, ``E_pi_old[r k] = E_pi[k]``, however far ``pi_old`` lags."""

    beta: float = 0.001
    estimator: str = "k3"
    clamp: bool = False
    bias_correction: bool = False
    needs: ClassVar[frozenset[str]] = frozenset({"logp_ref"})  # the Batch field its terms read

    def __post_init__(self) -> None:
        check_number("kl beta", self.beta, low=0.0)
        if self.estimator not in KL_ESTIMATORS:
            raise ValueError(f"unknown KL estimator {self.estimator!r}; choose one of: {', '.join(KL_ESTIMATORS)}")

    def terms(self, batch: Batch) -> Tensor:
        logp_ref = batch.need("logp_ref", f"kl penalty ({self.estimator})")
        k = kl_terms(batch.logp, logp_ref, self.estimator, clamp=self.clamp)
        if self.bias_correction:
            k = k * torch.exp(batch.logp - batch.logp_old.detach())
        return self.beta * k

    def grad(self, batch: Batch) -> Tensor:
        """``d terms / d logp`` elementwise, by hand (:meth:`estimator_grad`); with ``bias_correction``,
        ``beta r (k + k')`` (the product rule, ``dr/dlogp = r``), which for k3 unclamped is ``beta r t``
        exactly (``e^-t - 1 + t + 1 - e^-t``: the sum would cancel two terms of size ``e^-t``)."""
        g = self.estimator_grad(batch)
        if not self.bias_correction:
            return g
        ratio = torch.exp(batch.logp - batch.logp_old)
        if self.estimator == "k3" and not self.clamp:
            return ratio * (self.beta * (batch.logp - batch.logp_ref))
        k = kl_terms(batch.logp, batch.need("logp_ref", "kl penalty"), self.estimator, clamp=self.clamp)
        return ratio * (self.beta * k + g)

    def estimator_grad(self, batch: Batch) -> Tensor:
        """``beta k'(t)`` elementwise, by hand, with ``k1' = 1``, ``abs' = sign(t)``,
        ``k2' = t`` (and every straight-through "+"), ``k3' = 1 - exp(-t)`` (0 where a clamp of ``clamp=True``
        holds the value)."""
        t = batch.logp - batch.need("logp_ref", f"kl penalty ({self.estimator})")
        if self.estimator == "k1":
            return torch.full_like(t, self.beta)
        if self.estimator == "abs":
            return self.beta * torch.sign(t)
        if self.estimator in ("k2", "k3+", "k1+", "abs+"):
            return self.beta * t
        if not self.clamp:
            return self.beta * -torch.expm1(-t)
        neg_t = t.neg()
        d = torch.where((neg_t >= -20.0) & (neg_t <= 20.0), -torch.exp(neg_t.clamp(-20.0, 20.0)), torch.zeros_like(t))
        k3 = torch.expm1(neg_t.clamp(-20.0, 20.0)) + t
        return self.beta * torch.where((k3 >= -10.0) & (k3 <= 10.0), d + 1.0, torch.zeros_like(t))


@dataclass(frozen=True)
class EntropyBonus:
    """``- coef * H`` per action (verl ``entropy_coeff``): rewards a spread-out policy. ``coef`` may be a tensor
    of one coefficient per seed, ``(S,)`` (:class:`AdaptiveEntropy`'s)."""

    coef: float | Tensor = 0.0
    needs: ClassVar[frozenset[str]] = frozenset({"entropy"})  # the Batch field its terms read

    def __post_init__(self) -> None:
        if not isinstance(self.coef, Tensor):
            check_number("entropy coef", self.coef, low=0.0)

    def _coef(self, ndim: int) -> float | Tensor:
        """The coefficient; a per-seed tensor viewed ``(S, 1, ...)`` against ``ndim`` dimensions."""
        if not isinstance(self.coef, Tensor):
            return self.coef
        return self.coef.view(-1, *([1] * (ndim - 1)))

    def terms(self, batch: Batch) -> Tensor:
        entropy = batch.need("entropy", "entropy bonus")
        shape = torch.broadcast_shapes(entropy.shape, batch.logp.shape)
        return torch.broadcast_to(-self._coef(len(shape)) * entropy, shape)

    def grad(self, logp: Tensor, mass: Tensor | float = 1.0) -> Tensor:
        """Gradient of ``-coef * mass * H`` in the full row ``logp (..., N)`` of the policy, by hand:
        ``dH/dlogp = -pi (logp + 1)``, so ``coef * mass * pi (logp + 1)``. ``mass`` is the total reduction
        weight the bonus's (constant) terms get: 1 for a mean, ``sum pi_old`` for an exact expectation."""
        return (self._coef(logp.dim()) * mass) * torch.exp(logp) * (logp + 1.0)


@dataclass(frozen=True)
class AdaptiveEntropy:
    """TRL's adaptive entropy control (``use_adaptive_entropy``; Skywork-OR1, arXiv:2505.22312), one controller
    per seed: the bonus ``- c H`` applies at a step only when the entropy measured at the previous step is at
    most ``target`` (none at the first), and after every optimizer step ``c`` moves by ``delta`` (up when the
    step's entropy is at most ``target``, else down), kept in ``[low, high]``; ``start`` is the first ``c``
    (TRL's ``entropy_coef``). The entropy measured is the step's mean per-token entropy (its entries' weighted
    mean). Defaults: TRL's (``entropy_target`` 0.2, ``entropy_coef_delta`` 0.005, ``_min`` 0, ``_max`` 1)."""

    target: float = 0.2
    delta: float = 0.005
    low: float = 0.0
    high: float = 1.0
    start: float = 0.0
    needs: ClassVar[frozenset[str]] = frozenset({"entropy"})

    def __post_init__(self) -> None:
        check_number("entropy target", self.target, low=0.0)
        check_number("entropy coef delta", self.delta, low=0.0, low_open=True)
        check_number("entropy coef min", self.low, low=0.0)
        check_number("entropy coef max", self.high, low=self.low)
        check_number("entropy coef", self.start, low=self.low, high=self.high)

    def begin(self, seeds: int, dtype: torch.dtype, device: torch.device | str) -> dict[str, Tensor]:
        """The controllers' state: ``coef`` and the ``last`` measured entropy (``inf``: none yet), ``(S,)``."""
        return {"coef": torch.full((seeds,), self.start, dtype=dtype, device=device),
                "last": torch.full((seeds,), float("inf"), dtype=dtype, device=device)}

    def bonus(self, state: Mapping[str, Tensor]) -> EntropyBonus:
        """This step's bonus: ``c`` where the last entropy is at most ``target``, else 0, per seed."""
        return EntropyBonus(torch.where(state["last"] <= self.target, state["coef"], 0.0))

    def update(self, state: dict[str, Tensor], entropy: Tensor) -> None:
        """After an optimizer step whose mean token entropy per seed was ``entropy (S,)``, in place."""
        low = entropy <= self.target
        state["coef"] = torch.where(low, (state["coef"] + self.delta).clamp(max=self.high),
                                    (state["coef"] - self.delta).clamp(min=self.low))
        state["last"] = entropy.detach().to(state["last"].dtype)


def mean_entropy(weights: Tensor, entropy: Tensor) -> Tensor:
    """The weighted mean of ``entropy`` over every axis but the seeds', ``(S,)``; the two broadcast against
    each other."""
    w, h = torch.broadcast_tensors(weights.detach(), entropy.detach())
    return (w * h).flatten(1).sum(-1) / w.flatten(1).sum(-1)
