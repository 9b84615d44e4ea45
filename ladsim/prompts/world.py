"""Many prompts that share parameters as a world of the engine (``ladsim.engine``): the policy, its batches,
the chain rule through the features, and the exact metrics of WORLDS.md (World 2).

The policy of seed ``s``, prompt ``x``, answer ``y``:

    z(x, y) = b(x, y) + phi(x, y) . w  [+ theta(x, y)],        pi(y | x) = softmax_y z(x, .)

stored as ``logp (S, P, N)`` (softmax over the last axis), with the shared ``w (S, d)`` and, with
``tabular``, a free logit ``theta (S, P, N)``; both start at 0 (``w`` plus optional ``N(0, init_std^2)``
noise), so the policy starts at the base ``softmax(b)``, which is also ``pi_old``'s start and the KL penalty's
reference. The loss averages the prompts' losses (``ladsim.prompts.config``).

Loss entries (``entries``), one softmax row per (seed, prompt), leading dims ``(S, P)``:

* **exact mode**: the rows themselves, ``Batch(logp, logp_old, A, weights=pi_old)`` with ``A(x, y) = R(x, y) -
  E_{pi_old(.|x)}[R(x, .)]``; loss weights ``pi_old / P``. A full-support objective (``lad-theory``) gets this
  batch in every mode, its per-prompt loss scaled by ``1/P`` (``Part.scale``);
* **sampled mode**: ``G`` answers per seed and prompt drawn from ``pi_old`` (inverse CDF on each prompt's row,
  one uniform per draw from the seed's own stream), group-relative advantages per prompt; loss weights
  ``1 / (G P)``, mapped back onto the rows by a scatter-add.

The batch statistics of clip-cov and kl-cov are over the last axis: per prompt (its answers, ``pi_old``
weighted, or its group). FlowRL's ``log Z`` is one per seed and prompt. The KL penalty and the entropy bonus
act on the same entries as the objective (the exact batch where the objective is full-support).

The fused chain rule (``params_grad``): ``dL/dz = g - pi sum_y g`` per row (the log-softmax backward), then
``dL/dw = sum_{x, y} dL/dz(x, y) phi(x, y)`` (one matrix product) and ``dL/dtheta = dL/dz``.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

import torch
from torch import Tensor

from ladsim.advantages import exact_affine, group_advantages, sampled_advantages
from ladsim.divergences import DIVERGENCES
from ladsim.engine import Entries, Part, top_entropy_mask
from ladsim.losses import log_softmax_backward
from ladsim.objectives import Batch, Objective
from ladsim.prompts.setting import Setting
from ladsim.streams import SeedStreams

PROMPT_METRICS = ("expected_reward", "entropy", "js_to_target", "kl_to_base", "unsolved",
                  "solved_base_only", "solved_trained_only", "solved_both")


def pass_at_k(rho: Tensor, k: int) -> Tensor:
    """``1 - (1 - rho)^k`` elementwise, as ``-expm1(k log1p(-rho))`` (accurate for small ``rho`` and large
    ``k``)."""
    return -torch.expm1(k * torch.log1p(-rho))


@dataclass
class Old:
    """What depends on ``pi_old`` alone, ``(S, P, N)`` each."""

    logp: Tensor          # log pi_old
    pi: Tensor            # pi_old (the exact batch's weights)
    advantages: Tensor    # R - E_{pi_old}[R] per prompt
    loss_weights: Tensor  # pi_old / P


@dataclass
class Sample:
    """``G`` answers per seed and prompt drawn from ``pi_old``, ``(S, P, G)`` each."""

    answers: Tensor       # int64 indices into the prompt's row
    logp_old: Tensor
    logp_ref: Tensor
    advantages: Tensor    # group-relative, per prompt
    loss_weights: Tensor  # 1 / (G P)


class PromptsWorld:
    """``P`` prompts of ``N`` answers whose logits share ``w`` (module docstring), for ``seeds`` seeds.

    ``setting``: the base logits, features and rewards (``ladsim.prompts.setting``; parts shared by every
    seed have a leading axis of 1); ``tabular``: add ``theta (S, P, N)``; ``group_size``: sampled mode's
    groups; ``estimators``: the advantage estimators ``(exact, sampled)`` (``ladsim.advantages``; a batch is
    every prompt's group) and ``advantage_scale`` their std flag; ``top_entropy_quantile < 1``: the objective
    trains only the sampled answers of the prompts of highest entropy (TRL's mask over the batch's tokens, each
    answer one token carrying its prompt's entropy; the modifiers keep every answer); ``init_std``: noise on the
    initial ``w``.
    """

    def __init__(self, setting: Setting, seeds: int, *, tabular: bool = False, group_size: int = 16,
                 advantage_scale: str = "std", estimators: tuple[str, str] = ("dr-grpo", "grpo"),
                 top_entropy_quantile: float = 1.0, init_std: float = 0.0) -> None:
        self.seeds, self.tabular = seeds, tabular
        self.group_size, self.advantage_scale, self.init_std = group_size, advantage_scale, init_std
        self.estimators, self.top_entropy_quantile = estimators, top_entropy_quantile
        self.prompts, self.arms, self.dim = setting.sizes
        self.device = setting.features.device
        self.dtype = setting.features.dtype
        S, P, N, d = seeds, self.prompts, self.arms, self.dim
        self.base = setting.base                                               # (S or 1, P, N)
        self.rewards = setting.rewards                                         # (S or 1, P, N)
        self.log_base = torch.log_softmax(setting.base, -1).expand(S, P, N)    # (S, P, N) pi_0 = pi_ref
        # The features feature-major, as both matrix products read them fastest: (d, P N) shared by every seed,
        # or (S, d, P N). Per seed they are the largest tensor of a step, read twice (the logits, then dL/dw):
        # feature-major, each product took 0.5-0.7 ms at S = 8, P = 256, N = 64, d = 16 in float64, answer-major
        # (S, P N, d) 0.8-1.4 ms (2-core EPYC, one thread, 2026-12-03; a throwaway script).
        self.shared_features = setting.features.shape[0] == 1
        major = setting.features.reshape(-1, P * N, d).transpose(1, 2).contiguous()  # (S or 1, d, P N)
        self.features = major[0] if self.shared_features else major
        self.flat_base = setting.base.reshape(-1, P * N)                       # (S or 1, P N)
        self.row_mass = torch.full((1, 1, 1), 1.0 / P, dtype=self.dtype, device=self.device)
        self._targets: dict | None = None

    # --- the engine's protocol ------------------------------------------------------------------------

    def initial_params(self, streams: SeedStreams) -> list[Tensor]:
        w = torch.zeros(self.seeds, self.dim, dtype=self.dtype, device=self.device)
        if self.init_std > 0:
            w += self.init_std * streams.normal(self.dim, self.dtype).to(self.device)
        if not self.tabular:
            return [w]
        return [w, torch.zeros(self.seeds, self.prompts, self.arms, dtype=self.dtype, device=self.device)]

    def logits(self, params: list[Tensor]) -> Tensor:
        """``b + phi . w (+ theta)``, ``(S, P, N)``, differentiable: one fused multiply-add."""
        w = params[0]
        if self.shared_features:
            z = torch.addmm(self.flat_base, w, self.features)                          # (S, P N)
        else:
            z = torch.baddbmm(self.flat_base.unsqueeze(1), w.unsqueeze(1), self.features)  # (S, 1, P N)
        z = z.view(self.seeds, self.prompts, self.arms)
        return z + params[1] if self.tabular else z

    def log_policy(self, params: list[Tensor]) -> Tensor:
        return torch.log_softmax(self.logits(params), -1)

    def params_grad(self, params: list[Tensor], logp_grad: Tensor, logp: Tensor) -> list[Tensor]:
        dz = log_softmax_backward(logp_grad, logp)                             # (S, P, N)
        flat = dz.view(self.seeds, -1)                                         # (S, P N)
        if self.shared_features:
            dw = flat @ self.features.T                                        # (S, d)
        else:
            dw = torch.bmm(flat.unsqueeze(1), self.features.transpose(1, 2)).squeeze(1)  # (S, d)
        return [dw, dz] if self.tabular else [dw]

    def prior(self) -> Tensor:
        return self.log_base

    def state_shape(self) -> tuple[int, ...]:
        return (self.seeds, self.prompts)  # FlowRL's log Z: one per seed and prompt

    def behaviour(self, logp_old: Tensor) -> Old:
        logp = logp_old.detach()
        pi = logp.exp()
        name = self.estimators[0]
        if name == "dr-grpo":
            advantages = self.rewards - (pi * self.rewards).sum(-1, keepdim=True)
        else:
            baseline, factor = exact_affine(name, self.rewards, pi, greedy=self.greedy_reward(logp),
                                            scale=self.advantage_scale)
            advantages = factor * (self.rewards - baseline)
        return Old(logp, pi, advantages, pi / self.prompts)

    def greedy_reward(self, logp_old: Tensor) -> Tensor:
        """The reward of each prompt's greedy answer under ``pi_old`` (the first argmax), ``(S, P)``."""
        rewards = torch.broadcast_to(self.rewards, logp_old.shape)
        return rewards.gather(-1, logp_old.argmax(-1, keepdim=True)).squeeze(-1)

    def draw(self, old: Old, streams: SeedStreams) -> Sample:
        S, P, G = self.seeds, self.prompts, self.group_size
        cdf = torch.cumsum(old.pi.to(torch.float64), -1)                       # (S, P, N)
        u = streams.uniform((P, G), torch.float64).to(cdf.device) * cdf[..., -1:]
        # as SeedStreams.categorical, per prompt: the first answer whose cumulative mass exceeds u
        answers = torch.searchsorted(cdf, u, right=True).clamp_(max=self.arms - 1)
        rewards = torch.broadcast_to(self.rewards, old.pi.shape).gather(-1, answers)
        name = self.estimators[1]
        if name == "grpo":
            advantages = group_advantages(rewards, scale=self.advantage_scale)
        else:  # the batch of verl's estimators: every prompt's group of one seed
            advantages = sampled_advantages(name, rewards, greedy=self.greedy_reward(old.logp),
                                            scale=self.advantage_scale)
        return Sample(answers, old.logp.gather(-1, answers), self.log_base.gather(-1, answers), advantages,
                      torch.full((S, P, G), 1.0 / (G * P), dtype=self.dtype, device=self.device))

    def entries(self, obj: Objective, logp: Tensor, old: Old, sample: Sample | None, memo: dict,
                streams: SeedStreams, modifiers: frozenset[str]) -> Entries:
        masked = self.top_entropy_quantile < 1 and sample is not None
        needs_entropy = "entropy" in obj.needs or "entropy" in modifiers or masked
        entropy = -(logp.exp() * logp).sum(-1, keepdim=True) if needs_entropy else None  # (S, P, 1)
        with_ref = "logp_ref" in obj.needs or "logp_ref" in modifiers
        if sample is None or obj.full_support:
            batch = Batch(logp=logp, logp_old=old.logp, advantages=old.advantages, weights=old.pi,
                          logp_ref=self.log_base if with_ref else None, entropy=entropy, generator=streams,
                          memo=memo)
            exact = Part(batch, old.loss_weights, _identity, self.row_mass)
            if not obj.full_support:
                return Entries(exact, exact)
            return Entries(Part(batch, None, _identity, scale=1.0 / self.prompts), exact)
        answers = sample.answers
        batch = Batch(logp=logp.gather(-1, answers), logp_old=sample.logp_old, advantages=sample.advantages,
                      logp_ref=sample.logp_ref if with_ref else None, entropy=entropy, generator=streams,
                      memo=memo)

        def adjoint(g: Tensor) -> Tensor:
            return torch.zeros_like(logp).scatter_add_(-1, answers, g)

        part = Part(batch, sample.loss_weights, adjoint, self.row_mass)
        if not masked:
            return Entries(part, part)
        S, P, G = answers.shape
        keep = top_entropy_mask(entropy.expand(S, P, G).reshape(S, P * G), None, self.top_entropy_quantile)
        keep = keep.view(S, P, G)
        return Entries(dataclasses.replace(part, weights=sample.loss_weights * keep), part)

    # --- metrics --------------------------------------------------------------------------------------

    def set_targets(self, eta: float, ks: tuple[int, ...]) -> None:
        """Prepare :meth:`metrics`: LAD's target ``pi_0 exp(A/eta) / Z`` per prompt, the pass@k grid ``ks``
        (its last ``k`` is the one of ``unsolved`` and the coverage), and the base's success per prompt."""
        rho_base = self.success(self.log_base)
        self._targets = {"log_target": torch.log_softmax(self.log_base + self.rewards / eta, -1), "ks": ks,
                         "base_pass": pass_at_k(rho_base, ks[-1])}

    def success(self, logp: Tensor) -> Tensor:
        """``rho_x = sum_y pi(y | x) R(x, y)`` per seed and prompt, ``(S, P)``: the chance that one sampled
        answer is judged correct (the mass on the correct answers for 0/1 rewards), clamped to ``[0, 1]``
        against rounding (a prompt whose every answer is correct sums to 1 within an ulp)."""
        return (logp.exp() * self.rewards).sum(-1).clamp_(0.0, 1.0)

    @staticmethod
    def entropy(logp: Tensor) -> Tensor:
        """``H(pi(. | x))`` per seed and prompt (nats), ``(S, P)``."""
        return -(logp.exp() * logp).sum(-1)

    def metrics(self, logp: Tensor) -> dict[str, Tensor]:
        """Exact metrics of the rows ``logp (S, P, N)``, each the mean over prompts, ``(S,)``:

        ``expected_reward`` the mean ``rho_x``; ``pass@k`` the mean ``1 - (1 - rho_x)^k`` for each ``k`` of the
        grid; ``entropy`` the mean ``H(pi(.|x))``; ``js_to_target`` the mean JS to LAD's target
        ``pi_0 exp(A/eta)/Z`` of the prompt (``A`` at the base; where ``d < P N`` the policy family may not hold
        it); ``kl_to_base`` the mean ``KL(pi || pi_0)``; ``unsolved`` the share of prompts with ``rho_x <
        1/k_max`` (fewer than one expected correct answer in ``k_max`` samples); ``solved_base_only``,
        ``solved_trained_only``, ``solved_both``: the expected share of prompts solved at ``k = k_max`` (at
        least one correct answer among ``k_max`` independent samples) by a sample of the base and not of the
        policy, the reverse, and both: the means of ``p_b (1 - p)``, ``p (1 - p_b)``, ``p_b p`` with ``p_b``,
        ``p`` the prompt's pass@k_max under the base and the policy.
        """
        if self._targets is None:
            raise ValueError("call set_targets(eta, ks) before metrics")
        t = self._targets
        rho = self.success(logp)
        out = {"expected_reward": rho.mean(-1), "entropy": self.entropy(logp).mean(-1),
               "js_to_target": DIVERGENCES["js"].divergence(logp, t["log_target"].expand_as(logp)).mean(-1),
               "kl_to_base": DIVERGENCES["kl"].divergence(logp, self.log_base).mean(-1),
               "unsolved": (rho < 1.0 / t["ks"][-1]).to(rho.dtype).mean(-1)}
        for k in t["ks"]:
            out[f"pass@{k}"] = pass_at_k(rho, k).mean(-1)
        p, p_base = pass_at_k(rho, t["ks"][-1]), t["base_pass"]
        out.update(solved_base_only=(p_base * (1 - p)).mean(-1), solved_trained_only=(p * (1 - p_base)).mean(-1),
                   solved_both=(p_base * p).mean(-1))
        return out


def _identity(g: Tensor) -> Tensor:
    return g
