"""Group-relative advantages (LAD_SPEC "GRPO"), vectorized over any number of groups.

A group is the last axis: ``rewards (..., G)`` holds ``G`` samples of one prompt (or one bandit, one seed).
"""

from __future__ import annotations

import torch
from torch import Tensor

SCALES = ("std", "none")


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
