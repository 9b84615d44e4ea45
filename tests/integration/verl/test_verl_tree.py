"""The token tree computes what verl computes: a sampled tree batch's loss and gradient, through verl 0.9.1's real
``ppo_loss`` (``verl.workers.utils.losses``), equal the tree engine's for GRPO (verl's own ``vanilla``) and LAD
(``ladsim-lad``), in every aggregation mode.

The tree batch: one seed's ``G`` responses drawn from ``pi_old`` (``TreeWorld.draw``), its token log-probs
gathered from the policy's node rows, group-relative advantages, the mask of each response's length. verl sees
the same responses as right-padded token sequences behind a one-token prompt (``left_right_2_no_padding``, the
engine's global counts), and the model output as the jagged log-probs of each whole sequence, as its FSDP engine
returns them. Gradients are compared in the tree's node logits, through both paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from test_verl_policy_loss import MODES, TOL, actor_config
from verl.utils import tensordict_utils as tu
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import left_right_2_no_padding

from ladsim.engine import entries_loss
from ladsim.objectives import get_objective
from ladsim.streams import SeedStreams
from ladsim.tree.config import TreeConfig
from ladsim.tree.trainer import make_world

G = 8
LAD = {"eta": 0.5, "div": "js"}
VERL_GRPO = {"eps_low": 0.2, "eps_high": 0.2, "clip_ratio_c": 3.0, "log_ratio_clamp": 20.0}  # verl's vanilla


def tree_step(objective: str, mode: str, params: dict, ratio: str = "token", seed: int = 0):
    """One sampled tree step: ``(world, sample, theta, loss of seed 0)``; ``theta`` the policy's logits, off
    ``pi_old`` so that ratios and clips act."""
    config = TreeConfig(vocab=4, length=5, reward="answers:12,213,3111;partial=0.3", seeds=1, mode="sampled",
                        group_size=G, agg=mode, ratio=ratio, objectives=(objective,),
                        params={objective: params}, dtype="float32")
    world = make_world(config)
    g = torch.Generator().manual_seed(seed)
    theta_old = 0.8 * torch.randn(1, *world.shape, generator=g)
    theta = (theta_old + 0.4 * torch.randn(theta_old.shape, generator=g)).requires_grad_(True)
    streams = SeedStreams(seed, 1)
    old = world.behaviour(world.log_policy([theta_old]))
    sample = world.draw(old, streams)
    obj = get_objective(objective)
    entries = world.entries(obj, world.log_policy([theta]), old, sample, {}, streams, modifiers=frozenset())
    loss = entries_loss(obj, entries, config.objective_params(objective), {}, None, None)[0]
    return world, sample, theta, loss


def verl_loss(world, sample, theta: torch.Tensor, config) -> torch.Tensor:
    """verl's ppo_loss on the tree's sample: one mini-batch of G responses behind a one-token prompt."""
    L = world.tree.length
    mask = sample.mask.view(G, L)
    edges = sample.edges.view(G, L)
    flat = world.log_policy([theta]).reshape(-1)
    log_prob = torch.where(mask, flat[edges], 0.0)
    old = sample.logp_old.view(G, L).detach()
    adv = sample.advantages.view(G, 1).expand(G, L) * mask
    tokens = torch.where(mask, edges // world.tree.n_nodes + 3, 0)  # token ids (their values do not matter)
    attention = torch.cat([torch.ones(G, 1, dtype=torch.long), mask.long()], 1)
    ids = torch.cat([torch.full((G, 1), 7), tokens], 1) * attention
    fields = {"input_ids": ids, "attention_mask": attention, "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
              "prompts": ids[:, :1], "responses": ids[:, 1:], "response_mask": mask.long(), "old_log_probs": old,
              "advantages": adv}
    data = left_right_2_no_padding(TensorDict(fields, batch_size=G))
    tu.assign_non_tensor(data, batch_num_tokens=int(data["loss_mask"].sum()), dp_size=1, global_batch_size=G)
    pieces, offsets = [], [0]
    for i in range(G):  # jagged log-probs of each whole sequence, shifted: position p holds token p + 1's
        n = int(mask[i].sum())
        pieces += [log_prob[i, :n], torch.zeros(1)]
        offsets.append(offsets[-1] + 1 + n)
    output = {"log_probs": torch.nested.nested_tensor_from_jagged(torch.cat(pieces), offsets=torch.tensor(offsets))}
    loss, _ = ppo_loss(config, output, data)
    return loss


@pytest.mark.parametrize("mode", MODES)
def test_a_sampled_tree_batch_is_verls_vanilla_grpo(mode):
    world, sample, theta, loss = tree_step("grpo", mode, VERL_GRPO)
    ours_grad = torch.autograd.grad(loss, theta)[0]
    theirs = verl_loss(world, sample, theta, actor_config("vanilla", mode))
    theirs_grad = torch.autograd.grad(theirs, theta)[0]
    torch.testing.assert_close(loss.detach(), theirs.detach(), **TOL)
    torch.testing.assert_close(ours_grad, theirs_grad, **TOL)
    assert ours_grad.abs().max() > 0


@pytest.mark.parametrize("ratio", ["token", "sequence", "sequence-mean"])
@pytest.mark.parametrize("mode", MODES)
def test_a_sampled_tree_batch_is_ladsim_lad_inside_verl(mode, ratio):
    world, sample, theta, loss = tree_step("lad", mode, LAD, ratio=ratio)
    ours_grad = torch.autograd.grad(loss, theta)[0]
    config = actor_config("ladsim-lad", mode, "+actor_rollout_ref.actor.policy_loss.params={eta: 0.5, div: js}",
                          f"+actor_rollout_ref.actor.policy_loss.ratio={ratio}")
    theirs = verl_loss(world, sample, theta, config)
    theirs_grad = torch.autograd.grad(theirs, theta)[0]
    torch.testing.assert_close(loss.detach(), theirs.detach(), **TOL)
    torch.testing.assert_close(ours_grad, theirs_grad, **TOL)


def test_the_comparison_can_fail():
    # the same sample under another aggregation mode gives another verl loss
    world, sample, theta, loss = tree_step("grpo", "seq-mean-token-mean", VERL_GRPO)
    other = verl_loss(world, sample, theta, actor_config("vanilla", "token-sum"))
    assert not np.isclose(loss.item(), other.item(), rtol=1e-3)
