"""Advantage estimators (LAD_SPEC "GRPO"; verl 0.9.1 ``ADV_ESTIMATOR_REGISTRY``, TRL 1.16 ``scale_rewards``), the
second small registry beside the objectives'.

Shapes. A *group* is the last axis: ``rewards (..., B, G)`` holds ``G`` sampled responses of each of ``B``
prompts (the bandit and the token tree have ``B = 1``); the *batch* is the last two axes, as verl's batch of one
step (every group of one seed). ``lengths (..., B, G)`` are the responses' token counts (1 in the bandit): the
estimators that whiten over the batch's tokens (REINFORCE++) or weigh by length (OPO) read them.

Two forms per estimator:

* ``sampled_advantages``: what verl (or TRL) computes on the sampled batch, term for term (parity in
  ``tests/integration/verl/test_verl_advantages.py``). Outcome rewards, verl's ``gamma = 1``.
* ``exact_affine``: the large-group limit (``G -> infinity``, group statistics -> expectations under
  ``pi_old``), which is affine in the reward for every estimator that has one: ``A(y) = factor (R(y) - baseline)``
  per prompt. ``grpo-passk`` has none (its advantage is ``r_max - r_second`` on one response, which vanishes as
  ``G`` grows) and is sampled-only. Exact mode's default advantage ``R - E_pi_old[R]`` is ``dr-grpo``'s limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SCALES = ("std", "none")  # verl's norm_adv_by_std_in_grpo: True / False
WHITEN_EPS = 1e-8  # verl_F.masked_whiten: (x - mean) * rsqrt(var + 1e-8)
TRL_EPS = 1e-4  # TRL's GRPOTrainer: advantages / (std + 1e-4)


@dataclass(frozen=True)
class AdvantageEstimator:
    """One estimator: ``name`` (``--advantage NAME``), its ``sampled`` formula on a group, its ``exact`` limit
    (``None``: sampled-only), the trainer's name for it, whether ``--advantage-scale`` acts on it (``scaled``)
    and what it reads beyond rewards (``needs``: ``lengths``, ``greedy``: the reward of the greedy response)."""

    name: str
    summary: str
    sampled: str
    exact: str | None
    trainer: str
    reference: str
    scaled: bool = False
    needs: frozenset = frozenset()


ESTIMATORS: dict[str, AdvantageEstimator] = {e.name: e for e in (
    AdvantageEstimator(
        "grpo", "group-relative, std-scaled (GRPO)",
        "A_i = (R_i - mean(R)) / (std(R) + 1e-6)   (std unbiased; --advantage-scale none drops it)",
        "(R - E[R]) / (sigma + 1e-6), sigma^2 = E[r^2] - E[R]^2 of one sampled reward", "verl grpo",
        "Shao et al. 2024, arXiv:2402.03300", scaled=True),
    AdvantageEstimator(
        "dr-grpo", "group mean only (Dr.GRPO)", "A_i = R_i - mean(R)", "R - E[R]",
        "verl grpo with norm_adv_by_std_in_grpo=False", "Liu et al. 2025, arXiv:2503.20783"),
    AdvantageEstimator(
        "rloo", "leave-one-out baseline", "A_i = G/(G-1) (R_i - mean(R)) = R_i - mean of the others", "R - E[R]",
        "verl rloo", "Ahmadian et al. 2024, arXiv:2402.14740"),
    AdvantageEstimator(
        "reinforce++", "no group baseline: whitened over the batch's tokens (REINFORCE++)",
        "A_i = (R_i - m) / sqrt(v + 1e-8), m, v: token-weighted mean and unbiased variance of R over the batch",
        "(R - m) / sqrt(v + 1e-8), m = E[|y| R] / E|y|, v = E[|y| (r - m)^2] / E|y| over every prompt",
        "verl reinforce_plus_plus (gamma 1)", "Hu 2025, arXiv:2501.03262", needs=frozenset({"lengths"})),
    AdvantageEstimator(
        "reinforce++-baseline", "group mean subtracted, then whitened over the batch's tokens",
        "a_i = R_i - mean(R); A_i = (a_i - m) / sqrt(v + 1e-8) over the batch's tokens",
        "(R - E[R] - m) / sqrt(v + 1e-8), m, v of a = r - E[R] as for reinforce++",
        "verl reinforce_plus_plus_baseline", "Hu 2025, arXiv:2501.03262", needs=frozenset({"lengths"})),
    AdvantageEstimator(
        "remax", "greedy baseline (ReMax)", "A_i = R_i - R(greedy response of pi_old)",
        "R - R(greedy response of pi_old)", "verl remax", "Li et al. 2023, arXiv:2310.10505",
        needs=frozenset({"greedy"})),
    AdvantageEstimator(
        "opo", "length-weighted group baseline (OPO)", "A_i = R_i - sum_j |y_j| R_j / sum_j |y_j|",
        "R - E[|y| R] / E|y|", "verl opo", "Hao et al. 2025, arXiv:2505.23585", needs=frozenset({"lengths"})),
    AdvantageEstimator(
        "grpo-passk", "pass@k: only the group's best response learns",
        "A_best = (r_max - r_second) / (std(R) + 1e-6), 0 elsewhere (--advantage-scale none drops the std)",
        None, "verl grpo_passk", "Chen et al. 2025, arXiv:2503.19595", scaled=True),
    AdvantageEstimator(
        "gpg", "group mean, scaled by the batch's share of nonzero rewards (GPG)",
        "A_i = alpha (R_i - mean(R)), alpha = |batch| / #{j in batch: R_j != 0}",
        "(R - E[R]) / P(r != 0), P over every prompt", "verl gpg (f_norm 1)", "Chu et al. 2025, arXiv:2504.02546"),
    AdvantageEstimator(
        "trl-batch", "group mean, divided by the whole batch's reward std (TRL scale_rewards='batch')",
        "A_i = (R_i - mean(R)) / (std of every reward in the batch + 1e-4)",
        "(R - E[R]) / (sigma_batch + 1e-4), sigma_batch^2 = E[r^2] - E[r]^2 over every prompt",
        "TRL GRPOConfig(scale_rewards='batch')", "TRL 1.16 GRPOTrainer; Liu et al. 2025 (Dr.GRPO) sec. 3"),
)}


def get_estimator(name: str) -> AdvantageEstimator:
    """The estimator ``name`` (``ValueError`` naming the choices otherwise)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


def group_advantages(rewards: Tensor, *, scale: str = "std", eps: float = 1e-6,
                     mask: Tensor | None = None) -> Tensor:
    """Group-relative advantages over the last axis.

        GRPO     (scale="std"):  A_i = (R_i - mean(R)) / (std(R) + eps)   (std unbiased, as torch.std / verl)
        Dr.GRPO  (scale="none"): A_i =  R_i - mean(R)

    ``mask (..., G)`` excludes samples from the group statistics (their advantage is 0). A group whose rewards
    are all equal gets advantages 0. Shapes: ``rewards (..., G)`` -> ``(..., G)``.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of: {', '.join(SCALES)}")
    if rewards.shape[-1] < 2 and mask is None:
        raise ValueError(f"a group needs at least 2 samples, got {rewards.shape[-1]}")
    m = torch.ones_like(rewards) if mask is None else torch.broadcast_to(mask, rewards.shape).to(rewards.dtype)
    count = m.sum(-1, keepdim=True)
    mean = (rewards * m).sum(-1, keepdim=True) / count.clamp(min=1.0)
    centered = (rewards - mean) * m
    # A constant group must get exactly 0. The rounded mean of equal rewards can differ from them by an ulp
    # (0.7 * 7 / 7 != 0.7 in float32), which the division by std + eps (std ~ 0) would blow up to O(1e-2..1).
    valid = m > 0
    hi = torch.where(valid, rewards, float("-inf")).amax(-1, keepdim=True)
    lo = torch.where(valid, rewards, float("inf")).amin(-1, keepdim=True)
    centered = torch.where(hi == lo, torch.zeros_like(centered), centered)
    if scale == "none":
        return centered
    var = (centered**2).sum(-1, keepdim=True) / (count - 1.0).clamp(min=1.0)
    return centered / (var.sqrt() + eps)


def dr_grpo_advantages(rewards: Tensor, mask: Tensor | None = None) -> Tensor:
    """Dr.GRPO advantages ``R_i - mean(R)`` over the last axis (no division by the std)."""
    return group_advantages(rewards, scale="none", mask=mask)


def _checked(name: str, scale: str, greedy: Tensor | None) -> AdvantageEstimator:
    """The estimator ``name``, its ``scale`` and (where it reads one) its ``greedy`` baseline checked."""
    est = get_estimator(name)
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of: {', '.join(SCALES)}")
    if "greedy" in est.needs and greedy is None:
        raise ValueError(f"advantage estimator {name!r} needs greedy (the greedy response's reward per prompt)")
    return est


def _batch_whiten(values: Tensor, lengths: Tensor) -> Tensor:
    """verl's ``masked_whiten`` of ``values`` repeated on each response's tokens, over the batch (the last two
    axes): the token-weighted mean and unbiased variance, each sum over ``T`` tokens divided by ``T + 1e-8`` as
    verl's ``masked_mean`` divides it. ``(..., B, G)`` -> ``(..., B, G)``."""
    tokens = lengths.sum((-2, -1), keepdim=True)
    mean = (lengths * values).sum((-2, -1), keepdim=True) / (tokens + 1e-8)
    var = (lengths * (values - mean) ** 2).sum((-2, -1), keepdim=True) / (tokens + 1e-8) * (tokens / (tokens - 1))
    return (values - mean) * torch.rsqrt(var + WHITEN_EPS)


def sampled_advantages(name: str, rewards: Tensor, *, lengths: Tensor | None = None, greedy: Tensor | None = None,
                       scale: str = "std", eps: float = 1e-6) -> Tensor:
    """The estimator ``name`` on a sampled batch, as verl (TRL for ``trl-batch``) computes it.

    ``rewards (..., B, G)``: ``B`` groups of ``G``; ``lengths (..., B, G)`` token counts (default 1);
    ``greedy (..., B)``: each prompt's greedy-response reward (``remax``); ``scale``: ``std`` or ``none``
    (``grpo``, ``grpo-passk``). Returns ``(..., B, G)``.
    """
    _checked(name, scale, greedy)
    if rewards.dim() < 2 or rewards.shape[-1] < 2:
        raise ValueError(f"rewards must have shape (..., B, G) with G >= 2, got {tuple(rewards.shape)}")
    lengths = torch.ones_like(rewards) if lengths is None else lengths.to(rewards.dtype)
    B, G = rewards.shape[-2:]
    if name == "grpo":
        return group_advantages(rewards, scale=scale, eps=eps)
    if name == "dr-grpo":
        return group_advantages(rewards, scale="none")
    if name == "rloo":
        return group_advantages(rewards, scale="none") * (G / (G - 1))
    if name == "gpg":  # alpha: the batch's size over its count of nonzero rewards
        share = (rewards != 0).sum((-2, -1), keepdim=True).clamp(min=1).to(rewards.dtype)
        return group_advantages(rewards, scale="none") * ((B * G) / share)
    if name == "trl-batch":
        batch_std = rewards.flatten(-2).std(-1, keepdim=True).unsqueeze(-1)
        return group_advantages(rewards, scale="none") / (batch_std + TRL_EPS)
    if name == "opo":
        return rewards - (lengths * rewards).sum(-1, keepdim=True) / lengths.sum(-1, keepdim=True)
    if name == "reinforce++":
        return _batch_whiten(rewards, lengths)
    if name == "reinforce++-baseline":
        return _batch_whiten(rewards - rewards.mean(-1, keepdim=True), lengths)
    if name == "remax":
        return rewards - greedy.unsqueeze(-1).to(rewards.dtype)
    # grpo-passk: the first of the group's best responses gets r_max - r_second (0 on a tie)
    top = torch.topk(rewards, 2, dim=-1).values
    gap = top[..., :1] - top[..., 1:]
    if scale == "std":
        gap = gap / (rewards.std(-1, keepdim=True) + eps)
    best = torch.zeros_like(rewards).scatter_(-1, rewards.argmax(-1, keepdim=True), 1.0)
    return best * gap


def exact_affine(name: str, rewards: Tensor, pi: Tensor, *, lengths: Tensor | None = None,
                 second_moment: Tensor | None = None, nonzero: Tensor | None = None, greedy: Tensor | None = None,
                 scale: str = "std", eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """The large-group limit of ``name`` (module docstring): ``(baseline, factor)``, each ``(..., B, 1)``, with
    ``A(y) = factor (R(y) - baseline)``.

    ``pi (..., B, R)``: ``pi_old`` over each prompt's responses; ``rewards`` their expected rewards,
    broadcastable to ``pi``; ``lengths`` token counts (default 1); ``second_moment`` ``E[r^2 | y]`` (default
    ``R^2``: deterministic rewards) and ``nonzero`` ``P(r != 0 | y)`` (default ``R != 0``) of one sampled reward;
    ``greedy (..., B)`` the greedy response's reward. Batch statistics weigh the ``B`` prompts equally, as verl's
    batch of ``G`` responses per prompt does. ``grpo-passk`` has no limit (``ValueError``).
    """
    if _checked(name, scale, greedy).exact is None:
        raise ValueError(f"advantage estimator {name!r} is sampled-only (it has no large-group limit: "
                         f"r_max - r_second vanishes as the group grows)")
    rewards = torch.broadcast_to(rewards, pi.shape)
    second = rewards**2 if second_moment is None else torch.broadcast_to(second_moment, pi.shape)
    ones = torch.ones((), dtype=pi.dtype, device=pi.device)
    mean = lambda x: (pi * x).sum(-1, keepdim=True)                      # noqa: E731  per prompt (..., B, 1)
    over_batch = lambda x: x.mean(-2, keepdim=True)                      # noqa: E731  prompts weigh equally
    mu = mean(rewards)
    if name == "remax":
        return greedy.unsqueeze(-1).to(pi.dtype), ones.expand_as(mu)
    if name in ("dr-grpo", "rloo") or (name == "grpo" and scale == "none"):
        return mu, ones.expand_as(mu)
    if name == "grpo":
        sigma = (mean(second) - mu**2).clamp(min=0).sqrt()
        return mu, 1.0 / (sigma + eps)
    if name == "trl-batch":
        batch_mean = over_batch(mu)
        sigma = (over_batch(mean(second)) - batch_mean**2).clamp(min=0).sqrt()
        return mu, (1.0 / (sigma + TRL_EPS)).expand_as(mu)
    if name == "gpg":
        share = over_batch(mean((rewards != 0).to(pi.dtype) if nonzero is None
                                else torch.broadcast_to(nonzero, pi.shape)))
        return mu, torch.where(share > 0, 1.0 / share.clamp(min=1e-300), 1.0).expand_as(mu)
    length = ones.expand_as(pi) if lengths is None else torch.broadcast_to(lengths, pi.shape).to(pi.dtype)
    if name == "opo":
        return mean(length * rewards) / mean(length), ones.expand_as(mu)
    # reinforce++ / -baseline: whiten r - shift (shift 0 or E[R] per prompt) over the batch's tokens
    shift = mu if name == "reinforce++-baseline" else torch.zeros_like(mu)
    tokens = over_batch(mean(length))
    m = over_batch(mean(length * (rewards - shift))) / tokens
    # E[|y| (r - shift - m)^2] with r's second moment: r^2 - 2 r (shift + m) + (shift + m)^2
    c = shift + m
    v = over_batch(mean(length * (second - 2 * rewards * c + c**2))) / tokens
    return c, torch.rsqrt(v.clamp(min=0) + WHITEN_EPS).expand_as(mu)


def exact_estimator_advantages(name: str, rewards: Tensor, pi: Tensor, **kw) -> Tensor:
    """``factor (R - baseline)`` of :func:`exact_affine`, ``(..., B, R)``."""
    baseline, factor = exact_affine(name, rewards, pi, **kw)
    return factor * (torch.broadcast_to(rewards, pi.shape) - baseline)
