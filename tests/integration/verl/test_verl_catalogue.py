"""The catalogue's policy losses inside verl 0.9.1, against verl's own registered functions.

Each ``ladsim-<name>`` (``ladsim.integrations.verl.make_policy_loss``) equals verl's loss of the same name
(``POLICY_LOSS_REGISTRY``) on the same batch: called directly the way ``ppo_loss`` calls it (with global
normalizers of two data-parallel ranks), and through ``ppo_loss`` itself with verl's composed actor config, in
every aggregation mode, on padded batches with an empty response and ``rollout_is_weights``; loss and gradient.
GSPO's gradient differs from verl's token form by design where tokens of one response carry different weights
(``ladsim.objectives.catalogue``): that relation is tested exactly. No verl import is skipped: a missing package
fails.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from test_verl_policy_loss import MODES, TOL, actor_config, make_batch, run_ppo_loss
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY

from ladsim.integrations.verl import make_policy_loss

# TOL is the existing suite's float32 bound (rtol 2e-6, atol 1e-7); measured here (2026-12-03) <= 4.8e-7 absolute
# (gspo's gradient) and <= 8.6e-7 relative beside a 1e-7 floor (dro's loss)
# ladsim's name -> verl's
VERL_NAMES = {"cispo": "cispo", "gspo": "gspo", "sapo": "sapo", "gmpo": "geo_mean", "dppo-tv": "dppo_tv",
              "dppo-kl": "dppo_kl", "gpg": "gpg", "dro": "dro"}
# away from verl's defaults, so that each value must reach ladsim's loss from verl's config: the clip ratios (and
# DPPO's divergence thresholds), SAPO's temperatures, the truncation of DPPO, DRO's beta
EXTRA = ("actor_rollout_ref.actor.clip_ratio_low=0.1", "actor_rollout_ref.actor.clip_ratio_high=0.15",
         "actor_rollout_ref.actor.tau_pos=2.0", "actor_rollout_ref.actor.tau_neg=3.0",
         "actor_rollout_ref.actor.clip_ratio_c=2.0", "actor_rollout_ref.actor.policy_loss.dro_beta=0.3")
# one parameter of ladsim's side moved (policy_loss.params): the comparison must then fail
MOVED = {"cispo": {"eps_high": 0.4}, "gspo": {"eps_low": 0.3}, "sapo": {"tau_neg": 1.05}, "gmpo": {"eps_high": 0.3},
         "dppo-tv": {"delta_high": 0.01}, "dppo-kl": {"ratio_cap": 20.0}, "gpg": None, "dro": {"beta": 0.1}}


@functools.lru_cache(maxsize=None)
def composed(loss_mode: str, mode: str, *extra: str):
    """``actor_config`` once per set of overrides (composing verl's yaml takes a second; ppo_loss only ever
    writes the same global_batch_info into it)."""
    return actor_config(loss_mode, mode, *extra)


def configs(name: str, mode: str, *extra: str):
    """``(ladsim's, verl's)`` actor configs, composed from verl's yaml with the same overrides."""
    return composed(f"ladsim-{name}", mode, *EXTRA, *extra), composed(VERL_NAMES[name], mode, *EXTRA)


def weighted(name: str) -> bool:
    """Per-token rollout weights keep GSPO's gradient equal to verl's only on average over each response."""
    return name != "gspo"


def test_every_catalogue_loss_is_registered_with_verl():
    assert {f"ladsim-{n}" for n in (*VERL_NAMES, "luspo", "vespo")} <= set(POLICY_LOSS_REGISTRY)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(VERL_NAMES))
def test_equals_verls_own_function_called_as_ppo_loss_calls_it(name, mode):
    """make_policy_loss(name) and verl's registered function, same keyword arguments, same config (verl's own,
    its global_batch_info set as ppo_loss sets it for two data-parallel ranks)."""
    bt = make_batch(seed=11, spread=0.5)
    config = copy.deepcopy(composed(VERL_NAMES[name], mode, *EXTRA))
    config.global_batch_info.update(dp_size=2, batch_num_tokens=int(bt["mask"].sum()) * 2, global_batch_size=16,
                                    loss_scale_factor=None)
    ours_fn, verl_fn = make_policy_loss(name), POLICY_LOSS_REGISTRY[VERL_NAMES[name]]
    for weights in ((None, bt["weights"]) if weighted(name) else (None,)):
        results = []
        for fn in (ours_fn, verl_fn):
            lp = bt["lp"].clone().requires_grad_()
            loss, _ = fn(old_log_prob=bt["old"], log_prob=lp, advantages=bt["adv"], response_mask=bt["mask"],
                         loss_agg_mode=mode, config=config, rollout_is_weights=weights)
            results.append((loss.detach(), torch.autograd.grad(loss, lp)[0]))
        (ours, ours_grad), (base, base_grad) = results
        torch.testing.assert_close(ours, base, **TOL)
        torch.testing.assert_close(ours_grad, base_grad, **TOL)
        assert ours_grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(VERL_NAMES))
def test_equals_verls_loss_through_ppo_loss(name, mode):
    """The real call site: ppo_loss over four micro-batches of a mini-batch with an empty response."""
    bt = make_batch(seed=12, spread=0.5)
    ours_config, verl_config = configs(name, mode)
    ours, ours_grad, _ = run_ppo_loss(ours_config, bt, with_weights=weighted(name))
    base, base_grad, _ = run_ppo_loss(verl_config, bt, with_weights=weighted(name))
    torch.testing.assert_close(ours, base, **TOL)
    torch.testing.assert_close(ours_grad, base_grad, **TOL)
    if MOVED[name] is not None:  # the comparison can fail: one parameter of ladsim's side moved
        params = "{" + ", ".join(f"{k}: {v}" for k, v in MOVED[name].items()) + "}"
        moved_config, _ = configs(name, mode, f"+actor_rollout_ref.actor.policy_loss.params={params}")
        moved, moved_grad, _ = run_ppo_loss(moved_config, bt, with_weights=weighted(name))
        assert not (torch.allclose(moved, base, **TOL) and torch.allclose(moved_grad, base_grad, **TOL))


@pytest.mark.parametrize("mode", MODES)
def test_gspo_with_per_token_weights_gets_the_response_mean_of_verls_token_gradients(mode):
    """ladsim's GSPO reads the sequence-mean ratio, whose gradient flows through the response's mean; verl's
    token form passes each token its own. With per-token rollout weights the losses are equal and each token's
    gradient is the mean of verl's over its response (docs/objectives.md)."""
    bt = make_batch(seed=13, spread=0.5)
    ours_config, verl_config = configs("gspo", mode)
    ours, ours_grad, _ = run_ppo_loss(ours_config, bt, with_weights=True)
    base, base_grad, _ = run_ppo_loss(verl_config, bt, with_weights=True)
    torch.testing.assert_close(ours, base, **TOL)
    m = bt["mask"].float()
    response_mean = (base_grad * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1) * m
    torch.testing.assert_close(ours_grad, response_mean, **TOL)
    assert not torch.allclose(ours_grad, base_grad, **TOL)  # the weights do make the two differ


def test_sapo_and_gmpo_aggregate_as_verl_does_whatever_loss_agg_mode_says():
    """verl's sapo is always seq-mean-token-mean and its geo_mean a plain mean over responses: the loss is the
    same in every mode, ladsim's as verl's."""
    bt = make_batch(seed=14, spread=0.5)
    for name in ("sapo", "gmpo"):
        losses = [run_ppo_loss(configs(name, mode)[0], bt, with_weights=True)[0] for mode in MODES]
        for loss in losses[1:]:
            torch.testing.assert_close(loss, losses[0], **TOL)


def test_a_response_unit_loss_refuses_another_ratio():
    with pytest.raises(ValueError, match="ratio='token' contradicts"):
        make_policy_loss("gspo", ratio="token")
    with pytest.raises(Exception, match="ratio='sequence' contradicts"):
        actor_config("ladsim-gmpo", "token-mean", "+actor_rollout_ref.actor.policy_loss.ratio=sequence")
    assert actor_config("ladsim-gspo", "token-mean",  # the ratio it reads anyway
                        "+actor_rollout_ref.actor.policy_loss.ratio=sequence-mean").policy_loss.ratio == "sequence-mean"
