"""TRL 1.16's batch reward scaling (``GRPOConfig(scale_rewards="batch")``) against ladsim's ``trl-batch``.

A stock ``GRPOTrainer`` on the tiny model generates and scores a batch (``_generate_and_score_completions``, as
its training loop does); the rewards it scored are recorded by the reward function, and the advantages it hands
to its loss must equal ``ladsim.advantages.sampled_advantages("trl-batch", ...)`` of those rewards grouped by
prompt. A mutation (TRL's per-group scaling, ``scale_rewards="group"``) must differ. No TRL import is skipped.
"""

from __future__ import annotations

import torch
from tiny import prompts, tiny_llama, tiny_tokenizer
from trl import GRPOConfig, GRPOTrainer

from ladsim.advantages import sampled_advantages

G = 4  # num_generations
# TRL computes in float32: measured (2026-12-03) 6.5e-8 absolute; bound 1e-6 (~15x)
TOL = 1e-6


def distinct_words(completions, **kwargs) -> list[float]:
    """A reward that varies between the tiny model's random completions: how many distinct words each has."""
    values = [float(len(set(c.split()))) for c in completions]
    distinct_words.seen.append(values)
    return values


def scored(tmp_path, scale_rewards: str) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's advantages and the rewards it scored, ``(B, G)`` each, for one generation batch of 4 prompts."""
    tok = tiny_tokenizer()
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4 * G, num_generations=G,
                      max_completion_length=6, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                      seed=0, scale_rewards=scale_rewards, temperature=1.5)
    trainer = GRPOTrainer(model=tiny_llama(tok), reward_funcs=[distinct_words], args=args,
                          train_dataset=prompts(), processing_class=tok)
    distinct_words.seen = []
    torch.manual_seed(0)
    batch = [{"prompt": p} for p in prompts(4)["prompt"] for _ in range(G)]
    out = trainer._generate_and_score_completions(batch)
    rewards = torch.tensor(distinct_words.seen[-1], dtype=torch.float64).view(-1, G)
    return out["advantages"].double().view(-1, G), rewards


def test_trl_batch_scaling_equals_ladsims_trl_batch(tmp_path):
    theirs, rewards = scored(tmp_path, "batch")
    assert rewards.std() > 0.3 and (rewards.std(-1) > 0).sum() >= 2  # groups that differ
    ours = sampled_advantages("trl-batch", rewards)
    assert torch.allclose(ours, theirs, rtol=0, atol=TOL), (ours - theirs).abs().max()


def test_trls_group_scaling_is_not_trl_batch(tmp_path):
    """Mutation: TRL's per-group scaling on the same kind of batch is not what ``trl-batch`` computes."""
    theirs, rewards = scored(tmp_path, "group")
    ours = sampled_advantages("trl-batch", rewards)
    assert not torch.allclose(ours, theirs, rtol=0, atol=TOL)
