"""ladsim's objectives inside TRL 1.16's ``GRPOTrainer``: :class:`LadsimGRPOTrainer` (and :class:`LadsimGRPOConfig`).

Switching a TRL GRPO script to ladsim is one class: ``GRPOTrainer(...)`` -> ``LadsimGRPOTrainer(...)`` with the
same arguments, a plain ``GRPOConfig`` included. ladsim's settings are keyword arguments of the trainer
(``objective``, ``eta``, ``div``, ``objective_params``); left out, they are :data:`DEFAULTS`: practical LAD with
``eta = 1`` and the Jensen-Shannon generator. :class:`LadsimGRPOConfig` carries the same settings as fields of
the config instead (for ``HfArgumentParser`` command lines, and to have them saved with the training arguments).

TRL computes GRPO's loss in ``GRPOTrainer._compute_loss(self, model, inputs)``; :class:`LadsimGRPOTrainer`
overrides exactly that method and keeps everything else of TRL (generation, rewards, group advantages,
``old_per_token_logps``, logging). Per micro-batch it

1. computes the completion tokens' log-probs and entropies with TRL's own
   ``self._get_per_token_logps_and_entropies`` (``(B, T)``);
2. masks with ``completion_mask * tool_mask`` (tool outputs carry no loss), as TRL does;
3. evaluates the objective with :func:`ladsim.llm.objective_loss.objective_token_loss`, the per-token weights
   TRL applies (high-entropy mask, off-policy sequence mask, vLLM importance-sampling ratio) multiplied into each
   token's term, and TRL's aggregation for ``args.loss_type``:

   ============  =====================================================================================
   ``grpo``      ``seq-mean-token-mean`` over all ``B`` rows (an empty row counts, as in TRL)
   ``bnpo``      ``token-mean`` over the micro-batch's tokens
   ``dr_grpo``   ``seq-mean-token-sum-norm``: ``sum m l / (B * max_completion_length)``
   ``dapo``      ``token-mean`` over the accumulation window's token count (``num_items_in_batch``)
   ============  =====================================================================================

   TRL's loss types that are losses of their own are computed by ladsim's objective of the same name (the
   ``objective`` must then be that one), with TRL's aggregation for them and their parameters from TRL's config
   (:func:`_trl_defaults`; ``objective_params`` still override):

   ============  =====================================================================================
   ``cispo``     objective ``cispo``, ``dapo``'s aggregation; TRL's weight cap ``epsilon_high`` is
                 ``1 + eps_high``, no lower bound, no log-ratio clamp
   ``sapo``      objective ``sapo``, ``grpo``'s aggregation; ``sapo_temperature_pos``/``_neg``, no clamp
   ``luspo``     objective ``luspo``, ``seq-mean-token-sum`` over all ``B`` rows: ``sum_t m l``, mean over
                 rows (each response weighs by its length); the clip from ``epsilon``/``epsilon_high``
   ``vespo``     objective ``vespo``, ``dapo``'s aggregation; ``vespo_k_pos``... ``vespo_lambda_neg``; its
                 weight reads each response's summed log-ratio (``ladsim.objectives.catalogue.token_inputs``)
   ============  =====================================================================================

4. adds ``beta * k3`` to the reference model, aggregated the same way, when ``beta != 0`` (TRL's KL term,
   times the importance ratio when ``use_bias_correction_kl``, TRL's default);
5. divides by ``self.current_gradient_accumulation_steps`` in training (``dapo`` is already normalized by
   the window's token count), as TRL does; adds the MoE auxiliary loss like TRL;
6. logs TRL's ``entropy`` (and ``kl``) and ladsim's ``ladsim/loss`` (the micro-batch loss before the
   accumulation division) and ``ladsim/approx_kl`` (masked mean of ``old_logp - logp``) in TRL's logs.

``importance_sampling_level="sequence"`` uses the length-normalized sequence ratio of TRL (GSPO, ladsim's
``ratio="sequence-mean"``); the response-unit objectives (``gspo``, ``gmpo``) need it. Refused with a
``ValueError`` when the trainer is built: ``delta`` two-sided clipping except on ``grpo`` and ``luspo``
(which take it as their parameter ``delta``, TRL's clip), and the entropy bonus (``entropy_coef``, TRL's
GRPO-specific option); a loss type of its own with another objective; ``gspo``/``gmpo`` at the token
level; ``vespo`` with vLLM's importance-sampling correction (TRL folds that ratio into VESPO's sequence weight,
which ladsim's token path does not carry).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor
from trl import GRPOConfig, GRPOTrainer

from ladsim.llm.objective_loss import (
    check_token_objective,
    make_token_params,
    objective_token_loss,
    token_log_ratio,
    token_objectives,
)
from ladsim.llm.token_loss import agg_loss, bool_mask
from ladsim.objectives.catalogue import token_ratio

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")  # TRL's loss types that only aggregate: any objective
OWN_LOSSES = ("cispo", "sapo", "luspo", "vespo")  # TRL's losses of their own: ladsim's objective of that name
WINDOW_MEAN = ("dapo", "cispo", "vespo")         # normalized by the accumulation window's token count
PROVIDES = ("entropy",)  # TRL computes per-token entropies in _compute_loss
# ladsim's settings, with their defaults (practical LAD, eta 1, JS): the trainer's keywords and the config's fields
DEFAULTS: dict[str, Any] = {"objective": "lad", "eta": 1.0, "div": "js", "objective_params": None}


def _as_dict(objective_params: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """``objective_params`` (``None``, a mapping, or a JSON object string from a command line) as a dict."""
    value = objective_params
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"objective_params is not valid JSON ({e}): {objective_params!r}") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"objective_params must be a dict or a JSON object string, got {objective_params!r}")
    return dict(value)


DELTA_OBJECTIVES = ("grpo", "luspo")  # TRL applies delta to the PPO clip of loss types grpo, bnpo, dr_grpo, dapo, luspo


def _trl_defaults(objective: str, args: Any) -> dict[str, Any]:
    """The parameters TRL's own loss of that name reads from its config (``args``, a ``GRPOConfig``), under
    ladsim's names: ``cispo``: ``eps_high = epsilon_high - 1`` (TRL caps the weight at ``epsilon_high``
    itself, default ``epsilon``), ``eps_low = None``, ``log_ratio_clamp = None``; ``sapo``: ``tau_pos``/
    ``tau_neg`` <- ``sapo_temperature_pos``/``_neg``, ``log_ratio_clamp = None``; ``vespo``: ``k_pos``,
    ``lambda_pos``, ``k_neg``, ``lambda_neg`` <- ``vespo_*``; an objective with a ``delta`` (``grpo``,
    ``luspo``): TRL's two-sided clip ``delta`` where set. Other objectives: none."""
    if objective == "cispo":
        high = args.epsilon if args.epsilon_high is None else args.epsilon_high
        return {"eps_low": None, "eps_high": high - 1.0, "log_ratio_clamp": None}
    if objective == "sapo":
        return {"tau_pos": args.sapo_temperature_pos, "tau_neg": args.sapo_temperature_neg, "log_ratio_clamp": None}
    if objective == "vespo":
        return {name: getattr(args, f"vespo_{name}") for name in ("k_pos", "lambda_pos", "k_neg", "lambda_neg")}
    if args.delta is not None and objective in DELTA_OBJECTIVES:
        return {"delta": args.delta}
    return {}


def _parameters(objective: str, eta: float, div: str, objective_params: Mapping[str, Any] | str | None,
                eps_low: float | None = None, eps_high: float | None = None,
                trl: Mapping[str, Any] | None = None) -> Any:
    """The objective's parameters object, later sources winning: its defaults; ``eta``, ``div``; ``eps_low``/
    ``eps_high`` (TRL's ``epsilon``/``epsilon_high``, for objectives with a PPO clip); ``trl``, what TRL's own
    loss of that name reads (:func:`_trl_defaults`); ``objective_params``.

    ``ValueError`` for an unknown objective or parameter, ``eta``/``div`` away from :data:`DEFAULTS` for an
    objective without them, and ``eta``/``div`` contradicted by ``objective_params``.
    """
    check_token_objective(objective, PROVIDES)
    fields = {f.name for f in dataclasses.fields(make_token_params(objective))}
    extra = _as_dict(objective_params)
    values: dict[str, Any] = {}
    for name, value in {"eta": eta, "div": div}.items():
        moved = value != DEFAULTS[name]
        if moved and name in extra and extra[name] != value:
            raise ValueError(f"{name}={value!r} contradicts objective_params[{name!r}]={extra[name]!r}; give it once")
        if name in fields:
            values[name] = value
        elif moved:
            raise ValueError(f"objective {objective!r} has no parameter {name!r} (it has: "
                             f"{', '.join(sorted(fields)) or 'none'})")
    for name, value in {"eps_low": eps_low, "eps_high": eps_high}.items():
        if name in fields and value is not None:
            values[name] = value
    values.update({name: value for name, value in (trl or {}).items() if name in fields})
    return make_token_params(objective, {**values, **extra})


@dataclass
class LadsimGRPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig`` plus ladsim's settings as fields (the same names and defaults as the trainer's keywords).

    ``eta`` and ``div`` are LAD's; the PPO-clip ``eps_low``/``eps_high`` of clipped objectives come from TRL's
    ``epsilon``/``epsilon_high``; any other parameter goes in ``objective_params`` (a dict, or a JSON string
    from the command line), which also overrides the PPO clip.
    """

    objective: str = field(default=DEFAULTS["objective"],
                           metadata={"help": "ladsim objective: " + ", ".join(token_objectives(PROVIDES))})
    eta: float = field(default=DEFAULTS["eta"], metadata={"help": "LAD temperature: target pi_old exp(A/eta)/Z"})
    div: str = field(default=DEFAULTS["div"], metadata={"help": "LAD f-divergence generator (ladsim.divergences)"})
    objective_params: dict[str, Any] | str | None = field(
        default=DEFAULTS["objective_params"],
        metadata={"help": "other parameters of the objective, e.g. '{\"eps_low\": 0.1}'"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.objective_params, str):
            self.objective_params = _as_dict(self.objective_params)
        self.objective_parameters()  # unknown objective or parameter: ValueError now, not mid-training

    def objective_parameters(self) -> Any:
        """The objective's parameters object (defaults < eta/div < epsilon/epsilon_high < TRL's own loss's
        fields < ``objective_params``)."""
        return _parameters_of({name: getattr(self, name) for name in DEFAULTS}, self)


def _parameters_of(settings: dict[str, Any], args: GRPOConfig) -> Any:
    """:func:`_parameters` of ladsim's ``settings`` under TRL's config ``args``: its clip ``epsilon``/
    ``epsilon_high`` (default ``epsilon``) and what TRL's own loss of that name reads (:func:`_trl_defaults`)."""
    high = args.epsilon if args.epsilon_high is None else args.epsilon_high
    return _parameters(**settings, eps_low=args.epsilon, eps_high=high, trl=_trl_defaults(settings["objective"], args))


def check_catalogue_settings(objective: str, args: GRPOConfig) -> None:
    """The TRL settings of ``args`` a catalogue objective cannot honour, refused in one line (``ValueError``): a
    loss type of its own with another objective; the token level for a response-unit objective (gspo, gmpo);
    vLLM's importance-sampling correction for vespo (TRL folds that ratio into VESPO's sequence weight); TRL's
    two-sided clip ``delta`` for an objective without one (not grpo, luspo)."""
    if args.delta is not None and objective not in DELTA_OBJECTIVES:
        raise ValueError(f"delta is TRL's two-sided PPO clip, which objective {objective!r} has none of: use "
                         f"objective {' or '.join(map(repr, DELTA_OBJECTIVES))}, or unset delta")
    if args.loss_type in OWN_LOSSES and objective != args.loss_type:
        raise ValueError(f"loss_type {args.loss_type!r} is a loss of its own (TRL's), computed by ladsim's objective "
                         f"{args.loss_type!r}: pass objective={args.loss_type!r}, or choose the aggregation of "
                         f"objective {objective!r}: {', '.join(LOSS_TYPES)}")
    level = args.importance_sampling_level
    try:
        token_ratio(objective, "sequence-mean" if level == "sequence" else "token")
    except ValueError:
        raise ValueError(f"objective {objective!r} is one term per response (the sequence-mean ratio): set "
                         f"importance_sampling_level='sequence', got {level!r}") from None
    if objective == "vespo" and args.use_vllm and args.vllm_importance_sampling_correction:
        raise ValueError("objective 'vespo' with vllm_importance_sampling_correction: TRL folds vLLM's ratio into "
                         "VESPO's sequence weight, which ladsim's token path does not carry; turn it off")


def _settings(args: Any, given: dict[str, Any]) -> dict[str, Any]:
    """ladsim's settings for a trainer built with ``args`` and the trainer keywords ``given`` (``None``: not given).

    A :class:`LadsimGRPOConfig` carries them: a keyword must then agree with the config's field (``ValueError``
    naming it otherwise). A plain ``GRPOConfig`` or ``None``: :data:`DEFAULTS` < the keywords.
    """
    given = {name: value for name, value in given.items() if value is not None}
    if isinstance(args, LadsimGRPOConfig):
        for name, value in given.items():
            have = getattr(args, name)
            same = _as_dict(value) == _as_dict(have) if name == "objective_params" else value == have
            if not same:
                raise ValueError(f"{name}={value!r} contradicts args.{name}={have!r}: a LadsimGRPOConfig carries "
                                 f"ladsim's settings; set {name} there, or pass a plain GRPOConfig with keywords")
        return {name: getattr(args, name) for name in DEFAULTS}
    if args is not None and not isinstance(args, GRPOConfig):
        raise TypeError(f"args must be a GRPOConfig, a LadsimGRPOConfig or None, got {type(args).__name__}")
    return {**DEFAULTS, **given}


class LadsimGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose loss is ladsim's objective (module docstring): a drop-in replacement.

    Takes ``GRPOTrainer``'s arguments unchanged (``args``: a ``GRPOConfig``, a :class:`LadsimGRPOConfig`, or
    ``None`` for TRL's default config) and ladsim's settings as keywords, each defaulting to :data:`DEFAULTS`:
    ``objective`` (``"lad"``, practical LAD), ``eta`` (1.0), ``div`` (``"js"``), ``objective_params`` (a dict
    or JSON string of the objective's other parameters). With a :class:`LadsimGRPOConfig` the settings are the
    config's, and a keyword that contradicts it raises ``ValueError``. The settings are checked before TRL loads
    the model; the resolved ones are ``self.ladsim_objective`` and ``self.ladsim_params``.
    """

    def __init__(self, model: Any, reward_funcs: Any = None, args: GRPOConfig | None = None, *rest: Any,
                 objective: str | None = None, eta: float | None = None, div: str | None = None,
                 objective_params: Mapping[str, Any] | str | None = None, **kwargs: Any) -> None:
        settings = _settings(args, {"objective": objective, "eta": eta, "div": div,
                                    "objective_params": objective_params})
        # unknown objective or parameter, what the catalogue cannot honour: ValueError before TRL loads the model
        if args is None:
            _parameters(**settings)
        else:
            _parameters_of(settings, args)
            check_catalogue_settings(settings["objective"], args)
        super().__init__(model, reward_funcs, args, *rest, **kwargs)
        a = self.args
        objective = settings["objective"]
        if self.loss_type not in LOSS_TYPES + OWN_LOSSES:
            raise ValueError(f"loss_type {self.loss_type!r} is a loss of its own; with a ladsim objective choose "
                             f"the aggregation: {', '.join(LOSS_TYPES)}")
        if self._entropy_bonus_enabled:
            raise ValueError("entropy_coef/use_adaptive_entropy is not supported by LadsimGRPOTrainer (TRL's "
                             "GRPO-specific option)")
        check_catalogue_settings(objective, a)
        self.ladsim_objective = objective
        self.ladsim_params = _parameters_of(settings, a)
        self.ladsim_ratio = "sequence-mean" if self.importance_sampling_level == "sequence" else "token"

    def _aggregation(self, inputs: dict[str, Any], batch_size: int, train: bool) -> dict[str, Any]:
        """TRL's normalization for ``self.loss_type`` as :func:`ladsim.llm.token_loss.agg_loss` arguments."""
        if self.loss_type in ("grpo", "sapo"):
            return {"loss_agg_mode": "seq-mean-token-mean", "empty_rows": "include"}
        if self.loss_type == "luspo":  # TRL: (l m).sum(-1).mean(), every row counted
            return {"loss_agg_mode": "seq-mean-token-sum", "empty_rows": "include"}
        if self.loss_type == "bnpo":
            return {"loss_agg_mode": "token-mean"}
        if self.loss_type == "dr_grpo":
            return {"loss_agg_mode": "seq-mean-token-sum-norm", "norm_length": self.max_completion_length,
                    "n_seqs": batch_size}
        tokens = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes  # dapo, cispo, vespo
        if train:  # num_items_in_batch counts the whole generation batch; one window is GA / steps_per_generation
            tokens = tokens * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return {"loss_agg_mode": "token-mean", "n_tokens": tokens}

    def _token_weights(self, inputs: dict[str, Any], logps: Tensor, old: Tensor, entropies: Tensor,
                       mask: Tensor, advantages: Tensor) -> Tensor | None:
        """The per-token multipliers TRL applies to GRPO's per-token loss, or ``None``."""
        weights = None
        if self.off_policy_mask_threshold is not None:
            sampling = inputs.get("sampling_per_token_logps", old)
            adv = advantages if advantages.dim() == 2 else advantages[:, None]
            weights = self.get_off_policy_mask(adv, logps, sampling, mask, self.off_policy_mask_threshold)
        if self.top_entropy_quantile < 1.0:
            ent = self.get_high_entropy_mask(entropies, mask, 1 - self.top_entropy_quantile)
            weights = ent if weights is None else weights * ent
        if self.use_vllm and self.vllm_importance_sampling_correction:
            ratio = inputs["importance_sampling_ratio"]
            weights = ratio if weights is None else weights * ratio
        return None if weights is None else torch.broadcast_to(weights, logps.shape).to(logps.dtype)

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Tensor:
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        multimodal = {k: inputs.get(k) for k in (
            "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
            "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")}
        logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, torch.cat([prompt_ids, completion_ids], dim=1), torch.cat([prompt_mask, completion_mask], dim=1),
            completion_ids.size(1), compute_entropy=True, compute_aux_loss=self.aux_loss_enabled, **multimodal)
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        advantages = inputs["advantages"]
        train = self.model.training
        mode = "train" if train else "eval"

        agg = self._aggregation(inputs, logps.size(0), train)
        weights = self._token_weights(inputs, logps, old, entropies, mask, advantages)
        loss = objective_token_loss(self.ladsim_objective, logps, old, advantages, mask, params=self.ladsim_params,
                                    ratio=self.ladsim_ratio, token_weights=weights, entropy=entropies, **agg)
        keep = bool_mask(mask)
        if self.beta != 0.0:
            t = (inputs["ref_per_token_logps"] - logps).float()  # log pi_ref - log pi
            per_token_kl = torch.expm1(t) - t                   # k3, TRL's KL estimator
            if self.args.use_bias_correction_kl:  # TRL: times the (differentiable) importance ratio
                per_token_kl = per_token_kl * torch.exp(token_log_ratio(logps, old, mask, self.ladsim_ratio))
            mode_arg = agg.pop("loss_agg_mode")
            loss = loss + self.beta * agg_loss(per_token_kl, mask, mode_arg, **agg)
            self._metrics[mode]["kl"].append(self._global_masked_mean(per_token_kl, keep))
        self._metrics[mode]["ladsim/loss"].append(self.accelerator.gather(loss.detach()).mean().item())
        if self.loss_type not in WINDOW_MEAN and train:
            loss = loss / self.current_gradient_accumulation_steps
        if self.aux_loss_enabled:
            normalizer = self.current_gradient_accumulation_steps if train else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / normalizer
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())
        self._metrics[mode]["entropy"].append(self._global_masked_mean(entropies, keep))
        self._metrics[mode]["ladsim/approx_kl"].append(self._global_masked_mean(old - logps.detach(), keep))
        return loss

    def _global_masked_mean(self, x: Tensor, keep: Tensor) -> float:
        """Masked token mean over every process (TRL's way of logging token statistics)."""
        x = x.detach().float()
        local = torch.stack([torch.where(keep, x, torch.zeros_like(x)).sum(), keep.sum().float()])
        total = self.accelerator.reduce(local, reduction="sum")
        return (total[0] / total[1].clamp(min=1.0)).item()
