"""ladsim's objectives as verl 0.9.1 policy losses. Importing this module registers them with verl.

Registered names: ``ladsim-<objective>`` (``ladsim-lad``, ``ladsim-grpo``, ``ladsim-clip-cov``, ``ladsim-kl-cov``):
every objective of the registry that runs on token batches without inputs verl does not give a policy loss
(:func:`ladsim.llm.objective_loss.token_blocker`): ``lad-theory`` needs the whole action set, ``flowrl`` a learned
log Z per prompt, ``entadv`` per-token entropies; :func:`make_policy_loss` refuses them with that reason.
verl calls a policy loss from ``verl/workers/utils/losses.py::ppo_loss`` as

    pg_loss, pg_metrics = policy_loss_fn(old_log_prob=..., log_prob=..., advantages=..., response_mask=...,
                                         loss_agg_mode=..., config=<ActorConfig>, rollout_is_weights=...)

with ``(B, T)`` tensors; :func:`make_policy_loss` builds such a function. Argument order: verl's
``(old_log_prob, log_prob, ...)`` exists only here; everything behind it is ladsim's ``(logp, logp_old, ...)``.

How it reaches verl's workers, and where its parameters live. verl's ``PolicyLossConfig`` is a closed dataclass
(``loss_mode``, ``clip_cov_*``, ``kl_cov_ratio``, ``ppo_kl_coef``, ``dro_beta``, ``rollout_correction``): a key it
does not declare is rejected. But every worker builds its actor config with hydra's ``instantiate`` from the
``_target_`` of each node (``verl/workers/engine_workers.py``: ``omega_conf_to_dataclass(self.config.actor)``),
so pointing ``actor_rollout_ref.actor.policy_loss._target_`` at :class:`PolicyLossConfig` below (verl's class plus
``params`` and ``ratio``) both imports this module in every worker (registering the losses there) and carries
the objective's parameters in verl's own config::

    actor_rollout_ref.actor.policy_loss._target_=ladsim.integrations.verl.PolicyLossConfig
    actor_rollout_ref.actor.policy_loss.loss_mode=ladsim-lad
    +actor_rollout_ref.actor.policy_loss.params='{eta: 0.5, div: js}'

For LAD the first line alone suffices with :class:`LADPolicyLossConfig` (its ``loss_mode`` is ``ladsim-lad``)::

    actor_rollout_ref.actor.policy_loss._target_=ladsim.integrations.verl.LADPolicyLossConfig

Parameters are resolved per call, later sources winning: the objective's defaults; the values verl's own
losses read from the actor config, under ladsim's names (:func:`_verl_defaults`: ``ladsim-grpo`` clips like verl's
``vanilla``, ``ladsim-kl-cov`` reads ``kl_cov_ratio`` like ``kl_cov``); the keyword arguments given to
:func:`make_policy_loss` / :func:`register`; and ``config.policy_loss.params``.

The catalogue's losses (:mod:`ladsim.objectives.catalogue`) run as verl's own do: ``ladsim-cispo``, ``-gspo``,
``-sapo``, ``-gmpo``, ``-dppo-tv``, ``-dppo-kl``, ``-gpg``, ``-dro`` equal verl's ``cispo``, ``gspo``, ``sapo``,
``geo_mean``, ``dppo_tv``, ``dppo_kl``, ``gpg``, ``dro`` on the same call (tests/integration/verl/
test_verl_catalogue.py), reading the same actor-config fields (:func:`_verl_defaults`), with verl's exceptions
to ``loss_agg_mode``: ``sapo`` always aggregates ``seq-mean-token-mean``; ``gmpo`` (verl's ``geo_mean``) is the
plain mean over the micro-batch's responses, empty ones included, without ``global_batch_info``, its
``rollout_is_weights`` the geometric mean over each response's tokens. Response-unit objectives (``gspo``,
``gmpo``) read the ``sequence-mean`` ratio (:func:`ladsim.objectives.catalogue.token_ratio`; another ``ratio`` is
refused); GSPO's gradient then flows through the response's mean log-ratio, where verl's token form passes each
token its own (the same whenever a token's weight times its advantage is constant over its response: outcome
advantages, no per-token ``rollout_is_weights``; otherwise each token gets the response mean of verl's token
gradients). ``ladsim-luspo`` and ``ladsim-vespo`` are TRL's losses, for verl runs (TRL's ``luspo`` aggregation is
``loss_agg_mode=seq-mean-token-sum`` with ``policy_loss.ratio=sequence-mean``).

Normalization follows verl's ``agg_loss`` (``config.global_batch_info``): ``token-mean`` divides by the global
``batch_num_tokens``, the sequence modes by ``global_batch_size``, ``-norm`` also by ``loss_scale_factor`` (default
the padded length), and every mode is multiplied by ``dp_size``, so the micro-batch losses of one mini-batch
add up to the mini-batch loss. Without that information (a direct call) the batch alone is used, empty
responses excluded, as verl does. ``rollout_is_weights`` multiply each token's loss before aggregation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from verl.trainer.ppo.core_algos import register_policy_loss
from verl.workers.config import PolicyLossConfig as VerlPolicyLossConfig

from ladsim.llm.objective_loss import (
    RATIOS,
    check_token_objective,
    make_token_params,
    objective_token_loss,
    token_log_ratio,
    token_objectives,
)
from ladsim.llm.token_loss import AGG_MODES, bool_mask, expand_advantages
from ladsim.objectives.catalogue import token_ratio

PREFIX = "ladsim-"
PROVIDES = ()  # verl passes a policy loss no entropy and no reference log-probs
PolicyLossFn = Callable[..., tuple[Tensor, dict[str, Any]]]
# verl's losses that aggregate one way whatever loss_agg_mode says (compute_policy_loss_sapo)
FIXED_AGGREGATION = {"sapo": "seq-mean-token-mean"}


@dataclass
class PolicyLossConfig(VerlPolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus ladsim's ``params`` (the objective's parameters) and ``ratio`` (``None``:
    the objective's own, ``token`` or, for a response-unit objective, ``sequence-mean``).

    Named as ``actor_rollout_ref.actor.policy_loss._target_``, hydra instantiates it in every verl worker,
    which imports this module and so registers the ``ladsim-*`` losses there. A ``ladsim-*`` ``loss_mode`` is
    checked when the config is built (unknown objective or parameter: ``ValueError`` before training starts).
    """

    params: dict = field(default_factory=dict)
    ratio: str | None = None

    def __post_init__(self) -> None:
        if self.ratio is not None and self.ratio not in RATIOS:
            raise ValueError(f"policy_loss.ratio must be one of {', '.join(RATIOS)}, got {self.ratio!r}")
        if str(self.loss_mode).startswith(PREFIX):
            objective = _objective_of(self.loss_mode)
            make_token_params(objective, dict(self.params))
            token_ratio(objective, self.ratio)


@dataclass
class LADPolicyLossConfig(PolicyLossConfig):
    """:class:`PolicyLossConfig` whose loss is ``ladsim-lad``: the one-line switch of a verl run to LAD.

    ``actor_rollout_ref.actor.policy_loss._target_=ladsim.integrations.verl.LADPolicyLossConfig`` is the whole
    change: verl's yaml passes its default ``loss_mode`` (``vanilla``), which this target turns into
    ``ladsim-lad`` (practical LAD; ``eta = 1``, JS unless ``params`` says otherwise). ``params`` and ``ratio`` work
    as in :class:`PolicyLossConfig`; any other ``loss_mode`` contradicts the target: ``ValueError``.
    """

    loss_mode: str = PREFIX + "lad"

    def __post_init__(self) -> None:
        if self.loss_mode == "vanilla":  # verl's default, which its yaml always sets: the target decides
            object.__setattr__(self, "loss_mode", PREFIX + "lad")  # verl's BaseConfig freezes set fields
        elif self.loss_mode != PREFIX + "lad":
            raise ValueError(f"policy_loss.loss_mode={self.loss_mode!r} contradicts policy_loss._target_="
                             f"{__name__}.LADPolicyLossConfig, which computes {PREFIX}lad; for another loss set "
                             f"_target_={__name__}.PolicyLossConfig")
        super().__post_init__()


def _objective_of(loss_mode: str) -> str:
    name = loss_mode[len(PREFIX):]
    if name not in token_objectives(PROVIDES):
        raise ValueError(f"unknown ladsim loss_mode {loss_mode!r}; choose from: "
                         f"{', '.join(PREFIX + n for n in token_objectives(PROVIDES))}")
    return name


def _verl_defaults(objective: str, config: Any) -> dict[str, Any]:
    """Parameters verl's own losses read from the actor config, under ladsim's names.

    PPO clip (``vanilla``): ``eps_low``/``eps_high`` <- ``clip_ratio_low``/``clip_ratio_high`` (else
    ``clip_ratio``), ``clip_ratio_c`` <- ``clip_ratio_c``, ``log_ratio_clamp`` <- 20 (verl's fixed clamp);
    ``clip-cov``: ``ratio``/``lb``/``ub`` <- ``policy_loss.clip_cov_ratio``/``clip_cov_lb``/``clip_cov_ub``;
    ``kl-cov``: ``ratio``/``coef`` <- ``policy_loss.kl_cov_ratio``/``ppo_kl_coef``. The catalogue: cispo,
    gspo, gmpo, luspo take the clip ratios as ``eps_low``/``eps_high`` and cispo, sapo, dppo the clamp 20 like
    the PPO clip; ``sapo``: ``tau_pos``/``tau_neg`` <- ``tau_pos``/``tau_neg``; ``dppo-tv``/``dppo-kl``:
    ``delta_low``/``delta_high`` <- the clip ratios (verl's divergence thresholds), ``ratio_cap`` <-
    ``clip_ratio_c`` (verl: 20 where the config has none); ``dro``: ``beta`` <- ``policy_loss.dro_beta``
    (verl requires it; unset, ladsim's default).
    """
    if config is None:
        return {}
    clip = getattr(config, "clip_ratio", None)
    low, high = getattr(config, "clip_ratio_low", None), getattr(config, "clip_ratio_high", None)
    out = {"eps_low": clip if low is None else low, "eps_high": clip if high is None else high,
           "clip_ratio_c": getattr(config, "clip_ratio_c", None), "log_ratio_clamp": 20.0}
    pl = getattr(config, "policy_loss", None)
    if objective == "clip-cov" and pl is not None:
        out.update(ratio=pl.get("clip_cov_ratio"), lb=pl.get("clip_cov_lb"), ub=pl.get("clip_cov_ub"))
    if objective == "kl-cov" and pl is not None:
        out.update(ratio=pl.get("kl_cov_ratio"), coef=pl.get("ppo_kl_coef"))
    if objective == "sapo":
        out.update(tau_pos=getattr(config, "tau_pos", None), tau_neg=getattr(config, "tau_neg", None))
    if objective in ("dppo-tv", "dppo-kl"):
        out.update(delta_low=out["eps_low"], delta_high=out["eps_high"],
                   ratio_cap=getattr(config, "clip_ratio_c", None))
    if objective == "dro" and pl is not None:
        out.update(beta=pl.get("dro_beta"))
    return out


def _resolve_params(objective: str, given: dict[str, Any], config: Any) -> tuple[Any, str | None]:
    """The parameters (defaults < verl's clip fields < ``given`` < ``config.policy_loss.params``) and ratio."""
    fields = {f.name for f in dataclasses.fields(make_token_params(objective))}
    values = {k: v for k, v in _verl_defaults(objective, config).items() if k in fields and v is not None}
    values.update(given)
    policy_loss = getattr(config, "policy_loss", None)
    values.update(dict(getattr(policy_loss, "params", None) or {}))
    return make_token_params(objective, values), getattr(policy_loss, "ratio", None)


def _normalizers(loss_agg_mode: str, info: dict[str, Any]) -> dict[str, Any]:
    """verl's ``agg_loss`` conventions as :func:`ladsim.llm.token_loss.agg_weights` arguments."""
    dp_size = info.get("dp_size") or 1
    dp_size = int(dp_size.item() if isinstance(dp_size, Tensor) else dp_size)
    out: dict[str, Any] = {"scale": dp_size}
    if loss_agg_mode == "token-mean":
        if info.get("batch_num_tokens") is None and dp_size > 1:
            raise ValueError("global_batch_info.batch_num_tokens is required when dp_size > 1")
        out["n_tokens"] = info.get("batch_num_tokens")
    elif loss_agg_mode != "token-sum":
        if info.get("global_batch_size") is None and dp_size > 1:
            raise ValueError("global_batch_info.global_batch_size is required when dp_size > 1")
        out["n_seqs"] = info.get("global_batch_size")
        out["norm_length"] = info.get("loss_scale_factor")
    return out


def _masked_mean(x: Tensor, keep: Tensor) -> float:
    return float((torch.where(keep, x, torch.zeros_like(x))).sum() / keep.sum().clamp(min=1))


def _metrics(params: Any, log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
             ratio: str) -> dict[str, float]:
    """verl's policy-loss metric keys: ``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower``.

    ``ppo_kl`` is the masked token mean of ``old_log_prob - log_prob`` (log-ratio clamped to [-20, 20] as verl
    does); the clip fractions count the tokens whose PPO clip (``eps_low``/``eps_high``, ``clip_ratio_c``) is
    active, 0 for objectives without one (LAD clips nothing).
    """
    with torch.no_grad():
        keep = bool_mask(response_mask)
        d = token_log_ratio(log_prob.detach(), old_log_prob, response_mask, "token").clamp(-20.0, 20.0)
        out = {"actor/pg_clipfrac": 0.0, "actor/ppo_kl": _masked_mean(-d, keep), "actor/pg_clipfrac_lower": 0.0}
        lo, hi = getattr(params, "eps_low", None), getattr(params, "eps_high", None)
        if lo is None and hi is None:
            return out
        if ratio != "token":  # the token ratio's clamped log is ``d`` already
            d = token_log_ratio(log_prob.detach(), old_log_prob, response_mask, ratio).clamp(-20.0, 20.0)
        r = torch.exp(d)
        a = expand_advantages(advantages, log_prob.shape).to(r.dtype)
        inf = float("inf")
        clipped = r.clamp(1.0 - (inf if lo is None else lo), 1.0 + (inf if hi is None else hi))
        loss1, loss2 = -a * r, -a * clipped
        out["actor/pg_clipfrac"] = _masked_mean((loss2 > loss1).to(r.dtype), keep)
        c = getattr(params, "clip_ratio_c", None)
        if c is not None:
            lower = (torch.maximum(loss1, loss2) > -a * c) & (a < 0)
            out["actor/pg_clipfrac_lower"] = _masked_mean(lower.to(r.dtype), keep)
        return out


def _geometric_row_mean(weights: Tensor, keep: Tensor) -> Tensor:
    """verl's ``geo_mean`` weights: ``exp(sum_t m log(w_t + 1e-10) / (sum_t m + 1e-8))`` per response, broadcast
    over its tokens, ``(B, T)``."""
    m = keep.to(weights.dtype)
    log_w = (torch.log(weights + 1e-10) * m).sum(-1, keepdim=True) / (m.sum(-1, keepdim=True) + 1e-8)
    return torch.exp(log_w).expand_as(weights)


def make_policy_loss(objective: str, *, ratio: str | None = None, **params: Any) -> PolicyLossFn:
    """A verl 0.9.1 policy loss computing ladsim's ``objective`` (module docstring for the conventions).

    Returns ``fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
    rollout_is_weights=None) -> (loss, metrics)``: ``(B, T)`` tensors (``advantages`` also ``(B,)``),
    ``loss_agg_mode`` any of verl's five, ``config`` verl's ``ActorConfig`` (or ``None``), ``rollout_is_weights``
    ``(B, T)`` or ``None``; ``metrics`` has verl's keys (:func:`_metrics`). ``params`` are the objective's
    parameters fixed at registration (checked now: unknown names raise ``ValueError``). ``ratio``: ``None`` for
    the objective's own (:func:`ladsim.objectives.catalogue.token_ratio`), overridden by
    ``config.policy_loss.ratio`` where that is set.
    """
    check_token_objective(objective, PROVIDES)
    if ratio is not None and ratio not in RATIOS:
        raise ValueError(f"unknown ratio {ratio!r}; choose one of: {', '.join(RATIOS)}")
    token_ratio(objective, ratio)
    make_token_params(objective, params)

    def policy_loss(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                    loss_agg_mode: str = "token-mean", config: Any = None,
                    rollout_is_weights: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        if loss_agg_mode not in AGG_MODES:
            raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(AGG_MODES)}")
        resolved, config_ratio = _resolve_params(objective, params, config)
        use_ratio = token_ratio(objective, config_ratio or ratio)
        info = dict(getattr(config, "global_batch_info", None) or {})
        mode = FIXED_AGGREGATION.get(objective, loss_agg_mode)
        if objective == "gmpo":  # verl's geo_mean: the mean over this micro-batch's responses, nothing global
            agg = {"loss_agg_mode": "seq-mean-token-mean", "empty_rows": "include"}
            if rollout_is_weights is not None:
                rollout_is_weights = _geometric_row_mean(rollout_is_weights, bool_mask(response_mask))
        else:
            agg = {"loss_agg_mode": mode, **_normalizers(mode, info)}
        loss = objective_token_loss(objective, log_prob, old_log_prob, advantages, response_mask, params=resolved,
                                    ratio=use_ratio, token_weights=rollout_is_weights, **agg)
        return loss, _metrics(resolved, log_prob, old_log_prob, advantages, response_mask, use_ratio)

    policy_loss.__name__ = f"ladsim_{objective.replace('-', '_')}_policy_loss"
    policy_loss.__doc__ = f"ladsim's {objective!r} as a verl policy loss (ladsim.integrations.verl)."
    return policy_loss


def register(objective: str, name: str | None = None, *, ratio: str | None = None, **params: Any) -> PolicyLossFn:
    """Register ``make_policy_loss(objective, ratio=ratio, **params)`` with verl as ``name``
    (default ``ladsim-<objective>``) and return it; a second registration of a name replaces the first."""
    fn = make_policy_loss(objective, ratio=ratio, **params)
    return register_policy_loss(name or PREFIX + objective)(fn)


for _name in token_objectives(PROVIDES):
    register(_name)
