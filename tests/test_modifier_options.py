"""The trainers' switches beside the objectives (issue 21, part 3): TRL's bias-corrected KL
(``--kl-bias-correction``), its top-entropy token mask (``--top-entropy-quantile``) and its adaptive entropy
control (``--entropy-target``) in the worlds; the KL estimators themselves are in tests/test_fused.py and held to
verl in tests/integration/verl/test_verl_kl.py, TRL's ``delta`` in tests/test_fused.py and the TRL suite, the
mask and the controller against TRL's own in tests/integration/trl/test_trl_modifiers.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.trainer import train_objective
from ladsim.objectives import Batch, KLPenalty, get_objective, objective_loss
from ladsim.prompts.config import PromptsConfig
from ladsim.prompts.trainer import train_objective as train_prompts_objective
from ladsim.tree.config import TreeConfig
from ladsim.tree.trainer import train_objective as train_tree_objective


def exact_batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(torch.randn(3, 7, generator=gen, dtype=torch.float64), -1)
    logp_old = torch.log_softmax(torch.randn(3, 7, generator=gen, dtype=torch.float64), -1)
    logp_ref = torch.log_softmax(torch.randn(3, 7, generator=gen, dtype=torch.float64), -1)
    return logp, logp_old, logp_ref


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3", "abs"])
def test_the_corrected_penalty_under_pi_old_is_the_penalty_under_pi(estimator):
    """``E_pi_old[r k] = E_pi[k]``: the exact bias-corrected penalty of a lagging ``pi_old`` is the on-policy
    one; without the correction it is not (the mutation)."""
    logp, logp_old, logp_ref = exact_batch()
    zero = torch.zeros_like(logp)
    lagging = Batch(logp, logp_old, zero, weights=logp_old.exp(), logp_ref=logp_ref)
    on_policy = Batch(logp, logp.detach(), zero, weights=logp.exp(), logp_ref=logp_ref)
    corrected = objective_loss("grpo", lagging, kl=KLPenalty(1.0, estimator, bias_correction=True))
    plain = objective_loss("grpo", lagging, kl=KLPenalty(1.0, estimator))
    want = objective_loss("grpo", on_policy, kl=KLPenalty(1.0, estimator))
    # measured (2026-12-03) <= 2.2e-16 apart; bound 1e-14
    torch.testing.assert_close(corrected, want, atol=1e-14, rtol=0)
    assert (plain - want).abs().max() > 1e-3


# Measured (2026-12-03): fused and autograd agree to <= 1.8e-15 with the corrected KL in every world and mode,
# <= 4.4e-16 with the top-entropy mask and <= 1.8e-15 with adaptive entropy control (below).
# Bound: 1e-13.
TOL = 1e-13
WORLDS = {
    "bandit": (train_objective, lambda **kw: BanditConfig(arms=8, reward="mixture:2/1/1,6/1/0.8", steps=30, seeds=2,
                                                           log_every=10, init_std=0.3, **kw)),
    "tree": (train_tree_objective, lambda **kw: TreeConfig(vocab=3, length=3, reward="answers:1,21;partial=0.3",
                                                           steps=30, seeds=2, log_every=10, init_std=0.3, **kw)),
    "prompts": (train_prompts_objective, lambda **kw: PromptsConfig(prompts=4, arms=6, dim=3, steps=30, seeds=2,
                                                                    log_every=10, **kw)),
}
REGIMES = {"exact": dict(mode="exact", refresh_every=4),
           "sampled": dict(mode="sampled", group_size=6, refresh_every=4, epochs=2)}


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("world", list(WORLDS))
def test_every_world_trains_the_corrected_kl_fused_as_autograd(world, regime):
    train, make = WORLDS[world]
    config = make(objectives=("lad",), kl="k3", kl_beta=0.3, kl_bias_correction=True, **REGIMES[regime])
    ref_traj, ref_policy = train(config, "lad", engine="autograd")
    traj, policy = train(config, "lad", engine="fused")
    assert np.abs(policy - ref_policy).max() <= TOL
    for metric in ref_traj:
        assert np.nanmax(np.abs(traj[metric] - ref_traj[metric])) <= TOL, metric
    plain = train(config.replace(kl_bias_correction=False), "lad")[1]
    assert np.abs(plain - policy).max() > 1e-6  # the switch reaches the training (pi_old lags 3 steps in 4)


def test_the_correction_without_a_penalty_is_refused():
    with pytest.raises(ValueError, match="--kl-bias-correction does nothing in this run: it acts only with --kl"):
        BanditConfig(arms=8, kl_bias_correction=True)


# --- TRL's top-entropy token mask (--top-entropy-quantile) ----------------------------------------------------

def test_the_mask_keeps_the_tokens_at_or_above_the_quantile_of_each_row():
    from ladsim.engine import top_entropy_mask
    gen = torch.Generator().manual_seed(0)
    entropy = torch.rand(3, 20, generator=gen, dtype=torch.float64)
    valid = torch.rand(3, 20, generator=gen) > 0.3
    for q in (0.2, 0.5, 1.0):
        keep = top_entropy_mask(entropy, valid, q)
        for s in range(3):  # reference: torch.quantile of the row's valid tokens, as TRL's get_high_entropy_mask
            threshold = torch.quantile(entropy[s][valid[s]], 1 - q)
            assert torch.equal(keep[s], (entropy[s] >= threshold) & valid[s])
        assert not (keep & ~valid).any()
    assert top_entropy_mask(entropy, valid, 1.0).equal(valid)
    share = top_entropy_mask(entropy, valid, 0.2).sum(-1) / valid.sum(-1)
    assert (share <= 0.3).all() and (share > 0.1).all()  # about the fraction asked for


MASKED = {"tree": dict(mode="sampled", group_size=6, refresh_every=4, epochs=2, top_entropy_quantile=0.3),
          "prompts": dict(mode="sampled", group_size=6, refresh_every=4, epochs=2, top_entropy_quantile=0.3)}


@pytest.mark.parametrize("modifiers", [{}, {"kl": "k3", "kl_beta": 0.3}])
@pytest.mark.parametrize("world", list(MASKED))
def test_the_masked_worlds_train_fused_as_autograd(world, modifiers):
    train, make = WORLDS[world]
    config = make(objectives=("grpo",), **MASKED[world], **modifiers)
    ref_traj, ref_policy = train(config, "grpo", engine="autograd")
    traj, policy = train(config, "grpo", engine="fused")
    assert np.abs(policy - ref_policy).max() <= TOL
    for metric in ref_traj:
        assert np.nanmax(np.abs(traj[metric] - ref_traj[metric])) <= TOL, metric
    unmasked = train(config.replace(top_entropy_quantile=1.0), "grpo")[1]
    assert np.abs(unmasked - policy).max() > 1e-6  # the mask reaches the training


def test_the_mask_drops_the_low_entropy_tokens_from_the_objective_only():
    from ladsim.engine import top_entropy_mask
    from ladsim.streams import SeedStreams
    from ladsim.tree.trainer import make_world
    config = WORLDS["tree"][1](objectives=("grpo",), kl="k3", **MASKED["tree"])
    world = make_world(config)
    streams = SeedStreams(0, config.seeds)
    params = world.initial_params(streams)
    params[0] += 0.5 * torch.randn(params[0].shape, dtype=params[0].dtype, generator=torch.Generator().manual_seed(1))
    logp = world.log_policy(params)
    old = world.behaviour(logp)
    sample = world.draw(old, streams)
    entries = world.entries(get_objective("grpo"), logp, old, sample, {}, streams, frozenset({"logp_ref"}))
    entropy = -(logp.exp() * logp).sum(1).gather(1, sample.edges % world.tree.n_nodes)
    keep = top_entropy_mask(entropy, sample.mask, 0.3)
    assert torch.equal(entries.objective.weights != 0, keep)            # the objective: only the kept tokens
    assert torch.equal(entries.modifiers.weights != 0, sample.mask)     # the KL penalty: every sampled token
    assert 0 < keep.sum() < sample.mask.sum()


@pytest.mark.parametrize("kwargs, match", [
    (dict(top_entropy_quantile=0.0), r"must lie in \(0, 1\]"),
    (dict(top_entropy_quantile=0.5), "acts only with --mode sampled"),
    (dict(top_entropy_quantile=0.5, mode="sampled", objectives=("gspo",)), "one term per response"),
    (dict(top_entropy_quantile=0.5, mode="sampled", entropy_coef=0.1), "TRL masks the entropy bonus"),
    (dict(top_entropy_quantile=0.5, mode="sampled", objectives=("lad-theory",)), "reads every response"),
])
def test_what_the_mask_cannot_do_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TreeConfig(vocab=3, length=3, reward="answers:1,21", steps=10, **kwargs)
    with pytest.raises(ValueError, match="does nothing in the bandit: it has one state"):
        BanditConfig(arms=8, steps=10, **{k: v for k, v in kwargs.items() if k != "objectives"})


# --- TRL's adaptive entropy control (--entropy-target) ----------------------------------------------------------

def trl_rule(entropies, target, delta, low, high, start):
    """TRL 1.16's controller, step by step as GRPOTrainer._compute_loss writes it (one seed): the coefficient
    applied at each step, and the coefficient after it."""
    coef, last, applied, after = start, float("inf"), [], []
    for h in entropies:
        applied.append(coef if last <= target else 0.0)
        coef = min(coef + delta, high) if h <= target else max(coef - delta, low)
        last = h
        after.append(coef)
    return applied, after


def test_the_controller_follows_trls_rule_per_seed():
    from ladsim.objectives import AdaptiveEntropy
    gen = torch.Generator().manual_seed(0)
    entropies = 0.2 + 0.05 * torch.randn(2, 40, generator=gen, dtype=torch.float64)  # around the target
    control = AdaptiveEntropy(target=0.2, delta=0.01, low=0.0, high=0.05, start=0.02)
    state = control.begin(2, torch.float64, "cpu")
    applied, after = [], []
    for t in range(40):
        applied.append(control.bonus(state).coef.clone())
        control.update(state, entropies[:, t])
        after.append(state["coef"].clone())
    for s in range(2):
        want_applied, want_after = trl_rule(entropies[s].tolist(), 0.2, 0.01, 0.0, 0.05, 0.02)
        assert [float(a[s]) for a in applied] == pytest.approx(want_applied, abs=1e-15)
        assert [float(a[s]) for a in after] == pytest.approx(want_after, abs=1e-15)
    assert 0 < sum(float(a[0]) > 0 for a in applied) < 40  # both gates taken
    # mutation: the gate read off the current step's entropy instead of the last one's is another rule
    wrong = [0.02 if h <= 0.2 else 0.0 for h in entropies[0].tolist()]
    assert [float(a[0]) for a in applied] != pytest.approx(wrong, abs=1e-15)


# a target above every entropy of these worlds (log 8 arms = 2.08): the gate opens from the second step on
CONTROLLED = dict(entropy_target=3.0, entropy_coef=0.01, entropy_coef_delta=0.02, entropy_coef_max=0.2)


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("world", list(WORLDS))
def test_every_world_trains_the_adaptive_control_fused_as_autograd(world, regime):
    train, make = WORLDS[world]
    config = make(objectives=("grpo",), **CONTROLLED, **REGIMES[regime])
    ref_traj, ref_policy = train(config, "grpo", engine="autograd")
    traj, policy = train(config, "grpo", engine="fused")
    assert np.abs(policy - ref_policy).max() <= TOL
    for metric in ref_traj:
        assert np.nanmax(np.abs(traj[metric] - ref_traj[metric])) <= TOL, metric
    off = dict(entropy_target=None, entropy_coef=0.0, entropy_coef_delta=0.005, entropy_coef_max=1.0)
    plain = train(config.replace(**off), "grpo")[1]
    assert np.abs(plain - policy).max() > 1e-6  # the control reaches the training
    # a target below every entropy never opens the gate: the run is the run without a bonus
    never = train(config.replace(entropy_target=0.0), "grpo")[1]
    assert np.array_equal(never, plain)


@pytest.mark.parametrize("kwargs, match", [
    (dict(entropy_coef_delta=0.01), "--entropy-coef-delta 0.01 does nothing in this run: it acts only with "
                                    "--entropy-target"),
    (dict(entropy_target=0.2, entropy_coef=0.7, entropy_coef_max=0.5), "entropy coef must be <= 0.5"),
    (dict(entropy_target=-1.0), "entropy target must be >= 0"),
    (dict(entropy_target=0.2, entropy_coef_delta=0.0), "entropy coef delta must be > 0"),
])
def test_what_the_control_cannot_do_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BanditConfig(arms=8, steps=10, **kwargs)
