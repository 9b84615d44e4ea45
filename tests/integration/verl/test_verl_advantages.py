"""ladsim's advantage estimators against verl 0.9.1's own (``ADV_ESTIMATOR_REGISTRY``), on the same groups.

A batch of ``B`` prompts x ``G`` responses of random lengths (outcome reward on each response's last token, as
verl's reward manager places it), rewards with ties, zeros and one constant group; verl's function is called as
``compute_advantage`` calls it (``index`` the prompt ids, ``AlgoConfig``) and every token of a response must
carry ladsim's ``sampled_advantages`` of that response. A mutation (each estimator swapped for another) must
fail the comparison. No verl import is skipped: a missing package fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from ladsim.advantages import ESTIMATORS, sampled_advantages

# ladsim's name -> (verl's registered name, norm_adv_by_std_in_grpo)
VERL = {"grpo": ("grpo", True), "dr-grpo": ("grpo", False), "rloo": ("rloo", True),
        "reinforce++": ("reinforce_plus_plus", True), "reinforce++-baseline": ("reinforce_plus_plus_baseline", True),
        "remax": ("remax", True), "opo": ("opo", True), "grpo-passk": ("grpo_passk", True), "gpg": ("gpg", True)}
# both sides compute in float64 from the same numbers: measured (2026-12-03) <= 6.7e-16 absolute (REINFORCE++),
# bound 1e-14; GPG below
TOL = 1e-14
# verl's GPG computes alpha = bsz / count_nonzero(scores) as an int over an int64 tensor, which is float32 (ladsim
# keeps the rewards' dtype): measured <= 1.06e-7 absolute, 6e-8 relative on these batches; bound: relative 2.4e-7,
# float32's epsilon twice
RTOL_OF = {"gpg": 2.4e-7}


def batch(B: int = 5, G: int = 6, T: int = 7, seed: int = 0):
    """``rewards (B, G)``, ``lengths (B, G)``, verl's ``token_level_rewards``, ``response_mask (B G, T)``,
    ``index (B G,)``, ``greedy (B,)``."""
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 4, (B, G), generator=gen).double() / 2 - 0.5   # ties and zeros
    rewards[1] += torch.rand(G, generator=gen, dtype=torch.float64)          # one group without ties
    rewards[2] = 0.5                                                           # a constant group
    lengths = torch.randint(1, T + 1, (B, G), generator=gen)
    mask = (torch.arange(T)[None] < lengths.reshape(-1, 1)).double()
    token_rewards = torch.zeros(B * G, T, dtype=torch.float64)
    token_rewards[torch.arange(B * G), lengths.reshape(-1) - 1] = rewards.reshape(-1)
    index = np.repeat(np.arange(B), G).astype(object)  # verl's uid strings become any hashable key
    greedy = torch.rand(B, generator=gen, dtype=torch.float64)
    return rewards, lengths, token_rewards, mask, index, greedy


def verl_advantages(verl_name: str, norm: bool, token_rewards, mask, index, greedy, G: int) -> torch.Tensor:
    config = AlgoConfig(adv_estimator=verl_name, norm_adv_by_std_in_grpo=norm, gamma=1.0)
    fn = get_adv_estimator_fn(verl_name)
    kwargs = dict(token_level_rewards=token_rewards.clone(), response_mask=mask, config=config)
    if verl_name == "remax":
        kwargs["reward_baselines"] = greedy.repeat_interleave(G)
    else:
        kwargs["index"] = index
    if verl_name == "grpo":
        kwargs["norm_adv_by_std_in_grpo"] = norm
    advantages, _ = fn(**kwargs)
    return advantages


@pytest.mark.parametrize("name", sorted(VERL))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimator_equals_verl(name, seed):
    rewards, lengths, token_rewards, mask, index, greedy = batch(seed=seed)
    B, G = rewards.shape
    theirs = verl_advantages(*VERL[name], token_rewards, mask, index, greedy, G)
    ours = sampled_advantages(name, rewards, lengths=lengths, greedy=greedy).reshape(-1, 1) * mask
    assert torch.allclose(ours, theirs, rtol=RTOL_OF.get(name, 0), atol=TOL), (name, (ours - theirs).abs().max())
    assert theirs.abs().max() > 0.1  # a batch that tests something


@pytest.mark.parametrize("name", sorted(VERL))
def test_a_wrong_estimator_fails_the_comparison(name):
    """Mutation: verl's function against every other ladsim estimator; each pair must differ on this batch."""
    rewards, lengths, token_rewards, mask, index, greedy = batch(seed=3)
    G = rewards.shape[1]
    theirs = verl_advantages(*VERL[name], token_rewards, mask, index, greedy, G)
    for other in VERL:
        if other == name:
            continue
        ours = sampled_advantages(other, rewards, lengths=lengths, greedy=greedy).reshape(-1, 1) * mask
        assert not torch.allclose(ours, theirs, rtol=0, atol=TOL), (name, other)


def test_every_verl_estimator_of_the_registry_is_held_here():
    """Every ladsim estimator but TRL's batch scaling has its verl counterpart above."""
    assert set(ESTIMATORS) - set(VERL) == {"trl-batch"}
