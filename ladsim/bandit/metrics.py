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
    """Precomputed reward-side tensors; call with ``log_pi (S, N)`` to get ``{name: (S,) tensor}``.

    Memory stays lean for LLM-sized action sets (N ~ 1.5e5): modes are kept as ``(mode, arm)`` index pairs, not
    a dense ``(K, N)`` matrix (a correct set over 151,936 arms has 15,194 modes), and the metrics are computed
    over blocks of at most ``BLOCK`` entries of seeds x arms, so the temporaries never hold more than a few
    blocks whatever ``S``. Every reduction runs along one row, so a seed's metrics do not depend on the
    others (nor on how many seeds there are).
    """

    BLOCK = 1 << 20

    def __init__(self, log_target: Tensor, rewards: np.ndarray, success: np.ndarray,
                 modes: list[list[int]], ks: tuple[int, ...] = (1, 4, 16),
                 log_std_target: Tensor | None = None) -> None:
        self.log_target = log_target
        self.log_std_target = log_std_target
        like = dict(dtype=log_target.dtype, device=log_target.device)
        self.rewards = torch.as_tensor(rewards, **like)
        self.success = torch.as_tensor(success, **like)
        self.n_modes = len(modes)
        self.mode_of = torch.tensor([k for k, arms in enumerate(modes) for _ in arms], dtype=torch.long,
                                    device=log_target.device)  # (P,) the mode of each (mode, arm) pair
        self.mode_arm = torch.tensor([a for arms in modes for a in arms], dtype=torch.long,
                                     device=log_target.device)  # (P,) its arm
        self.target_mode_mass = self._mode_mass(log_target.exp()[None])[0]  # (K,)
        self.ks = ks

    def _mode_mass(self, pi: Tensor) -> Tensor:
        """``pi(M_k)`` for every mode: ``(S, N)`` -> ``(S, K)``."""
        out = torch.zeros(pi.shape[0], self.n_modes, dtype=pi.dtype, device=pi.device)
        return out.index_add_(1, self.mode_of, pi[:, self.mode_arm])

    @torch.no_grad()
    def __call__(self, log_pi: Tensor) -> dict[str, Tensor]:
        rows = max(1, self.BLOCK // max(1, log_pi.shape[-1]))
        blocks = [self._block(log_pi[i:i + rows]) for i in range(0, log_pi.shape[0], rows)]
        return blocks[0] if len(blocks) == 1 else {k: torch.cat([b[k] for b in blocks]) for k in blocks[0]}

    def _block(self, log_pi: Tensor) -> dict[str, Tensor]:
        pi = log_pi.exp()
        t = self.log_target.expand_as(log_pi)  # a view, no copy
        mode_mass = self._mode_mass(pi)  # (S, K)
        split = mode_mass / mode_mass.sum(-1, keepdim=True)
        out = {
            "expected_reward": (pi * self.rewards).sum(-1),
            "entropy": -(pi * log_pi).sum(-1),
            "js_to_target": DIVERGENCES["js"].divergence(log_pi, t),
            "tv_to_target": DIVERGENCES["tv"].divergence(log_pi, t),
            "kl_to_target": DIVERGENCES["kl"].divergence(log_pi, t),
            "top_arm_mass": pi.max(-1).values,
            "mode_coverage": self.mode_coverage(pi, mode_mass),
            "effective_modes": torch.exp(-torch.special.xlogy(split, split).sum(-1)),
        }
        if self.log_std_target is not None:
            s = self.log_std_target.expand_as(log_pi)
            out["js_to_std_target"] = DIVERGENCES["js"].divergence(log_pi, s)
            out["tv_to_std_target"] = DIVERGENCES["tv"].divergence(log_pi, s)
        pulled_success = pi.mul_(self.success)  # pi is not needed any more: reuse its memory
        p_success = pulled_success.sum(-1)
        for k in self.ks:
            out[f"pass@{k}"] = 1.0 - (1.0 - p_success) ** k
            out[f"distinct@{k}"] = (1.0 - (1.0 - pulled_success) ** k).sum(-1)
        return out

    def mode_coverage(self, pi: Tensor, mode_mass: Tensor) -> Tensor:
        """Modes kept per seed, ``(S,)``; NaN (unknown, ``null`` in JSON) where the policy is not finite:
        a NaN policy must not read as "0 modes kept"."""
        kept = (mode_mass >= 0.5 * self.target_mode_mass).sum(-1).to(pi.dtype)
        return torch.where(torch.isfinite(pi).all(-1), kept, torch.full_like(kept, float("nan")))
