"""The PPO-clip family (OBJECTIVES.md): ``grpo``, ``entadv``, ``clip-cov``, ``kl-cov``.

All four are built on the core's :func:`ladsim.losses.ppo_terms`. The bandit leaves the PPO clip off by default
(``eps_low = eps_high = None``): with a frozen ``pi_old`` a clip at ``1 + eps`` stops every arm at that ratio
(ladsim.bandit.config). verl's defaults are ``eps_low = eps_high = 0.2``, ``clip_ratio_c = 3``,
``log_ratio_clamp = 20``; set them with ``--set grpo.eps_low=0.2`` etc. or the bandit's ``--clip``.

clip-cov and kl-cov act on the tokens of largest covariance ``cov(y) = (A(y) - mean A)(logp(y) - mean logp)``
(Cui et al. 2025). With samples (the bandit's sampled mode, LLM tokens) they follow verl literally: the means
are over the valid entries of the row and ``n = max(floor(rho * #valid), 1)`` entries are picked. In the
bandit's exact mode the "tokens" are all arms weighted by ``pi_old``, and ladsim uses the large-batch limit of
the same rule (``#valid -> infinity``, so ``n / #valid -> rho``):

* the means are ``pi_old``-weighted;
* clip-cov: every eligible arm (``lb < cov < ub``, not clipped) keeps ``1 - min(1, rho / m)`` of its term,
  ``m`` the ``pi_old`` mass of the eligible arms: the expected loss when a ``rho`` fraction of all tokens is
  dropped at random among the eligible ones;
* kl-cov: the arms of largest ``cov`` covering ``pi_old`` mass ``rho`` (the last one fractionally) get the
  ``lambda |logp - logp_old|`` penalty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Mapping

import torch
from torch import Tensor

from ladsim.losses import ppo_terms
from ladsim.objectives.registry import Batch, check_number, register_gradient, register_objective
from ladsim.streams import uniform_like


def _check_clip(params) -> None:
    check_number("eps_low", params.eps_low, low=0.0, high=1.0, allow_none=True)
    check_number("eps_high", params.eps_high, low=0.0, allow_none=True)


def _ppo(batch: Batch, params, advantages: Tensor | None = None) -> Tensor:
    return ppo_terms(batch.logp, batch.logp_old, batch.advantages if advantages is None else advantages,
                     eps_low=params.eps_low, eps_high=params.eps_high,
                     clip_ratio_c=getattr(params, "clip_ratio_c", None),
                     log_ratio_clamp=getattr(params, "log_ratio_clamp", None), delta=getattr(params, "delta", None))


def _ppo_value_and_grad(batch: Batch, params, advantages: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(l, dl/dlogp)`` of :func:`ladsim.losses.ppo_terms`, elementwise, derived by hand.

    With ``d = logp - logp_old`` and ``r = e^d``: ``d(-A r)/dlogp = -A r``. The clip, the dual clip and the
    log-ratio clamp pass or stop that derivative the way autograd does: a clamp passes it inside its closed
    range, ``minimum`` to its smaller argument and half to each on a tie.
    """
    a = batch.advantages if advantages is None else advantages
    eps_low, eps_high = params.eps_low, params.eps_high
    c, clamp = getattr(params, "clip_ratio_c", None), getattr(params, "log_ratio_clamp", None)
    log_ratio = batch.logp - batch.logp_old
    if clamp is not None:
        inside = (log_ratio >= -clamp) & (log_ratio <= clamp)
        log_ratio = log_ratio.clamp(-clamp, clamp)
    ratio = torch.exp(log_ratio)
    surrogate = ratio * a
    d_surrogate = surrogate
    delta = getattr(params, "delta", None)
    if delta is not None:  # TRL's two-sided clip: min(r, delta), the clamp passing the derivative for r <= delta
        d_surrogate = torch.where(ratio <= delta, surrogate, torch.zeros_like(surrogate))
        surrogate = ratio.clamp(max=delta) * a
    if eps_low is not None or eps_high is not None:
        lo = 1.0 - (eps_low if eps_low is not None else float("inf"))
        hi = 1.0 + (eps_high if eps_high is not None else float("inf"))
        clipped = ratio.clamp(lo, hi) * a
        d_clipped = torch.where((ratio >= lo) & (ratio <= hi), ratio * a, torch.zeros_like(surrogate))
        d_surrogate = _minimum_grad(surrogate, clipped, d_surrogate, d_clipped)
        surrogate = torch.minimum(surrogate, clipped)
    terms, d_terms = -surrogate, -d_surrogate
    if c is not None:
        cap = -a * c
        capped = torch.minimum(terms, cap)
        d_terms = torch.where(a < 0, _minimum_grad(terms, cap, d_terms, torch.zeros_like(d_terms)), d_terms)
        terms = torch.where(a < 0, capped, terms)
    if clamp is not None:
        d_terms = torch.where(inside, d_terms, torch.zeros_like(d_terms))
    return terms, d_terms


def _unclipped(params) -> bool:
    """Whether no clip, dual clip or log-ratio clamp is set: then ``ppo_terms`` is ``-A r`` everywhere."""
    return (params.eps_low is None and params.eps_high is None and getattr(params, "clip_ratio_c", None) is None
            and getattr(params, "log_ratio_clamp", None) is None and getattr(params, "delta", None) is None)


def _negated_advantages(batch: Batch) -> Tensor:
    """``-A``, once per memo (:meth:`Batch.constant`)."""
    return batch.constant("ppo.negated_advantages", lambda: -batch.advantages)


def _ppo_grad(batch: Batch, params, negated_advantages: Tensor, weighted: bool = False) -> Tensor:
    """``dl/dlogp`` of :func:`ladsim.losses.ppo_terms` alone, given ``-A``: ``-A r`` where
    :func:`_unclipped` (three kernels; ``-(A r)`` and ``r (-A)`` are the same floats), else
    :func:`_ppo_value_and_grad`'s. ``weighted``: times the exact batch's weights ``pi_old``, which is ``-A pi``
    unclipped (``pi_old r = pi``: two kernels)."""
    if _unclipped(params):
        return torch.exp(batch.logp if weighted else batch.logp - batch.logp_old) * negated_advantages
    d_terms = _ppo_value_and_grad(batch, params, -negated_advantages)[1]
    return batch.weights * d_terms if weighted else d_terms


def _minimum_grad(x: Tensor, y: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Derivative of ``minimum(x, y)`` as autograd takes it: ``dx`` where ``x < y``, ``dy`` where ``x > y``, the
    mean of the two on a tie."""
    return torch.where(x < y, dx, torch.where(x > y, dy, 0.5 * (dx + dy)))


_EPS_LOW = field(default=None, metadata={"doc": "PPO clip 1 - eps_low (None: unclipped; verl 0.2)"})
_EPS_HIGH = field(default=None, metadata={"doc": "PPO clip 1 + eps_high (None: unclipped; verl 0.2)"})


# --- grpo ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GRPOParams:
    eps_low: float | None = _EPS_LOW
    eps_high: float | None = _EPS_HIGH
    clip_ratio_c: float | None = field(default=None, metadata={
        "doc": "dual clip for A < 0: l = min(l, -A c) (None: off; verl 3)"})
    log_ratio_clamp: float | None = field(default=None, metadata={
        "doc": "clamp logp - logp_old to [-x, x] before exp (None: off; verl 20)"})
    delta: float | None = field(default=None, metadata={
        "doc": "two-sided clip: the unclipped ratio capped at delta (None: off; TRL delta, INTELLECT-2)"})

    def __post_init__(self) -> None:
        _check_clip(self)
        check_number("clip_ratio_c", self.clip_ratio_c, low=1.0, low_open=True, allow_none=True)
        check_number("log_ratio_clamp", self.log_ratio_clamp, low=0.0, low_open=True, allow_none=True)
        check_number("delta", self.delta, low=1.0, low_open=True, allow_none=True)


@register_objective(
    "grpo", GRPOParams,
    formula="l = max(-A min(r, delta), -A clip(r, 1-eps_low, 1+eps_high)); A < 0: l = min(l, -A c)",
    reference="Shao et al. 2024 (DeepSeekMath, GRPO), Schulman et al. 2017 (PPO); verl 'vanilla'",
    summary="GRPO / PPO-clip surrogate (unclipped in the bandit by default: advantage maximization)")
def grpo(batch: Batch, params: GRPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return _ppo(batch, params)


@register_gradient("grpo")
def grpo_grad(batch: Batch, params: GRPOParams, state: Mapping[str, Tensor],
              weighted: bool = False) -> tuple[Tensor, dict]:
    """``dl/dlogp``; ``weighted``: the exact gradient (times ``pi_old``, ``Objective.exact_grad``)."""
    return _ppo_grad(batch, params, _negated_advantages(batch), weighted), {}


register_gradient("grpo", exact=True)(partial(grpo_grad, weighted=True))


# --- entadv -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EntAdvParams:
    alpha: float = field(default=0.4, metadata={"doc": "weight of the detached entropy in the advantage"})
    kappa: float = field(default=2.0, metadata={"doc": "the entropy term is capped at |A| / kappa"})
    eps_low: float | None = _EPS_LOW
    eps_high: float | None = _EPS_HIGH

    def __post_init__(self) -> None:
        check_number("alpha", self.alpha, low=0.0)
        check_number("kappa", self.kappa, low=0.0, low_open=True)
        _check_clip(self)


@register_objective(
    "entadv", EntAdvParams, needs=("entropy",),
    formula="A' = A + min(alpha H_detached, |A|/kappa);  l = PPO-clip with A'",
    reference="Cheng et al. 2025, Reasoning with Exploration: An Entropy Perspective, arXiv:2506.14758",
    summary="entropy-shaped advantage: A + min(alpha H, |A|/kappa), then the PPO-clip surrogate")
def entadv(batch: Batch, params: EntAdvParams, state: Mapping[str, Tensor]) -> Tensor:
    return _ppo(batch, params, _shaped_advantages(batch, params))


def _shaped_advantages(batch: Batch, params: EntAdvParams) -> Tensor:
    """``A + min(alpha H, |A| / kappa)`` with the entropy detached."""
    entropy = batch.need("entropy", "entadv").detach()
    a = batch.advantages
    return a + torch.minimum(params.alpha * entropy, a.abs() / params.kappa)


@register_gradient("entadv")
def entadv_grad(batch: Batch, params: EntAdvParams, state: Mapping[str, Tensor],
                weighted: bool = False) -> tuple[Tensor, dict]:
    """:func:`_shaped_advantages` negated, with ``-A`` and ``|A| / kappa`` computed once per memo;
    ``weighted``: the exact gradient (times ``pi_old``, ``Objective.exact_grad``)."""
    cap = batch.constant(("entadv.cap", params.kappa), lambda: batch.advantages.abs() / params.kappa)
    bonus = torch.minimum(params.alpha * batch.need("entropy", "entadv").detach(), cap)
    return _ppo_grad(batch, params, _negated_advantages(batch) - bonus, weighted), {}


register_gradient("entadv", exact=True)(partial(entadv_grad, weighted=True))


# --- covariance-based: clip-cov, kl-cov --------------------------------------------------------------------

def _row_weights(valid: Tensor | None, weights: Tensor | None, shape: torch.Size, dtype: torch.dtype) -> Tensor | None:
    """The weights of a row mean over the last axis, ``(..., n)`` summing to one over the valid entries
    (``pi_old``-weighted if ``weights`` is given); ``None`` for the plain mean of every entry."""
    if weights is None and valid is None:
        return None
    w = weights if valid is None else valid if weights is None else weights * valid
    w = torch.broadcast_to(w.to(dtype), shape)
    return w / w.sum(-1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)


def _row_mean(x: Tensor, row_weights: Tensor | None) -> Tensor:
    """Mean of ``x`` over the last axis with :func:`_row_weights` (``None``: all entries), ``(..., 1)``."""
    if row_weights is None:
        return x.mean(-1, keepdim=True)
    return (x * row_weights).sum(-1, keepdim=True)


def token_covariance(batch: Batch) -> tuple[Tensor, Tensor]:
    """``(cov, valid)``: ``cov = (A - mean A)(logp - mean logp)`` (detached), means over the valid entries of the
    row (``pi_old``-weighted in exact mode); both of the broadcast shape ``(..., n)``. The centered advantages
    and the row weights depend on the batch's fixed fields only: computed once per memo."""
    def fixed() -> tuple[Tensor, Tensor, Tensor | None]:
        shape = torch.broadcast_shapes(batch.logp.shape, batch.advantages.shape)
        masked = None if batch.mask is None else torch.broadcast_to(batch.mask, shape) > 0
        dtype = torch.promote_types(batch.logp.dtype, batch.advantages.dtype)
        row_weights = _row_weights(masked, batch.weights, shape, dtype)
        a = torch.broadcast_to(batch.advantages, shape).detach()
        valid = masked if masked is not None else torch.ones(shape, dtype=torch.bool, device=a.device)
        return a - _row_mean(a, row_weights), valid, row_weights

    centered_advantages, valid, row_weights = batch.constant("cov.fixed", fixed)
    lp = batch.logp.detach() if batch.logp.requires_grad else batch.logp
    lp = lp if lp.shape == valid.shape else torch.broadcast_to(lp, valid.shape)
    return (lp - _row_mean(lp, row_weights)).mul_(centered_advantages), valid


def _pick_count(valid: Tensor, ratio: float) -> Tensor:
    """verl's ``max(int(ratio * #valid), 1)`` per row, ``(..., 1)``."""
    return torch.floor(ratio * valid.sum(-1, keepdim=True).to(torch.float64)).clamp(min=1).to(torch.long)


def _rank(keys: Tensor, descending: bool = False) -> Tensor:
    """Rank of each entry of the row when sorted by ``keys`` (0 = first), ``(..., n)``."""
    order = torch.argsort(keys, dim=-1, descending=descending, stable=True)
    return torch.argsort(order, dim=-1)


@dataclass(frozen=True)
class ClipCovParams:
    ratio: float = field(default=2e-4, metadata={"doc": "fraction rho of tokens whose gradient is cut (verl)"})
    lb: float = field(default=1.0, metadata={"doc": "eligible tokens have lb < cov < ub"})
    ub: float = field(default=5.0, metadata={"doc": "eligible tokens have lb < cov < ub"})
    eps_low: float | None = _EPS_LOW
    eps_high: float | None = _EPS_HIGH

    def __post_init__(self) -> None:
        check_number("ratio", self.ratio, low=0.0, high=1.0, low_open=True)
        check_number("lb", self.lb)
        check_number("ub", self.ub)
        if not self.lb < self.ub:
            raise ValueError(f"lb must be < ub, got lb={self.lb}, ub={self.ub}")
        _check_clip(self)


@register_objective(
    "clip-cov", ClipCovParams, needs=("generator",),
    formula="l = PPO-clip, except n = max(floor(rho #valid), 1) random tokens with lb < cov < ub "
            "(not PPO-clipped) get l = 0",
    reference="Cui et al. 2025, The Entropy Mechanism of RL for Reasoning LMs, arXiv:2505.22617; verl 'clip_cov'",
    summary="PPO-clip with the gradient cut on a few random high-covariance tokens")
def clip_cov(batch: Batch, params: ClipCovParams, state: Mapping[str, Tensor]) -> Tensor:
    terms = _ppo(batch, params)
    return _clip_cov_cut(terms, batch, params, terms)


def _clip_cov_cut(x: Tensor, batch: Batch, params: ClipCovParams, terms: Tensor | None) -> Tensor:
    """``x`` (the terms or their derivatives, ``(..., n)``) with clip-cov's cut: in exact mode every eligible arm
    keeps ``1 - min(1, rho / m)`` of it, ``m`` the eligible ``pi_old`` mass; with samples the randomly picked
    entries are multiplied by 0 (as verl does). Draws from ``batch.generator`` in sampled mode. ``terms`` (the
    PPO-clip terms) is read only where a clip is set."""
    cov, valid = token_covariance(batch)
    band = batch.constant(("clip-cov.band", params.lb, params.ub), lambda: _open_band(params.lb, params.ub, cov))
    eligible = cov.clamp(band[0], band[1]) == cov if band is not None else torch.zeros_like(valid)
    if batch.mask is not None:
        eligible &= valid
    if params.eps_low is not None or params.eps_high is not None:  # not the tokens the PPO clip already stops
        unclipped = ppo_terms(batch.logp, batch.logp_old, batch.advantages)
        eligible &= ~(terms.detach() > unclipped.detach())
    if batch.exact:  # 1 - min(1, rho / m) = 1 - 1 / max(1, m / rho): x - x / max(1, m / rho)
        w, zero = batch.constant(("clip-cov.weights", params.ratio),
                                 lambda: (torch.broadcast_to(batch.weights, cov.shape) / params.ratio,
                                          cov.new_zeros(())))  # a tensor 0: no scalar to wrap per step
        mass = torch.where(eligible, w, zero).sum(-1, keepdim=True).clamp_(min=1.0)
        return torch.where(eligible, torch.addcdiv(x, x, mass, value=-1.0), x)
    keys = uniform_like(cov.shape, batch.generator, torch.float64, cov.device).masked_fill(~eligible, 2.0)
    cut = eligible & (_rank(keys) < _pick_count(valid, params.ratio))
    return torch.where(cut, 0.0 * x, x)


def _open_band(lb: float, ub: float, like: Tensor) -> tuple[Tensor, Tensor] | None:
    """The closed band ``[lo, hi]`` of ``like``'s dtype holding exactly its numbers with ``lb < x < ub`` (``lo``
    is the float after ``lb``, ``hi`` the one before ``ub``), so that ``x.clamp(lo, hi) == x`` tests the open
    band in two kernels instead of three (NaN is outside either way); ``None`` when no number lies inside."""
    lb_t, ub_t = like.new_tensor(lb), like.new_tensor(ub)
    lo, hi = torch.nextafter(lb_t, ub_t), torch.nextafter(ub_t, lb_t)
    return (lo, hi) if bool(lb_t < ub_t) and bool(lo <= hi) else None


@register_gradient("clip-cov")
def clip_cov_grad(batch: Batch, params: ClipCovParams, state: Mapping[str, Tensor],
                  weighted: bool = False) -> tuple[Tensor, dict]:
    """``dl/dlogp`` with the cut; ``weighted``: the exact gradient (times ``pi_old``, ``Objective.exact_grad``;
    the cut scales each entry, so it cuts the weighted derivative alike)."""
    if _unclipped(params):
        d_terms = _ppo_grad(batch, params, _negated_advantages(batch), weighted)
        return _clip_cov_cut(d_terms, batch, params, None), {}
    terms, d_terms = _ppo_value_and_grad(batch, params)
    return _clip_cov_cut(batch.weights * d_terms if weighted else d_terms, batch, params, terms), {}


register_gradient("clip-cov", exact=True)(partial(clip_cov_grad, weighted=True))


@dataclass(frozen=True)
class KLCovParams:
    ratio: float = field(default=2e-4, metadata={"doc": "fraction rho of tokens that get the penalty (verl)"})
    coef: float = field(default=1.0, metadata={"doc": "lambda of lambda |logp - logp_old| (verl ppo_kl_coef)"})

    def __post_init__(self) -> None:
        check_number("ratio", self.ratio, low=0.0, high=1.0, low_open=True)
        check_number("coef", self.coef, low=0.0)


@register_objective(
    "kl-cov", KLCovParams,
    formula="l = -A r + lambda |logp - logp_old| on the n = max(floor(rho #valid), 1) tokens of largest cov; "
            "l = -A r elsewhere",
    reference="Cui et al. 2025, The Entropy Mechanism of RL for Reasoning LMs, arXiv:2505.22617; verl 'kl_cov'",
    summary="-A r with a |log-ratio| penalty on the highest-covariance tokens")
def kl_cov(batch: Batch, params: KLCovParams, state: Mapping[str, Tensor]) -> Tensor:
    log_ratio = batch.logp - batch.logp_old.detach()
    terms = -batch.advantages * torch.exp(log_ratio)
    return terms + params.coef * _kl_cov_fraction(batch, params) * log_ratio.abs()


def _kl_cov_fraction(batch: Batch, params: KLCovParams, weighted: bool = False) -> Tensor:
    """The share of each entry's ``lambda |logp - logp_old|`` penalty, ``(..., n)`` in [0, 1] (detached);
    ``weighted``: times the exact batch's weights."""
    cov, valid = token_covariance(batch)
    keys = cov if batch.mask is None else cov.masked_fill(~valid, float("-inf"))
    if batch.exact:
        w = batch.constant("kl-cov.weights", lambda: torch.broadcast_to(batch.weights, cov.shape) * valid)
        top = batch.constant(("kl-cov.top_share", params.ratio, weighted),
                             lambda: _top_share(w, valid, params.ratio, weighted))
        if top is not None:
            share, positions = top
            return torch.where(positions == torch.argmax(keys, dim=-1, keepdim=True), share, 0.0)
        order = torch.argsort(keys, dim=-1, descending=True, stable=True)
        w = w.gather(-1, order)
        before = torch.cumsum(w, -1) - w
        share = ((params.ratio - before) / w.clamp(min=torch.finfo(w.dtype).tiny)).clamp(0.0, 1.0) * (w > 0)
        return torch.zeros_like(share).scatter(-1, order, share * w if weighted else share)
    dtype = torch.promote_types(batch.logp.dtype, batch.advantages.dtype)
    return (valid & (_rank(keys, descending=True) < _pick_count(valid, params.ratio))).to(dtype)


def _top_share(w: Tensor, valid: Tensor, ratio: float, weighted: bool) -> tuple[Tensor, Tensor] | None:
    """Where every valid entry's weight exceeds ``ratio`` (verl's default 2e-4 is far below a bandit arm's
    ``pi_old``) and every row has one, the mass ``ratio`` is covered by the row's top entry alone: its share
    is ``ratio / w``, and the sort of the general rule reduces to an argmax (the first maximum, as the stable
    sort's first entry). Returns each entry's share if it were on top (``weighted``: times its weight) and
    the positions ``0 .. n-1`` that pick the top's, or ``None`` where the rule needs the sort. The margin keeps
    ``ratio - (w_top + w_next - w_next)`` at or below 0 despite rounding."""
    if not bool((valid.any(-1).all() & ((w > ratio * (1.0 + 1e-9)) | ~valid).all()).item()):
        return None
    share = (ratio / w.clamp(min=torch.finfo(w.dtype).tiny)).clamp(max=1.0)
    return share * w if weighted else share, torch.arange(w.shape[-1], device=w.device)


@register_gradient("kl-cov")
def kl_cov_grad(batch: Batch, params: KLCovParams, state: Mapping[str, Tensor],
                weighted: bool = False) -> tuple[Tensor, dict]:
    """``-A r + lambda fraction sign(logp - logp_old)`` (autograd's ``|x|'`` is ``sign(x)``, 0 at 0);
    ``weighted``: the exact gradient, ``-A pi + lambda pi_old fraction sign(...)`` (``Objective.exact_grad``)."""
    log_ratio = batch.logp - batch.logp_old
    d_terms = torch.exp(batch.logp if weighted else log_ratio) * _negated_advantages(batch)
    fraction = _kl_cov_fraction(batch, params, weighted)
    return d_terms.addcmul_(fraction, torch.sign(log_ratio), value=params.coef), {}


register_gradient("kl-cov", exact=True)(partial(kl_cov_grad, weighted=True))
