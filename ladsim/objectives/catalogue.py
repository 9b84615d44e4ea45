"""The catalogue: the field's other policy losses, each as verl 0.9.1 or TRL 1.16 computes it (docs/objectives.md).

Per-entry terms ``l`` to minimize, over the last axis of a :class:`Batch`, with ``d = logp - logp_old`` the
entry's log-ratio, ``r = exp(d)``, ``p = exp(logp)``, ``sg`` a stop-gradient (``detach``)::

    cispo    l = -sg(clip(r, 1 - eps_low, 1 + eps_high)) A logp                 MiniMax-M1; verl cispo, TRL cispo
    gspo     l = max(-A s, -A clip(s, 1 - eps_low, 1 + eps_high)), s = exp(min(d, 10))     one term per response
    sapo     l = -A (4 / tau) sigmoid(tau (r - 1)),  tau = tau_pos (A > 0) or tau_neg        verl sapo, TRL sapo
    gmpo     l = -A exp(c(d)),  c: d capped at eps_high (A > 0), floored at -eps_low (A < 0)  verl geo_mean
    dppo-tv  l = -A sg(min(r, ratio_cap)) v logp,  v = 1[p - p_old inside the TV region]       verl dppo_tv
    dppo-kl  l = -A sg(min(r, ratio_cap)) v logp,  v = 1[binary KL(p_old, p) inside]           verl dppo_kl
    gpg      l = -A logp                                                                       verl gpg
    dro      l = -(A logp - beta d^2 / 2)                                                      verl dro
    luspo    l = max(-A s, -A clip(s, 1 - eps_low, 1 + eps_high)), each response's terms summed   TRL luspo
    vespo    l = -sg(phi(w)) A logp,  phi(w) = exp(lambda + k log w - lambda w)                  TRL vespo

Each parameter's default is its source's (the field's doc says which). The REINFORCE-style losses (cispo,
dppo, gpg, dro, vespo) keep ``logp`` itself in the value, as their sources do: their gradient is
``-weight A`` per entry, the loss value is the trainers' (``-weight A logp``).

**Sequence quantities.** The registry's batch is a flat row of entries, so a response-level quantity reaches
an objective through what an entry is (``Objective.unit``) or through the ratio each token carries:

* ``gspo`` and ``gmpo`` are one term per response (``unit = "response"``): an entry's log-probabilities are
  ``log pi(y) / |y|``, so ``d`` is the response's mean token log-ratio and ``s = exp(d)`` GSPO's (and GMPO's
  geometric-mean) ratio; a bandit arm is a response of one token. On a token batch (verl, TRL) they read the
  ``sequence-mean`` ratio (:func:`token_ratio`): each token carries its response's term and the trainer
  aggregates them. verl's GSPO gives each token the same value but a straight-through gradient (``log s_t =
  sg(mean d) + logp_t - sg(logp_t)``); the sequence-mean ratio's gradient flows through the mean instead, so
  each token gets the mean over its response of verl's token gradients: the same whenever the token's weight
  (aggregation times ``rollout_is_weights``) times its advantage is constant over the response, as with
  outcome advantages and no per-token weights. GMPO clips each token's log-ratio before the mean
  (:func:`token_inputs` does so on a token batch); the token tree's response entries carry no token ratios,
  so there the clip acts on the mean (docs/objectives.md).
* ``luspo`` is GSPO's term per token; LUSPO's length weighting is the aggregation's (each response's terms
  summed: ``seq-mean-token-sum``, TRL's ``luspo`` loss type) and its ratio the ``sequence-mean`` one (TRL's
  ``importance_sampling_level="sequence"``); in a bandit both are trivial and it is PPO-clip.
* ``vespo``'s weight ``w`` is the whole response's ratio ``pi(y)/pi_old(y)`` beside each token's own ``logp``:
  on a token batch :func:`token_inputs` gives each token its response's summed log-ratio through the old
  log-probs (``logp_old' = sg(logp) - sum_t d_t``), exactly TRL's; elsewhere ``w`` is the entry's ratio (a
  bandit arm: the response's; a token of the tree: the token's).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from ladsim.losses import ppo_terms
from ladsim.objectives.ppo import GRPOParams, grpo, grpo_grad
from ladsim.objectives.registry import Batch, check_number, get_objective, register_gradient, register_objective

# --- shared pieces --------------------------------------------------------------------------------------------


def _log_ratio(batch: Batch, clamp: float | None, detach: bool = False) -> tuple[Tensor, Tensor | None]:
    """``(d, inside)``: ``d = logp - logp_old`` clamped to ``[-clamp, clamp]`` (verl's 20; ``None``: no clamp),
    ``inside`` where the clamp passes the gradient (``None`` without one); ``detach``: ``d`` without gradient."""
    logp = batch.logp.detach() if detach else batch.logp
    d = logp - batch.logp_old.detach()
    if clamp is None:
        return d, None
    return d.clamp(-clamp, clamp), (d >= -clamp) & (d <= clamp)


def _passed(g: Tensor, inside: Tensor | None) -> Tensor:
    """``g`` where a clamp passes the gradient, 0 elsewhere (``inside`` from :func:`_log_ratio`)."""
    return g if inside is None else torch.where(inside, g, torch.zeros((), dtype=g.dtype, device=g.device))


def _bounds(low: float | None, high: float | None, x: Tensor) -> Tensor:
    """``clamp(x, low, high)`` with ``None`` for an open side (both ``None``: ``x``)."""
    return x if low is None and high is None else x.clamp(low, high)


def _ratio_bounds(eps_low: float | None, eps_high: float | None) -> tuple[float | None, float | None]:
    """The ratio interval ``[1 - eps_low, 1 + eps_high]`` (``None``: that side open)."""
    return (None if eps_low is None else 1.0 - eps_low), (None if eps_high is None else 1.0 + eps_high)


@functools.lru_cache(maxsize=64)
def _as_grpo(eps_low: float | None, eps_high: float | None, delta: float | None = None) -> GRPOParams:
    """The PPO clip ``(eps_low, eps_high)`` (and TRL's two-sided ``delta``) as ``grpo``'s parameters (no dual
    clip, no clamp): gspo and luspo share grpo's terms and hand gradient."""
    return GRPOParams(eps_low=eps_low, eps_high=eps_high, delta=delta)


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


def _check_eps(params: Any) -> None:
    check_number("eps_low", params.eps_low, low=0.0, high=1.0, allow_none=True)
    check_number("eps_high", params.eps_high, low=0.0, allow_none=True)


def _check_clamp(params: Any, name: str = "log_ratio_clamp") -> None:
    check_number(name, getattr(params, name), low=0.0, low_open=True, allow_none=True)


_CLAMP = _doc("clamp d to [-x, x] before exp (verl 20; TRL none; None: off)", 20.0)

# --- cispo ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CISPOParams:
    eps_low: float | None = _doc("importance weight >= 1 - eps_low (verl clip_ratio_low 0.2; None: no lower "
                                 "bound, as MiniMax-M1 and TRL)", 0.2)
    eps_high: float | None = _doc("importance weight <= 1 + eps_high (verl clip_ratio_high 0.2; TRL caps at "
                                  "epsilon_high itself, i.e. eps_high = epsilon_high - 1 > -1)", 0.2)
    log_ratio_clamp: float | None = _CLAMP

    def __post_init__(self) -> None:
        check_number("eps_low", self.eps_low, low=0.0, high=1.0, allow_none=True)
        check_number("eps_high", self.eps_high, low=-1.0, low_open=True, allow_none=True)
        if self.eps_low is not None and self.eps_high is not None and self.eps_high < -self.eps_low:
            raise ValueError(f"eps_high must be >= -eps_low (an empty weight interval), got eps_low={self.eps_low}, "
                             f"eps_high={self.eps_high}")
        _check_clamp(self)


def _cispo_weight(batch: Batch, params: CISPOParams) -> Tensor:
    """``-sg(clip(r, 1 - eps_low, 1 + eps_high)) A``: the term's coefficient of ``logp`` and its gradient."""
    d, _ = _log_ratio(batch, params.log_ratio_clamp, detach=True)
    return -_bounds(*_ratio_bounds(params.eps_low, params.eps_high), torch.exp(d)) * batch.advantages


@register_objective(
    "cispo", CISPOParams,
    formula="l = -sg(clip(r, 1-eps_low, 1+eps_high)) A logp  (REINFORCE with a clipped, detached importance weight)",
    reference="MiniMax 2025, MiniMax-M1, arXiv:2506.13585; verl 'cispo' (compute_policy_loss_cispo); "
              "TRL loss_type 'cispo' (GRPOTrainer._compute_loss)",
    summary="CISPO: the importance weight is clipped and detached, never the gradient of a token")
def cispo(batch: Batch, params: CISPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return _cispo_weight(batch, params) * batch.logp


@register_gradient("cispo")
def cispo_grad(batch: Batch, params: CISPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dl/dlogp = -sg(clip(r)) A``."""
    return _cispo_weight(batch, params), {}


# --- gspo -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GSPOParams:
    eps_low: float | None = _doc("clip s at 1 - eps_low (GSPO paper and verl's GSPO recipe 3e-4; verl reads "
                                 "clip_ratio_low; None: open)", 3e-4)
    eps_high: float | None = _doc("clip s at 1 + eps_high (GSPO paper and verl's recipe 4e-4; None: open)", 4e-4)
    log_ratio_max: float | None = _doc("log s capped at this before exp (verl 10; None: off)", 10.0)

    def __post_init__(self) -> None:
        _check_eps(self)
        check_number("log_ratio_max", self.log_ratio_max, allow_none=True)


def _gspo_log_ratio(batch: Batch, params: GSPOParams) -> tuple[Tensor, Tensor | None]:
    """``(log s, inside)``: the entry's log-ratio capped at ``log_ratio_max``, and where the cap passes the
    gradient (autograd's ``clamp(max=)``: at and below the cap)."""
    d = batch.logp - batch.logp_old.detach()
    if params.log_ratio_max is None:
        return d, None
    return d.clamp(max=params.log_ratio_max), d <= params.log_ratio_max


def _zero(x: Tensor) -> Tensor:
    return torch.zeros((), dtype=x.dtype, device=x.device)


@register_objective(
    "gspo", GSPOParams, unit="response",
    formula="l = max(-A s, -A clip(s, 1-eps_low, 1+eps_high)),  s = exp(min(log pi(y)/|y| - log pi_old(y)/|y|, 10)): "
            "one term per response",
    reference="Zheng et al. 2025, Group Sequence Policy Optimization, arXiv:2507.18071; verl 'gspo' "
              "(compute_policy_loss_gspo, token form: straight-through per-token gradient); TRL "
              "importance_sampling_level='sequence'",
    summary="GSPO: PPO-clip of the length-normalized sequence ratio, one term per response")
def gspo(batch: Batch, params: GSPOParams, state: Mapping[str, Tensor]) -> Tensor:
    log_s, _ = _gspo_log_ratio(batch, params)
    return ppo_terms(log_s, _zero(log_s), batch.advantages, eps_low=params.eps_low, eps_high=params.eps_high)


@register_gradient("gspo")
def gspo_grad(batch: Batch, params: GSPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """grpo's hand gradient at ``log s``, 0 above the cap."""
    log_s, inside = _gspo_log_ratio(batch, params)
    at = Batch(log_s, _zero(log_s), batch.advantages, memo=batch.memo)
    return _passed(grpo_grad(at, _as_grpo(params.eps_low, params.eps_high), state)[0], inside), {}


# --- sapo -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SAPOParams:
    tau_pos: float = _doc("gate temperature where A > 0 (verl tau_pos, TRL sapo_temperature_pos 1.0)", 1.0)
    tau_neg: float = _doc("gate temperature where A <= 0 (verl tau_neg, TRL sapo_temperature_neg 1.05)", 1.05)
    log_ratio_clamp: float | None = _CLAMP

    def __post_init__(self) -> None:
        check_number("tau_pos", self.tau_pos, low=0.0, low_open=True)
        check_number("tau_neg", self.tau_neg, low=0.0, low_open=True)
        _check_clamp(self)


def _sapo_parts(batch: Batch, params: SAPOParams) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(tau, sigma, r, inside)``: each entry's temperature, ``sigmoid(tau (r - 1))``, ``r`` and the clamp."""
    a = batch.advantages
    tau = batch.constant(("sapo.tau", params.tau_pos, params.tau_neg),
                         lambda: torch.where(a > 0, a.new_tensor(params.tau_pos), a.new_tensor(params.tau_neg)))
    d, inside = _log_ratio(batch, params.log_ratio_clamp)
    r = torch.exp(d)
    return tau, torch.sigmoid(tau * (r - 1.0)), r, inside


@register_objective(
    "sapo", SAPOParams,
    formula="l = -A (4/tau) sigmoid(tau (r - 1)),  tau = tau_pos if A > 0 else tau_neg  (a soft gate, no clip)",
    reference="Gao et al. 2025, Soft Adaptive Policy Optimization, arXiv:2511.20347; verl 'sapo' "
              "(compute_policy_loss_sapo); TRL loss_type 'sapo'",
    summary="SAPO: a smooth temperature gate on the ratio instead of the PPO clip")
def sapo(batch: Batch, params: SAPOParams, state: Mapping[str, Tensor]) -> Tensor:
    tau, sigma, _, _ = _sapo_parts(batch, params)
    return -(sigma * (4.0 / tau)) * batch.advantages


@register_gradient("sapo")
def sapo_grad(batch: Batch, params: SAPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dl/dlogp = -4 A sigma (1 - sigma) r`` (``sigmoid' = sigma (1 - sigma)``, ``dr/dlogp = r``)."""
    _, sigma, r, inside = _sapo_parts(batch, params)
    return _passed(-4.0 * batch.advantages * sigma * (1.0 - sigma) * r, inside), {}


# --- gmpo -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GMPOParams:
    eps_low: float | None = _doc("log-ratio floored at -eps_low where A < 0 (verl clip_ratio_low 0.2; the GMPO "
                                 "paper 0.4; None: open)", 0.2)
    eps_high: float | None = _doc("log-ratio capped at eps_high where A > 0 (verl clip_ratio_high 0.2; None: "
                                  "open)", 0.2)

    def __post_init__(self) -> None:
        check_number("eps_low", self.eps_low, low=0.0, allow_none=True)
        check_number("eps_high", self.eps_high, low=0.0, allow_none=True)


def gmpo_clip(log_ratio: Tensor, advantages: Tensor, eps_low: float | None, eps_high: float | None) -> Tensor:
    """GMPO's log-space clip toward the pessimistic side, elementwise (shapes broadcast):

        c(d) = sign(A) min(sign(A) d, sign(A) clamp(d, -eps_low, eps_high))

    i.e. ``min(d, eps_high)`` where ``A > 0``, ``max(d, -eps_low)`` where ``A < 0``, 0 where ``A = 0``. It is
    idempotent, so clipping each token and then the mean of the clipped tokens is clipping each token.
    """
    sign = torch.sign(advantages)
    return sign * torch.minimum(sign * log_ratio, sign * _bounds(None if eps_low is None else -eps_low, eps_high,
                                                                 log_ratio))


def _gmpo_value(batch: Batch, params: GMPOParams) -> tuple[Tensor, Tensor]:
    """``(l, dl/dlogp)``: ``-A exp(c(d))`` and ``-A exp(c(d)) c'(d)``, ``c' = 1`` on the side the clip leaves
    (and inside), 0 on the clipped side, as autograd takes ``minimum`` (half to each side on a tie: 1 inside)."""
    d = batch.logp - batch.logp_old.detach()
    a = batch.advantages
    sign = torch.sign(a)
    signed = sign * d
    bounded = sign * _bounds(None if params.eps_low is None else -params.eps_low, params.eps_high, d)
    terms = -a * torch.exp(sign * torch.minimum(signed, bounded))
    return terms, torch.where(signed <= bounded, terms, _zero(terms))


@register_objective(
    "gmpo", GMPOParams, unit="response",
    formula="l = -A exp(c(d)),  d = log pi(y)/|y| - log pi_old(y)/|y| (on tokens: the mean of each token's c(d_t)), "
            "c(d) = min(d, eps_high) if A > 0, max(d, -eps_low) if A < 0: one term per response",
    reference="Zhao et al. 2025, Geometric-Mean Policy Optimization, arXiv:2507.20673; verl 'geo_mean' "
              "(compute_policy_loss_geo_mean)",
    summary="GMPO: the geometric mean of the token ratios, each clipped in log space, times the advantage")
def gmpo(batch: Batch, params: GMPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return _gmpo_value(batch, params)[0]


@register_gradient("gmpo")
def gmpo_grad(batch: Batch, params: GMPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    return _gmpo_value(batch, params)[1], {}


# --- dppo-tv, dppo-kl -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DPPOParams:
    delta_low: float | None = _doc("divergence allowed where A <= 0 (verl clip_ratio_low 0.2; None: any)", 0.2)
    delta_high: float | None = _doc("divergence allowed where A > 0 (verl clip_ratio_high 0.2; None: any)", 0.2)
    ratio_cap: float | None = _doc("importance weight sg(min(r, cap)) (verl clip_ratio_c, 20 where the config "
                                   "has none; verl's ActorConfig sets 3; None: off)", 20.0)
    log_ratio_clamp: float | None = _CLAMP

    def __post_init__(self) -> None:
        check_number("delta_low", self.delta_low, low=0.0, allow_none=True)
        check_number("delta_high", self.delta_high, low=0.0, allow_none=True)
        check_number("ratio_cap", self.ratio_cap, low=0.0, low_open=True, allow_none=True)
        _check_clamp(self)


def _inside(divergence: Tensor, delta: float | None) -> Tensor:
    """``divergence <= delta`` (``None``: everywhere)."""
    return torch.ones_like(divergence, dtype=torch.bool) if delta is None else divergence <= delta


def _dppo_weight(batch: Batch, params: DPPOParams, kind: str) -> Tensor:
    """``-A sg(min(r, ratio_cap)) v``: the coefficient of ``logp`` in the term and its gradient; ``v`` is 1 where
    the step stays in the trust region for the advantage's direction (``A > 0`` may raise ``p`` by
    ``delta_high``, ``A <= 0`` lower it by ``delta_low``), 0 elsewhere (detached)."""
    logp, logp_old, a = batch.logp.detach(), batch.logp_old.detach(), batch.advantages
    p, p_old = torch.exp(logp), torch.exp(logp_old)
    if kind == "tv":  # total variation of the binary (token, rest) distributions: |p - p_old|
        up, down = _inside(p - p_old, params.delta_high), _inside(p_old - p, params.delta_low)
    else:             # KL(Bernoulli(p_old) || Bernoulli(p)), verl's 1e-8 beside the complements
        kl = p_old * (logp_old - logp) + (1.0 - p_old) * torch.log((1.0 - p_old + 1e-8) / (1.0 - p + 1e-8))
        up, down = _inside(kl, params.delta_high) | (p <= p_old), _inside(kl, params.delta_low) | (p >= p_old)
    valid = torch.where(a > 0, up, down)
    d, _ = _log_ratio(batch, params.log_ratio_clamp, detach=True)
    r = torch.exp(d)
    weight = r if params.ratio_cap is None else r.clamp(max=params.ratio_cap)
    return torch.where(valid, -a * weight, _zero(weight))


_DPPO_REF = "arXiv:2602.04879 (DPPO, a divergence trust region in place of the ratio clip); verl "


@register_objective(
    "dppo-tv", DPPOParams,
    formula="l = -A sg(min(r, ratio_cap)) v logp,  v = 1[p - p_old <= delta_high] if A > 0, "
            "1[p_old - p <= delta_low] otherwise",
    reference=_DPPO_REF + "'dppo_tv' (compute_policy_loss_dppo_tv)",
    summary="DPPO-TV: REINFORCE with a truncated weight, masked outside a total-variation trust region")
def dppo_tv(batch: Batch, params: DPPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return _dppo_weight(batch, params, "tv") * batch.logp


@register_objective(
    "dppo-kl", DPPOParams,
    formula="l = -A sg(min(r, ratio_cap)) v logp,  v = 1[KL_bin(p_old||p) <= delta_high or p <= p_old] if A > 0, "
            "1[KL_bin <= delta_low or p >= p_old] otherwise",
    reference=_DPPO_REF + "'dppo_kl' (compute_policy_loss_dppo_kl)",
    summary="DPPO-KL: REINFORCE with a truncated weight, masked outside a binary-KL trust region")
def dppo_kl(batch: Batch, params: DPPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return _dppo_weight(batch, params, "kl") * batch.logp


@register_gradient("dppo-tv")
def dppo_tv_grad(batch: Batch, params: DPPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    return _dppo_weight(batch, params, "tv"), {}


@register_gradient("dppo-kl")
def dppo_kl_grad(batch: Batch, params: DPPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    return _dppo_weight(batch, params, "kl"), {}


# --- gpg, dro -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPGParams:
    """GPG has no parameters (verl reads none)."""


@register_objective(
    "gpg", GPGParams,
    formula="l = -A logp  (plain policy gradient: no ratio, no clip)",
    reference="Chu et al. 2025, GPG: A Simple and Strong Reinforcement Learning Baseline for Model Reasoning, "
              "arXiv:2504.02546; verl 'gpg' (compute_policy_loss_gpg)",
    summary="GPG: the policy gradient surrogate -A logp")
def gpg(batch: Batch, params: GPGParams, state: Mapping[str, Tensor]) -> Tensor:
    return -batch.advantages * batch.logp


@register_gradient("gpg")
def gpg_grad(batch: Batch, params: GPGParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    return batch.constant("gpg.negated_advantages", lambda: -batch.advantages), {}


@dataclass(frozen=True)
class DROParams:
    beta: float = _doc("quadratic log-ratio penalty (verl policy_loss.dro_beta: required there, no default; "
                       "ladsim takes 0.05, verl's example)", 0.05)

    def __post_init__(self) -> None:
        check_number("beta", self.beta, low=0.0, low_open=True)


@register_objective(
    "dro", DROParams,
    formula="l = -(A logp - beta/2 d^2)  (policy gradient with a quadratic penalty on the log-ratio)",
    reference="Richemond et al. 2024, Offline Regularised RL for LLM Alignment (Direct Reward Optimisation), "
              "arXiv:2405.19107; verl 'dro' (compute_policy_loss_dro)",
    summary="DRO: -A logp plus a quadratic penalty beta/2 (logp - logp_old)^2")
def dro(batch: Batch, params: DROParams, state: Mapping[str, Tensor]) -> Tensor:
    d = batch.logp - batch.logp_old.detach()
    return -(batch.logp * batch.advantages - 0.5 * params.beta * d * d)


@register_gradient("dro")
def dro_grad(batch: Batch, params: DROParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dl/dlogp = -A + beta d``."""
    return params.beta * (batch.logp - batch.logp_old) - batch.advantages, {}


# --- luspo ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LUSPOParams:
    eps_low: float | None = _doc("clip at 1 - eps_low (TRL epsilon 0.2; None: open)", 0.2)
    eps_high: float | None = _doc("clip at 1 + eps_high (TRL epsilon_high, default epsilon: 0.2; None: open)", 0.2)
    delta: float | None = _doc("two-sided clip: the unclipped ratio capped at delta (None: off; TRL delta)", None)

    def __post_init__(self) -> None:
        _check_eps(self)
        check_number("delta", self.delta, low=1.0, low_open=True, allow_none=True)


@register_objective(
    "luspo", LUSPOParams,
    formula="l = max(-A s, -A clip(s, 1-eps_low, 1+eps_high)) per token, s the sequence-mean ratio; "
            "each response's terms summed (seq-mean-token-sum), so a response weighs by its length",
    reference="arXiv:2602.05261 (LUSPO, length-unbiased GSPO); TRL loss_type 'luspo' (GRPOTrainer._compute_loss: "
              "(l m).sum(-1).mean())",
    summary="LUSPO: GSPO's term on every token, summed per response (the length scaling is the aggregation)")
def luspo(batch: Batch, params: LUSPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return grpo(batch, _as_grpo(params.eps_low, params.eps_high, params.delta), state)


@register_gradient("luspo")
def luspo_grad(batch: Batch, params: LUSPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    return grpo_grad(batch, _as_grpo(params.eps_low, params.eps_high, params.delta), state)


# --- vespo ----------------------------------------------------------------------------------------------------

_LOG_W_MIN = math.log(1e-8)  # TRL's floor of log w
_LAMBDA_MIN = 1e-4           # TRL's floor of lambda


@dataclass(frozen=True)
class VESPOParams:
    k_pos: float = _doc("power k where A >= 0 (TRL vespo_k_pos 2)", 2.0)
    lambda_pos: float = _doc("decay lambda where A >= 0 (TRL vespo_lambda_pos 3)", 3.0)
    k_neg: float = _doc("power k where A < 0 (TRL vespo_k_neg 3)", 3.0)
    lambda_neg: float = _doc("decay lambda where A < 0 (TRL vespo_lambda_neg 2)", 2.0)

    def __post_init__(self) -> None:
        for name in ("k_pos", "k_neg"):
            check_number(name, getattr(self, name), low=0.0)
        for name in ("lambda_pos", "lambda_neg"):
            check_number(name, getattr(self, name), low=0.0, low_open=True)


def vespo_weight(log_w: Tensor, advantages: Tensor, params: VESPOParams) -> Tensor:
    """VESPO's gamma weight, elementwise (shapes broadcast), detached:

        phi(w) = exp(lambda + k log w - lambda w),   log w clamped to [log 1e-8, 20],

    ``(k, lambda) = (k_pos, lambda_pos)`` where ``A >= 0``, else the ``_neg`` pair, ``lambda`` floored at 1e-4
    (TRL); ``phi(1) = 1``, and a non-finite ``phi`` is 0 (TRL). ``log_w``: the response's log-ratio.
    """
    log_w = log_w.detach().clamp(_LOG_W_MIN, 20.0)
    nonneg = advantages >= 0
    k = torch.where(nonneg, log_w.new_tensor(params.k_pos), log_w.new_tensor(params.k_neg))
    lam = torch.where(nonneg, log_w.new_tensor(max(params.lambda_pos, _LAMBDA_MIN)),
                      log_w.new_tensor(max(params.lambda_neg, _LAMBDA_MIN)))
    return torch.exp(lam + k * log_w - lam * torch.exp(log_w)).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def _vespo_coefficient(batch: Batch, params: VESPOParams) -> Tensor:
    return -vespo_weight(batch.logp - batch.logp_old, batch.advantages, params) * batch.advantages


@register_objective(
    "vespo", VESPOParams,
    formula="l = -sg(phi(w)) A logp,  phi(w) = exp(lambda + k log w - lambda w),  w = pi(y)/pi_old(y) the "
            "response's ratio (on tokens: the summed token log-ratios); (k, lambda) by the sign of A",
    reference="arXiv:2602.10693 (VESPO, variational sequence-level soft policy optimization); TRL loss_type 'vespo' "
              "(GRPOTrainer.get_gamma_weights, _compute_loss)",
    summary="VESPO: REINFORCE weighted by a gamma function of the sequence ratio (a soft trust region)")
def vespo(batch: Batch, params: VESPOParams, state: Mapping[str, Tensor]) -> Tensor:
    return _vespo_coefficient(batch, params) * batch.logp


@register_gradient("vespo")
def vespo_grad(batch: Batch, params: VESPOParams, state: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
    """``dl/dlogp = -phi(w) A`` (the weight is detached)."""
    return _vespo_coefficient(batch, params), {}


# --- token batches (B, T): how the adapters hand these objectives a trainer's tokens --------------------------


def token_ratio(objective: str, ratio: str | None = None) -> str:
    """The ratio ``objective`` reads a token batch with (``ladsim.llm.objective_loss`` ratios).

    A response-unit objective (gspo, gmpo) reads the ``sequence-mean`` ratio (its entries are ``log pi(y)/|y|``):
    ``None`` or ``"sequence-mean"``, anything else is a ``ValueError``. vespo builds its sequence weight itself
    (:func:`token_inputs`) and takes every token's own log-prob: ``"token"`` whatever ``ratio`` says. Any other
    objective: ``ratio`` (``None``: ``"token"``).
    """
    obj = get_objective(objective)
    if obj.name == "vespo":
        return "token"
    if obj.unit == "response":
        if ratio not in (None, "sequence-mean"):
            raise ValueError(f"objective {obj.name!r} is one term per response, read with the sequence-mean ratio "
                             f"(log pi(y)/|y|); ratio={ratio!r} contradicts it")
        return "sequence-mean"
    return "token" if ratio is None else ratio


def token_inputs(objective: str, log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                 params: Any, ratio: str | None = None) -> tuple[Tensor, Tensor, str]:
    """``(log_prob, old_log_prob, ratio)`` to hand ``ladsim.llm.objective_loss.objective_token_loss`` for
    ``objective`` on a token batch: ``(B, T)`` tensors, ``advantages`` ``(B, T)`` or ``(B,)``.

    * gmpo: each token's log-ratio clipped by :func:`gmpo_clip` before the sequence mean, ``log_prob' =
      old_log_prob + c(d_t)`` (verl's ``geo_mean``), read with the ``sequence-mean`` ratio;
    * vespo: ``old_log_prob' = sg(log_prob) - D``, ``D = sum_t m clamp(d_t, -20, 20)`` the response's summed
      log-ratio (TRL's per-token clamp), so that every token's ratio is its response's while ``log_prob`` keeps
      its own value and gradient (TRL's ``get_gamma_weights``);
    * any other objective: the inputs unchanged, with :func:`token_ratio`'s ratio.

    Float32 or wider; masked entries of the returned tensors are the inputs' (the LLM path never reads them).
    """
    name = get_objective(objective).name
    ratio = token_ratio(name, ratio)
    if name not in ("gmpo", "vespo"):
        return log_prob, old_log_prob, ratio
    keep = response_mask if response_mask.dtype == torch.bool else response_mask != 0
    dt = torch.promote_types(torch.promote_types(log_prob.dtype, old_log_prob.dtype), torch.float32)
    lp, old = log_prob.to(dt), old_log_prob.to(dt).detach()
    if name == "gmpo":
        adv = advantages[:, None].expand(lp.shape) if advantages.dim() == 1 else advantages
        clipped = gmpo_clip(lp - old, adv.to(dt), params.eps_low, params.eps_high)
        return torch.where(keep, old + clipped, lp), old, ratio
    d = torch.where(keep, (lp.detach() - old).clamp(-20.0, 20.0), _zero(lp))
    return lp, torch.where(keep, lp.detach() - d.sum(-1, keepdim=True), old), ratio
