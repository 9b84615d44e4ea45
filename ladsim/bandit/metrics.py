"""Exact metrics of a batch of bandit policies against the distribution the objective should reach.

All metrics are computed from the policy itself (no sampling), for every seed at once. With ``pi (S, N)``,
the target ``t (N,)``, expected rewards ``R (N,)``, per-pull success probabilities ``s (N,)`` and the reward
spec's modes ``M_1..M_K`` (sets of arms):

==================  ==========================================================================
expected_reward     ``sum_y pi(y) R(y)``
entropy             ``-sum_y pi(y) log pi(y)`` (nats)
js_to_target        Jensen-Shannon divergence ``JS(pi, t)`` (nats, at most log 2)
tv_to_target        total variation ``1/2 sum_y |pi(y) - t(y)|``
kl_to_target        ``KL(pi || t)`` (nats)
top_arm_mass        ``max_y pi(y)``
mode_coverage       number of modes ``k`` with ``pi(M_k) >= 1/2 t(M_k)``: a mode counts as alive when the
                    policy keeps at least half of the mass the target puts on it; NaN (unknown) when the
                    policy is not finite
effective_modes     ``exp(-sum_k m_k log m_k)`` with ``m_k = pi(M_k) / sum_j pi(M_j)``: the perplexity of how
                    the policy splits the modes' mass among them, from 1 (one mode holds it all) to K (evenly);
                    unlike mode_coverage it keeps separating policies once every mode is alive
js_to_std_target,   sampled mode with ``advantage_scale = "std"`` only: the same distances to the target that
tv_to_std_target    mode pursues, ``t_std ∝ pi_old exp(R / (sigma eta))`` with ``sigma`` the std of one sampled
                    reward under the initial ``pi_old`` (the large-group limit of GRPO's division by the
                    group std). ``*_to_target`` stays the distance to the unscaled ``pi_old exp(A/eta)/Z``.
pass@k              ``1 - (1 - sum_y pi(y) s(y))^k``: the chance that at least one of ``k`` independent
                    pulls succeeds
distinct@k          ``sum_y 1 - (1 - pi(y) s(y))^k``: the expected number of distinct arms that succeed at
                    least once among ``k`` pulls (distinct correct answers)
==================  ==========================================================================
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ladsim.divergences import DIVERGENCES

STD_TARGET_METRICS = ("js_to_std_target", "tv_to_std_target")  # sampled mode, std-scaled advantages only
SUMMARY_METRICS = ("js_to_target", "tv_to_target", "top_arm_mass", "entropy", "expected_reward", "mode_coverage")


class PolicyMetrics:
    """Precomputed reward-side tensors; call with ``log_pi (S, N)`` to get ``{name: (S,) tensor}``."""

    def __init__(self, log_target: Tensor, rewards: np.ndarray, success: np.ndarray,
                 modes: list[list[int]], ks: tuple[int, ...] = (1, 4, 16),
                 log_std_target: Tensor | None = None) -> None:
        self.log_target = log_target
        self.log_std_target = log_std_target
        like = dict(dtype=log_target.dtype, device=log_target.device)
        self.rewards = torch.as_tensor(rewards, **like)
        self.success = torch.as_tensor(success, **like)
        membership = torch.zeros(len(modes), log_target.shape[-1], **like)
        for k, arms in enumerate(modes):
            membership[k, arms] = 1.0
        self.membership = membership  # (K, N)
        self.target_mode_mass = membership @ log_target.exp()  # (K,)
        self.ks = ks

    @torch.no_grad()
    def __call__(self, log_pi: Tensor) -> dict[str, Tensor]:
        pi = log_pi.exp()
        t = self.log_target
        mode_mass = pi @ self.membership.T  # (S, K)
        split = mode_mass / mode_mass.sum(-1, keepdim=True)
        out = {
            "expected_reward": pi @ self.rewards,
            "entropy": -(pi * log_pi).sum(-1),
            "js_to_target": DIVERGENCES["js"].divergence(log_pi, t.expand_as(log_pi)),
            "tv_to_target": DIVERGENCES["tv"].divergence(log_pi, t.expand_as(log_pi)),
            "kl_to_target": DIVERGENCES["kl"].divergence(log_pi, t.expand_as(log_pi)),
            "top_arm_mass": pi.max(-1).values,
            "mode_coverage": self.mode_coverage(pi, mode_mass),
            "effective_modes": torch.exp(-torch.special.xlogy(split, split).sum(-1)),
        }
        if self.log_std_target is not None:
            s = self.log_std_target.expand_as(log_pi)
            out["js_to_std_target"] = DIVERGENCES["js"].divergence(log_pi, s)
            out["tv_to_std_target"] = DIVERGENCES["tv"].divergence(log_pi, s)
        p_success = pi @ self.success
        pulled_success = pi * self.success
        for k in self.ks:
            out[f"pass@{k}"] = 1.0 - (1.0 - p_success) ** k
            out[f"distinct@{k}"] = (1.0 - (1.0 - pulled_success) ** k).sum(-1)
        return out

    def mode_coverage(self, pi: Tensor, mode_mass: Tensor) -> Tensor:
        """Modes kept per seed, ``(S,)``; NaN (unknown, ``null`` in JSON) where the policy is not finite:
        a NaN policy must not read as "0 modes kept"."""
        kept = (mode_mass >= 0.5 * self.target_mode_mass).sum(-1).to(pi.dtype)
        return torch.where(torch.isfinite(pi).all(-1), kept, torch.full_like(kept, float("nan")))
