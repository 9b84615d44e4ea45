"""ladsim's top-entropy token mask (``ladsim.engine.top_entropy_mask``, ``--top-entropy-quantile`` in the token
tree and the many-prompt world) against TRL 1.16's own ``GRPOTrainer.get_high_entropy_mask`` on the same batch
(TRL takes the quantile over every valid token of the batch: ladsim's row), and ladsim's adaptive entropy
controller (``ladsim.objectives.AdaptiveEntropy``, ``--entropy-target``) against the coefficients TRL's own
``use_adaptive_entropy`` takes in training. No TRL import is skipped."""

from __future__ import annotations

import pytest
import torch
from tiny import prompts, reward_yes, tiny_llama, tiny_tokenizer
from trl import GRPOConfig, GRPOTrainer

from ladsim.engine import top_entropy_mask


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    tok = tiny_tokenizer()
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=6, use_cpu=True, bf16=False, report_to="none",
                      save_strategy="no")
    return GRPOTrainer(model=tiny_llama(tok), reward_funcs=[reward_yes], args=args, train_dataset=prompts(),
                       processing_class=tok)


@pytest.mark.parametrize("quantile", [0.2, 0.5, 0.8, 1.0])
def test_the_mask_equals_trls(trainer, quantile):
    gen = torch.Generator().manual_seed(int(quantile * 10))
    entropies = torch.rand(6, 9, generator=gen)
    mask = (torch.arange(9)[None] < torch.tensor([9, 4, 0, 7, 1, 9])[:, None]).long()  # an empty row, ragged rows
    theirs = trainer.get_high_entropy_mask(entropies, mask, 1 - quantile)
    ours = top_entropy_mask(entropies.reshape(1, -1), mask.bool().reshape(1, -1), quantile).view(6, 9)
    assert torch.equal(ours, theirs)
    assert 0 < int(ours.sum()) <= int(mask.sum())


def test_a_wrong_quantile_fails_the_comparison(trainer):
    """Mutation: the quantile read the other way round (``q`` for ``1 - q``) is not TRL's mask."""
    entropies = torch.rand(6, 9, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(6, 9, dtype=torch.long)
    theirs = trainer.get_high_entropy_mask(entropies, mask, 1 - 0.2)
    assert not torch.equal(top_entropy_mask(entropies.reshape(1, -1), mask.bool().reshape(1, -1), 0.8).view(6, 9),
                           theirs)


def test_the_adaptive_entropy_controller_follows_trls(tmp_path):
    """A stock GRPOTrainer trains 6 steps with ``use_adaptive_entropy``; the entropies it measured, fed to
    ``ladsim.objectives.AdaptiveEntropy`` with the same settings, give the same coefficient after every step."""
    from ladsim.objectives import AdaptiveEntropy
    tok = tiny_tokenizer()
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=6, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                      max_steps=6, learning_rate=5e-2, use_adaptive_entropy=True, entropy_coef=0.01,
                      entropy_coef_delta=0.004, entropy_coef_max=0.02, entropy_target=2.4, seed=0)
    trainer = GRPOTrainer(model=tiny_llama(tok), reward_funcs=[reward_yes], args=args, train_dataset=prompts(),
                          processing_class=tok)
    seen = []
    compute = trainer._compute_loss

    def spy(model, inputs):
        loss = compute(model, inputs)
        seen.append((trainer._last_world_entropy, trainer.entropy_coef))
        return loss

    trainer._compute_loss = spy
    trainer.train()
    assert len(seen) == 6
    control = AdaptiveEntropy(target=2.4, delta=0.004, low=0.0, high=0.02, start=0.01)
    state = control.begin(1, torch.float64, "cpu")
    for entropy, coef in seen:
        control.update(state, torch.tensor([entropy], dtype=torch.float64))
        assert float(state["coef"][0]) == pytest.approx(coef, abs=1e-12)
    assert 0 < sum(e <= 2.4 for e, _ in seen) < 6  # the entropy crossed the target: both moves taken
    assert min(c for _, c in seen) == 0.0             # and the floor held the coefficient
    # mutation: another step size does not follow TRL's coefficients
    other = AdaptiveEntropy(target=2.4, delta=0.005, low=0.0, high=0.02, start=0.01)
    state = other.begin(1, torch.float64, "cpu")
    coefs = []
    for entropy, _ in seen:
        other.update(state, torch.tensor([entropy], dtype=torch.float64))
        coefs.append(float(state["coef"][0]))
    assert coefs != pytest.approx([c for _, c in seen], abs=1e-12)
