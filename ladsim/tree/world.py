"""The token tree as a world of the engine (``ladsim.engine``): batches of tokens or responses, their adjoints,
and the exact metrics of WORLDS.md.

The policy: one softmax per node, stored token-major as ``logp (S, V, M)`` with each node's softmax over the
middle axis (``ladsim.tree.structure``: torch's kernels are ten times faster there than over rows of ``V``),
trained tabularly (``theta (S, V, M)``, starting at 0: every node uniform, plus optional ``N(0, init_std^2)``
noise). ``flat = logp.reshape(S, E)`` indexes edges.

Loss entries (``entries``), for an objective whose ``unit`` is ``"token"`` (the PPO family, LAD, ...):

* **exact mode**: every token of every response, ``T`` per seed (``TreeMaps.token_edge``). Token ``t``
  of response ``y`` has ``logp = log pi(y_t | y_<t)`` (``ratio = "token"``) or ``log pi_old(y_t | y_<t) + D(y)``
  with ``D(y) = log pi(y) - log pi_old(y)`` (``"sequence"``: every token of ``y`` carries its response's ratio)
  or ``D(y) / |y|`` (``"sequence-mean"``, GSPO), as ``ladsim.llm.objective_loss.token_log_ratio`` forms them;
  advantage ``A(y) = R(y) - E_{pi_old}[R]``. The batch statistics of clip-cov and kl-cov are over the token
  distribution, ``Batch.weights = pi_old(y) / E_{pi_old}|y|`` per token (what a large batch of sampled tokens
  tends to). The loss weights are the aggregation mode's large-batch limit (WORLDS.md),
  ``w(y, t) = pi_old(y) c(y)`` with ``c = 1 / E_{pi_old}|y|`` (``token-mean``), ``1`` (``token-sum``,
  ``seq-mean-token-sum``), ``1 / |y|`` (``seq-mean-token-mean``), ``1 / L`` (``seq-mean-token-sum-norm``).
  With the token ratio a token's term depends on its response only through ``A(y)``, so the tokens of one edge
  whose responses share a reward are one entry, their weights summed (``TreeWorld.pairs``): the same loss and
  gradient from ``P <= T`` entries (121 nodes x 4 tokens, 364 responses: 604 entries for 1762 tokens);
* **sampled mode**: ``G`` responses per seed drawn from ``pi_old`` over the enumerated responses, their tokens
  padded to ``(S, G L)`` with a mask, group-relative advantages broadcast to the tokens, and the aggregation
  mode's literal weights over the sample, per seed (``ladsim.llm.token_loss.agg_weights`` of that seed's
  ``(G, L)`` batch, with ``norm_length = L``).

For an objective with ``unit = "response"`` (FlowRL) each response is one entry with length-normalized
log-probabilities ``log pi(y) / |y|`` (its ``|y|`` is the response's own), weighted ``pi_old(y)`` (exact) or
``1/G`` (sampled); the full-support ``lad-theory`` gets every response, ``log pi(y)``, in every mode. The KL
penalty and the entropy bonus are always per token (``Entries.modifiers``), aggregated like the loss, as an
LLM trainer adds them; the reference policy is ``pi_0``.

The adjoints go back from entries to edges: a scatter-add of token gradients onto their edges, or, for a
response's total, a subtree sum (``TreeMaps.subtree_sums``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ladsim.advantages import exact_affine, group_advantages, sampled_advantages
from ladsim.bandit.metrics import PolicyMetrics
from ladsim.engine import Entries, Part, top_entropy_mask
from ladsim.objectives import Batch, Objective, memoized
from ladsim.streams import SeedStreams
from ladsim.tree.rewards import TreeReward
from ladsim.tree.structure import TokenTree

TREE_METRICS = ("correct_mass", "node_entropy", "mean_length", "length_correct", "length_incorrect",
                "truncation_rate")


def agg_factors(agg: str, lengths: Tensor, mean_length: Tensor, max_length: int) -> Tensor:
    """``c(y)`` of the exact-mode loss weights ``pi_old(y) c(y)`` per token (module docstring): ``lengths (R,)``,
    ``mean_length (S, 1)`` -> broadcastable ``(S, R)``."""
    if agg == "token-mean":
        return 1.0 / mean_length.expand(-1, lengths.shape[0])
    if agg in ("token-sum", "seq-mean-token-sum"):
        return torch.ones_like(mean_length).expand(-1, lengths.shape[0])
    if agg == "seq-mean-token-mean":
        return (1.0 / lengths.to(mean_length.dtype))[None].expand(mean_length.shape[0], -1)
    if agg == "seq-mean-token-sum-norm":
        return torch.full_like(mean_length, 1.0 / max_length).expand(-1, lengths.shape[0])
    raise ValueError(f"unknown aggregation mode {agg!r}")


def sampled_agg_weights(agg: str, mask: Tensor, max_length: int) -> Tensor:
    """verl's aggregation weights over each seed's sampled batch, ``mask (S, G, L)`` -> ``(S, G, L)``: what
    ``ladsim.llm.token_loss.agg_weights`` gives that seed's ``(G, L)`` batch with ``norm_length = L`` (every
    sampled response has at least one token)."""
    m = mask.to(torch.get_default_dtype()) if not mask.is_floating_point() else mask
    G = mask.shape[1]
    if agg == "token-mean":
        return m / m.sum((1, 2), keepdim=True)
    if agg == "token-sum":
        return m
    if agg == "seq-mean-token-sum":
        return m / G
    if agg == "seq-mean-token-mean":
        return m / m.sum(-1, keepdim=True) / G
    if agg == "seq-mean-token-sum-norm":
        return m / (G * max_length)
    raise ValueError(f"unknown aggregation mode {agg!r}")


@dataclass
class Old:
    """What depends on ``pi_old`` alone: its rows, its response log-probabilities and the exact advantages."""

    flat: Tensor          # (S, E) log pi_old per edge
    responses: Tensor     # (S, R) log pi_old(y)
    advantages: Tensor    # (S, R) factor (R(y) - baseline): the exact estimator's; default R(y) - E_{pi_old}[R]
    mean_length: Tensor   # (S, 1) E_{pi_old}|y|
    baseline: Tensor      # (S, 1) the exact estimator's affine form (ladsim.advantages.exact_affine)
    factor: Tensor        # (S, 1)


@dataclass
class Sample:
    """``G`` responses per seed drawn from ``pi_old``: their indices, tokens' edges and mask, advantages."""

    responses: Tensor     # (S, G)
    edges: Tensor         # (S, G L) the tokens' edges (0 where padded)
    mask: Tensor          # (S, G L) bool
    lengths: Tensor       # (S, G)
    logp_old: Tensor      # (S, G L) log pi_old per token (0 where padded)
    advantages: Tensor    # (S, G) group-relative


class TreeWorld:
    """The token tree of ``tree`` with ``reward``, for ``seeds`` seeds (module docstring).

    ``agg``, ``ratio``: the LLM path's aggregation mode and ratio; ``group_size``: sampled mode's groups;
    ``estimators``: the advantage estimators ``(exact, sampled)`` (``ladsim.advantages``) and
    ``advantage_scale`` their std flag; ``top_entropy_quantile < 1``: the objective trains only the sampled
    tokens of the highest-entropy fraction (TRL's mask; the modifiers keep every token); ``init_std``: noise on
    the initial logits.
    """

    def __init__(self, tree: TokenTree, reward: TreeReward, seeds: int, *, agg: str = "token-mean",
                 ratio: str = "token", group_size: int = 16, advantage_scale: str = "std",
                 estimators: tuple[str, str] = ("dr-grpo", "grpo"), top_entropy_quantile: float = 1.0,
                 init_std: float = 0.0, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        self.tree, self.reward, self.seeds = tree, reward, seeds
        self.agg, self.ratio, self.group_size, self.advantage_scale = agg, ratio, group_size, advantage_scale
        self.estimators, self.top_entropy_quantile = estimators, top_entropy_quantile
        self.init_std, self.dtype, self.device = init_std, dtype, torch.device(device)
        self.maps = tree.tensors(self.device)
        self.shape = (tree.vocab, tree.n_nodes)  # the policy's (V, M) per seed
        self.rewards = torch.as_tensor(reward.values, dtype=dtype, device=self.device)  # (R,)
        self.lengths = self.maps.response_length.to(dtype)                                # (R,)
        self.log_prior_edge = torch.full((tree.n_edges,), -float(np.log(tree.vocab)), dtype=dtype,
                                         device=self.device)                               # (E,) pi_0 = pi_ref
        self.log_prior_response = self.maps.path_sums(self.log_prior_edge[None])[0]      # (R,)
        self.pairs = self._pairs()
        self._metrics: PolicyMetrics | None = None

    def _pairs(self) -> dict[str, Tensor]:
        """The exact token entries of the token ratio: one per (edge, reward value) that some token has.
        ``of_token (T,)`` each token's entry, ``edge (P,)``, ``value (P,)`` the reward of its responses."""
        values, classes = np.unique(self.reward.values, return_inverse=True)
        token_edge = self.maps.token_edge.cpu().numpy()
        token_class = classes[self.maps.token_response.cpu().numpy()]
        keys, of_token = np.unique(token_edge * len(values) + token_class, return_inverse=True)
        as_long = lambda a: torch.as_tensor(a, dtype=torch.long, device=self.device)  # noqa: E731
        return {"of_token": as_long(of_token), "edge": as_long(keys // len(values)),
                "value": torch.as_tensor(values[keys % len(values)], dtype=self.dtype, device=self.device)}

    # --- the engine's protocol ------------------------------------------------------------------------

    def initial_params(self, streams: SeedStreams) -> list[Tensor]:
        theta = torch.zeros(self.seeds, *self.shape, dtype=self.dtype, device=self.device)
        if self.init_std > 0:
            theta += self.init_std * streams.normal(self.shape, self.dtype).to(self.device)
        return [theta]

    def log_policy(self, params: list[Tensor]) -> Tensor:
        return torch.log_softmax(params[0], 1)

    def params_grad(self, params: list[Tensor], logp_grad: Tensor, logp: Tensor) -> list[Tensor]:
        return [torch._log_softmax_backward_data(logp_grad, logp, 1, logp.dtype)]  # tabular: logits = params

    def prior(self) -> Tensor:
        return self.log_prior_edge.view(1, *self.shape).expand(self.seeds, -1, -1)

    def state_shape(self) -> tuple[int, ...]:
        return (self.seeds,)  # one prompt: FlowRL's log Z is one scalar per seed

    def behaviour(self, logp_old: Tensor) -> Old:
        flat = logp_old.reshape(self.seeds, -1).detach()
        responses = self.maps.path_sums(flat)
        pi = responses.exp()
        mean_length = (pi * self.lengths).sum(-1, keepdim=True)
        name = self.estimators[0]
        if name == "dr-grpo":  # the default, at every refresh: inline (exact_affine's checks cost ~18 us more)
            baseline, factor = (pi * self.rewards).sum(-1, keepdim=True), None
        else:
            greedy = self.greedy_reward(flat) if name == "remax" else None
            baseline, factor = (t.squeeze(1) for t in exact_affine(
                name, self.rewards, pi.unsqueeze(1), lengths=self.lengths, greedy=greedy,
                scale=self.advantage_scale))
        advantages = self.rewards - baseline if factor is None else factor * (self.rewards - baseline)
        return Old(flat, responses, advantages, mean_length, baseline,
                   torch.ones_like(baseline) if factor is None else factor)

    def greedy_reward(self, flat: Tensor) -> Tensor:
        """The reward of each seed's greedy response (the argmax token at every node from the root), ``(S, 1)``:
        the one response whose every edge is its node's argmax (the first on ties). ``flat (S, E)``."""
        V, M = self.shape
        argmax = flat.view(self.seeds, V, M).argmax(1, keepdim=True)                 # (S, 1, M)
        tokens = torch.arange(V, device=flat.device).view(1, V, 1)
        off_greedy = (tokens != argmax).to(flat.dtype).reshape(self.seeds, -1)      # (S, E) 1 off the argmax
        response = self.maps.path_sums(off_greedy).argmin(-1, keepdim=True)         # the path with none off it
        return self.rewards[response]

    def draw(self, old: Old, streams: SeedStreams) -> Sample:
        G, L = self.group_size, self.tree.length
        responses = streams.categorical(old.responses.exp(), G)                    # (S, G)
        rewards = self.rewards[responses]
        name = self.estimators[1]
        if name == "grpo":
            advantages = group_advantages(rewards, scale=self.advantage_scale)
        else:
            greedy = self.greedy_reward(old.flat) if name == "remax" else None
            advantages = sampled_advantages(name, rewards.unsqueeze(1), lengths=self.lengths[responses].unsqueeze(1),
                                            greedy=greedy, scale=self.advantage_scale).squeeze(1)
        path = torch.as_tensor(self.tree.response_edges, device=self.device)[responses]  # (S, G, L), -1 padded
        mask = path >= 0
        edges = path.clamp(min=0).reshape(self.seeds, G * L)
        logp_old = torch.where(mask.reshape(self.seeds, -1), old.flat.gather(1, edges), 0.0)
        return Sample(responses, edges, mask.reshape(self.seeds, -1), mask.sum(-1), logp_old, advantages)

    def entries(self, obj: Objective, logp: Tensor, old: Old, sample: Sample | None, memo: dict,
                streams: SeedStreams, modifiers: frozenset[str]) -> Entries:
        flat = logp.reshape(self.seeds, -1)
        with_modifiers = bool(modifiers)
        masked = self.top_entropy_quantile < 1 and sample is not None
        needs_entropy = "entropy" in obj.needs or "entropy" in modifiers or masked
        entropy = -(logp.exp() * logp).sum(1) if needs_entropy else None  # (S, M) per node
        token_unit = obj.unit == "token" and not obj.full_support
        # one part serves both, unless the entropy mask (the objective's alone) tells them apart
        shared = with_modifiers and token_unit and self.ratio == "token" and not masked
        if not token_unit:  # one entry per response; the full-support oracle gets every one, in every mode
            part = self._responses(obj, flat, old, None if obj.full_support else sample, memo)
        elif sample is None:
            part = self._exact_tokens(obj, flat, old, memo, streams, entropy, self.ratio, with_ref=shared)
        else:
            part = self._sampled_tokens(obj, flat, sample, memo, streams, entropy, self.ratio, with_ref=shared)
        if shared or not with_modifiers:
            return Entries(part, part if shared else None)
        # the modifiers' own token entries (token ratio); their batch is read by no objective: no memo
        if sample is None or obj.full_support:
            mods = self._exact_tokens(obj, flat, old, memo, streams, entropy, "token", with_ref=True, memo_ok=False)
        else:
            mods = self._sampled_tokens(obj, flat, sample, memo, streams, entropy, "token", with_ref=True,
                                        memo_ok=False)
        return Entries(part, mods)

    # --- the entries ---------------------------------------------------------------------------------

    def _view(self, edges: Tensor) -> Tensor:
        """``(S, E)`` edge values as the policy's ``(S, V, M)``."""
        return edges.view(self.seeds, *self.shape)

    def _exact_tokens(self, obj: Objective, flat: Tensor, old: Old, memo: dict, streams: SeedStreams,
                      entropy: Tensor | None, ratio: str, with_ref: bool = False, memo_ok: bool = True) -> Part:
        """Every token (``ratio`` token: every (edge, reward value) pair) of every response, exact weights;
        ``with_ref``: with the reference log-probs (the KL penalty's); ``memo_ok``: objectives may cache in
        the batch's memo (not for the modifiers' own batch)."""
        maps, S, M = self.maps, self.seeds, self.tree.n_nodes
        pairs = ratio == "token"  # the token ratio's entries: (edge, reward value) pairs

        def fixed() -> dict[str, Tensor]:
            pi = old.responses.exp()                                                  # (S, R)
            c = agg_factors(self.agg, maps.response_length, old.mean_length, self.tree.length)
            loss_w, dist_w = pi * c, pi / old.mean_length                            # (S, R)
            if pairs:
                edge, p = self.pairs["edge"], self.pairs["of_token"]
                P = edge.shape[0]
                collect = lambda w: flat.new_zeros(S, P).index_add_(1, p, w[:, maps.token_response])  # noqa: E731
                advantages = old.factor * (self.pairs["value"] - old.baseline)
                weights, loss = collect(dist_w), collect(loss_w)
            else:
                edge, at = maps.token_edge, maps.token_response
                advantages, weights, loss = old.advantages[:, at], dist_w[:, at], loss_w[:, at]
            return {"edge": edge, "node": edge % M, "logp_old": old.flat[:, edge], "advantages": advantages,
                    "weights": weights, "loss": loss, "logp_ref": self.log_prior_edge[edge],
                    "row_mass": maps.node_visits(loss_w).unsqueeze(1)}               # (S, 1, M)

        c = memoized(memo, ("tree.exact_tokens", self.agg, pairs), fixed)
        if pairs:
            logp = flat[:, c["edge"]]
        else:
            shift = self._sequence_shift(maps.path_sums(flat) - old.responses, ratio, self.lengths)
            logp = c["logp_old"] + shift[:, maps.token_response]
        batch = Batch(logp=logp, logp_old=c["logp_old"], advantages=c["advantages"], weights=c["weights"],
                      logp_ref=c["logp_ref"] if ("logp_ref" in obj.needs or with_ref) else None,
                      entropy=None if entropy is None else entropy[:, c["node"]],
                      generator=streams, memo=memo if memo_ok else {})

        def adjoint(g: Tensor) -> Tensor:
            if pairs:
                return self._view(flat.new_zeros(S, self.tree.n_edges).index_add_(1, c["edge"], g))
            per_response = flat.new_zeros(S, self.tree.n_responses).index_add_(1, maps.token_response, g)
            return self._view(maps.subtree_sums(self._sequence_shift(per_response, ratio, self.lengths)))

        return Part(batch, c["loss"], adjoint, c["row_mass"])

    def _sampled_tokens(self, obj: Objective, flat: Tensor, sample: Sample, memo: dict, streams: SeedStreams,
                        entropy: Tensor | None, ratio: str, with_ref: bool = False, memo_ok: bool = True) -> Part:
        """The sample's tokens, padded ``(S, G L)`` with a mask, verl's weights (``with_ref``, ``memo_ok``:
        as :meth:`_exact_tokens`)."""
        S, G, L, M = self.seeds, self.group_size, self.tree.length, self.tree.n_nodes

        def fixed() -> dict[str, Tensor]:
            w = sampled_agg_weights(self.agg, sample.mask.view(S, G, L).to(flat.dtype), L).reshape(S, G * L)
            nodes = sample.edges % M
            return {
                "advantages": sample.advantages.repeat_interleave(L, dim=1),  # (S, G L)
                "loss": w,
                "row_mass": flat.new_zeros(S, M).scatter_add_(1, nodes, w).unsqueeze(1),
                "logp_ref": torch.where(sample.mask, self.log_prior_edge[sample.edges], 0.0),
                "nodes": nodes,
            }

        c = memoized(memo, ("tree.sampled_tokens", self.agg), fixed)
        mask = sample.mask
        token_logp = torch.where(mask, flat.gather(1, sample.edges), 0.0)
        if ratio == "token":
            logp = token_logp
        else:
            total = (token_logp - sample.logp_old).view(S, G, L).sum(-1)          # (S, G) D(y)
            shift = self._sequence_shift(total, ratio, sample.lengths.to(flat.dtype))
            logp = torch.where(mask, sample.logp_old + shift.repeat_interleave(L, dim=1), 0.0)
        batch = Batch(logp=logp, logp_old=sample.logp_old, advantages=c["advantages"], mask=mask,
                      logp_ref=c["logp_ref"] if ("logp_ref" in obj.needs or with_ref) else None,
                      entropy=None if entropy is None else entropy.gather(1, c["nodes"]),
                      generator=streams, memo=memo if memo_ok else {})

        weights = c["loss"]
        if memo_ok and self.top_entropy_quantile < 1:  # the objective's part: TRL's top-entropy mask
            weights = weights * top_entropy_mask(entropy.gather(1, c["nodes"]), mask, self.top_entropy_quantile)

        def adjoint(g: Tensor) -> Tensor:
            g = torch.where(mask, g, 0.0)
            if ratio != "token":
                per_response = self._sequence_shift(g.view(S, G, L).sum(-1), ratio, sample.lengths.to(g.dtype))
                g = torch.where(mask, per_response.repeat_interleave(L, dim=1), 0.0)
            return self._view(flat.new_zeros(S, self.tree.n_edges).scatter_add_(1, sample.edges, g))

        return Part(batch, weights, adjoint, c["row_mass"])

    def _responses(self, obj: Objective, flat: Tensor, old: Old, sample: Sample | None, memo: dict) -> Part:
        """One entry per response: ``log pi(y)`` for a full-support objective (every response), ``log pi(y) /
        |y|`` for a response-unit objective (every response in exact mode, the sample's otherwise)."""
        S, L = self.seeds, self.tree.length
        maps, full = self.maps, obj.full_support
        if sample is None:
            scale = torch.ones_like(self.lengths) if full else 1.0 / self.lengths                 # (R,)
            logp = maps.path_sums(flat) * scale
            batch = Batch(logp=logp, logp_old=old.responses * scale, advantages=old.advantages,
                          weights=None if full else old.responses.exp(),
                          logp_ref=(self.log_prior_response * scale) if "logp_ref" in obj.needs else None,
                          memo=memo)

            def adjoint(g: Tensor) -> Tensor:
                return self._view(maps.subtree_sums(g * scale))

            return Part(batch, None if full else batch.weights, adjoint)
        lengths = sample.lengths.to(flat.dtype)
        token_logp = torch.where(sample.mask, flat.gather(1, sample.edges), 0.0)
        logp = token_logp.view(S, -1, L).sum(-1) / lengths
        batch = Batch(logp=logp, logp_old=sample.logp_old.view(S, -1, L).sum(-1) / lengths,
                      advantages=sample.advantages,
                      logp_ref=self.log_prior_response[sample.responses] / lengths, memo=memo)

        def adjoint(g: Tensor) -> Tensor:
            per_token = torch.where(sample.mask, (g / lengths).repeat_interleave(L, dim=1), 0.0)
            return self._view(flat.new_zeros(S, self.tree.n_edges).scatter_add_(1, sample.edges, per_token))

        return Part(batch, torch.full_like(logp, 1.0 / self.group_size), adjoint)

    @staticmethod
    def _sequence_shift(per_response: Tensor, ratio: str, lengths: Tensor) -> Tensor:
        """``D(y)`` as each token carries it: ``D`` (``"sequence"``) or ``D / |y|`` (``"sequence-mean"``); the
        same factor maps a response's summed token gradients back (it is linear)."""
        return per_response if ratio == "sequence" else per_response / lengths

    # --- metrics --------------------------------------------------------------------------------------

    def target_log_distribution(self, scale: float = 1.0, eta: float = 1.0) -> Tensor:
        """``log P_A(y) = log softmax(log pi_0(y) + R(y) / (scale eta))`` over responses, ``(R,)``."""
        return torch.log_softmax(self.log_prior_response + self.rewards / (scale * eta), -1)

    def reward_std(self) -> float:
        """The std of one sampled reward under ``pi_0``: the large-group limit of GRPO's group std."""
        pi = self.log_prior_response.exp()
        mean = float((pi * self.rewards).sum())
        return float(np.sqrt(max(float((pi * self.rewards ** 2).sum()) - mean ** 2, 0.0)))

    def set_targets(self, eta: float, ks: tuple[int, ...], std_target: bool) -> None:
        """Prepare :meth:`metrics`: the target ``P_A`` at ``eta`` (and the std-scaled one of sampled mode)."""
        sigma = self.reward_std() if std_target else 0.0
        self._metrics = PolicyMetrics(self.target_log_distribution(eta=eta), self.reward.values,
                                      self.reward.success, self.reward.modes(), ks,
                                      log_std_target=self.target_log_distribution(sigma, eta) if sigma > 0 else None)
        self._correct = torch.as_tensor(self.reward.correct, device=self.device).to(self.dtype)
        self._truncated = torch.as_tensor(~self.tree.response_terminated, device=self.device).to(self.dtype)

    def response_log_probs(self, logp: Tensor) -> Tensor:
        """``log pi(y)`` of every response, ``(S, R)``."""
        return self.maps.path_sums(logp.reshape(self.seeds, -1))

    def metrics(self, logp: Tensor) -> dict[str, Tensor]:
        """The bandit's metrics over responses (``ladsim.bandit.metrics``; ``top_arm_mass`` is named
        ``top_response_mass``) and the tree's own: ``correct_mass`` ``sum_{y correct} pi(y)``; ``node_entropy``
        the mean entropy per node visited, ``sum_s P(s) H(s) / sum_s P(s)`` with ``P(s)`` the chance a response
        passes node ``s`` (``E[sum_t H_t] / E|y|``: the per-token entropy an LLM trainer logs);
        ``mean_length`` ``E|y|``; ``length_correct``, ``length_incorrect`` ``E[|y| | y (in)correct]`` (NaN when
        that mass is 0); ``truncation_rate`` the mass of truncated responses."""
        if self._metrics is None:
            raise ValueError("call set_targets(eta, ks, std_target) before metrics")
        flat = logp.reshape(self.seeds, -1)
        log_pi = self.maps.path_sums(flat)
        out = self._metrics(log_pi)
        out["top_response_mass"] = out.pop("top_arm_mass")
        pi = log_pi.exp()
        visits = self.maps.node_path_sums(flat).exp()                      # (S, M)
        node_h = -(logp.exp() * logp).sum(1)                               # (S, M)
        correct_mass = pi @ self._correct
        wrong_mass = pi @ (1.0 - self._correct)  # not 1 - correct_mass: that rounds to 0 while some mass is left

        def mean_length_on(mass: Tensor, where: Tensor) -> Tensor:  # NaN where no mass is left
            return torch.where(mass > 0, (pi * where) @ self.lengths / mass, float("nan"))

        out.update({
            "correct_mass": correct_mass,
            "node_entropy": (visits * node_h).sum(-1) / visits.sum(-1),
            "mean_length": pi @ self.lengths,
            "length_correct": mean_length_on(correct_mass, self._correct),
            "length_incorrect": mean_length_on(wrong_mass, 1.0 - self._correct),
            "truncation_rate": pi @ self._truncated,
        })
        return out
