"""ladsim's objectives inside verl 0.9.1's real loss path (``verl.workers.utils.losses.ppo_loss``).

The actor config is composed from verl's own ``ppo_trainer.yaml`` with the launch overrides of docs/llm.md and
instantiated the way a verl worker does (``omega_conf_to_dataclass``); the batch is built the way verl's trainer
builds it (left/right padded, converted by ``left_right_2_no_padding``, the engine's global token count, split
into micro-batches by ``chunk_tensordict``); the model output is a jagged nested tensor of log-probs over each
whole sequence, as the FSDP engine returns it. No verl import is skipped: a missing package fails.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import left_right_2_no_padding

from ladsim.llm.objective_loss import objective_token_terms
from ladsim.llm.token_loss import agg_loss, lad_token_terms

MODES = ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
B, P, R = 8, 4, 6  # responses, padded prompt length, padded response length
MICRO = 2          # responses per micro-batch
LAD_PARAMS = {"eta": 0.5, "div": "hd"}


def actor_config(loss_mode: str, mode: str, *extra: str):
    """verl's actor config (a real ``FSDPActorConfig``) from verl's yaml and the docs/llm.md overrides."""
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    overrides = [
        f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}",
        f"actor_rollout_ref.actor.loss_agg_mode={mode}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={MICRO}",
        "actor_rollout_ref.rollout.n=4",
        *extra,
    ]
    if loss_mode.startswith("ladsim-"):
        overrides.append("actor_rollout_ref.actor.policy_loss._target_=ladsim.integrations.verl.PolicyLossConfig")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    return omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


def lad_config(mode: str):
    return actor_config("ladsim-lad", mode, "+actor_rollout_ref.actor.policy_loss.params={eta: 0.5, div: hd}")


def make_batch(seed: int = 0, empty_row: bool = True, spread: float = 0.3):
    """Padded tensors as verl's rollout produces them: left-padded prompts, right-padded responses."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(1, P + 1, (B,), generator=g)
    resp_len = torch.randint(1, R + 1, (B,), generator=g)
    prompt_mask = torch.arange(P)[None, :] >= (P - prompt_len)[:, None]
    resp_mask = torch.arange(R)[None, :] < resp_len[:, None]
    attention = torch.cat([prompt_mask, resp_mask], 1).long()
    response_mask = resp_mask.clone()
    if empty_row:
        response_mask[3] = False  # a response whose every token is masked out (e.g. overlong filtering)
    lp = -2.0 * torch.rand(B, R, generator=g)
    old = lp + spread * torch.randn(B, R, generator=g)
    adv = torch.randn(B, generator=g)[:, None].expand(B, R) * response_mask  # GRPO outcome advantages
    weights = 0.5 + torch.rand(B, R, generator=g)
    ids = torch.randint(3, 50, (B, P + R), generator=g) * attention
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return {"lp": lp * resp_mask, "old": old * resp_mask, "adv": adv, "mask": response_mask, "weights": weights,
            "ids": ids, "attention": attention, "position_ids": position_ids, "prompt_len": prompt_len,
            "resp_len": resp_len}


def mini_batch(bt: dict, with_weights: bool) -> TensorDict:
    """The mini-batch TensorDict as verl's actor update sees it (no-padding format, global counts assigned)."""
    fields = {"input_ids": bt["ids"], "attention_mask": bt["attention"], "position_ids": bt["position_ids"],
              "prompts": bt["ids"][:, :P], "responses": bt["ids"][:, P:],
              "response_mask": bt["mask"].long(), "old_log_probs": bt["old"], "advantages": bt["adv"]}
    if with_weights:
        fields["rollout_is_weights"] = bt["weights"]
    data = left_right_2_no_padding(TensorDict(fields, batch_size=B))
    # what FSDPEngine.forward_backward_batch and the trainer's extra_info assign (one data-parallel rank)
    tu.assign_non_tensor(data, batch_num_tokens=int(data["loss_mask"].sum()), dp_size=1, global_batch_size=B)
    return data


def model_output(lp: torch.Tensor, bt: dict, rows: range) -> dict:
    """Log-probs over each whole sequence, jagged, as the engine returns them (shifted: position ``p`` holds
    the log-prob of token ``p + 1``); the response slice of row ``i`` is ``lp[i, :resp_len]``."""
    pieces, offsets = [], [0]
    for i in rows:
        pl, rl = int(bt["prompt_len"][i]), int(bt["resp_len"][i])
        pieces += [torch.zeros(pl - 1), lp[i, :rl], torch.zeros(1)]
        offsets.append(offsets[-1] + pl + rl)
    values = torch.cat(pieces)
    nested = torch.nested.nested_tensor_from_jagged(values, offsets=torch.tensor(offsets))
    return {"log_probs": nested}


def run_ppo_loss(config, bt: dict, with_weights: bool = False, micro: int = MICRO):
    """verl's ppo_loss on each micro-batch, summed (what gradient accumulation feeds to the optimizer);
    returns (summed loss, gradient w.r.t. the padded log-probs, the metrics of each micro-batch)."""
    lp = bt["lp"].clone().requires_grad_()
    data = mini_batch(bt, with_weights)
    total, metrics = 0.0, []
    for k, part in enumerate(tu.chunk_tensordict(data, B // micro)):
        loss, m = ppo_loss(config, model_output(lp, bt, range(k * micro, (k + 1) * micro)), part)
        total = total + loss
        metrics.append(m)
    grad, = torch.autograd.grad(total, lp)
    return total.detach(), grad, metrics


def ladsim_reference(bt: dict, mode: str, with_weights: bool = False):
    """ladsim's own LAD loss of the whole mini-batch (eager core path, not the adapter) and its gradient.

    verl divides the sequence modes by ``global_batch_size``, which counts every response, so the empty row
    counts (``empty_rows="include"``); ``-norm`` divides by the padded response length ``R``.
    """
    lp = bt["lp"].clone().requires_grad_()
    terms = lad_token_terms(lp, bt["old"], bt["adv"], bt["mask"], **LAD_PARAMS)
    if with_weights:
        terms = terms * bt["weights"]
    loss = agg_loss(terms, bt["mask"], mode, empty_rows="include")
    grad, = torch.autograd.grad(loss, lp)
    return loss.detach(), grad


# float32 throughout; measured max relative differences ~1e-7 (one rounding of a different summation order)
TOL = {"rtol": 2e-6, "atol": 1e-7}


def test_the_launch_overrides_build_ladsims_config_and_register_the_losses():
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY

    config = lad_config("token-mean")
    assert type(config.policy_loss).__module__ == "ladsim.integrations.verl"
    assert config.policy_loss.params == LAD_PARAMS and config.policy_loss.loss_mode == "ladsim-lad"
    assert {"ladsim-lad", "ladsim-grpo", "ladsim-clip-cov", "ladsim-kl-cov"} <= set(POLICY_LOSS_REGISTRY)


@pytest.mark.parametrize("with_weights", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_lad_through_ppo_loss_equals_ladsims_loss_and_gradient(mode, with_weights):
    bt = make_batch()
    loss, grad, metrics = run_ppo_loss(lad_config(mode), bt, with_weights)
    ref_loss, ref_grad = ladsim_reference(bt, mode, with_weights)
    torch.testing.assert_close(loss, ref_loss, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)
    assert set(metrics[0]) >= {"actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"}


@pytest.mark.parametrize("mode", MODES)
def test_micro_batches_sum_to_the_full_batch(mode):
    bt = make_batch(seed=1)
    config = lad_config(mode)
    by_micro, grad_micro, _ = run_ppo_loss(config, bt, micro=MICRO)
    whole, grad_whole, _ = run_ppo_loss(config, bt, micro=B)
    torch.testing.assert_close(by_micro, whole, **TOL)
    torch.testing.assert_close(grad_micro, grad_whole, **TOL)


def test_without_global_batch_info_micro_batches_do_not_sum():
    """Mutation check of the test above: ignoring global_batch_info (the old adapter's bug) breaks the sum."""
    from ladsim.integrations.verl import make_policy_loss

    bt = make_batch(seed=1, empty_row=False)
    fn = make_policy_loss("lad", **LAD_PARAMS)
    config = copy.deepcopy(lad_config("token-mean"))
    parts = sum(fn(bt["old"][i:i + 2], bt["lp"][i:i + 2], bt["adv"][i:i + 2], bt["mask"][i:i + 2], "token-mean",
                   None)[0] for i in range(0, B, 2))
    whole, _, _ = run_ppo_loss(config, bt, micro=B)
    assert not torch.allclose(parts, whole, rtol=1e-3)


def test_rollout_is_weights_change_the_loss():
    bt = make_batch(seed=2)
    plain, _, _ = run_ppo_loss(lad_config("token-mean"), bt, with_weights=False)
    weighted, _, _ = run_ppo_loss(lad_config("token-mean"), bt, with_weights=True)
    assert not torch.allclose(plain, weighted, rtol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_ladsim_grpo_equals_verls_vanilla_at_the_same_call_site(mode):
    """ladsim-grpo takes verl's clip ratios from the actor config; on the same batch, through the same
    ppo_loss, it equals verl's own vanilla loss, gradient and clip metrics."""
    bt = make_batch(seed=3, spread=0.5)  # log-ratios up to ~1.5: many tokens clipped at 1 +- 0.2
    ours, ours_grad, ours_m = run_ppo_loss(actor_config("ladsim-grpo", mode), bt, with_weights=True)
    base, base_grad, base_m = run_ppo_loss(actor_config("vanilla", mode), bt, with_weights=True)
    torch.testing.assert_close(ours, base, **TOL)
    torch.testing.assert_close(ours_grad, base_grad, **TOL)
    for ours_k, base_k in zip(ours_m, base_m):
        for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
            assert ours_k[key].values[0] == pytest.approx(base_k[key].values[0], rel=1e-5, abs=1e-7)
    assert max(m["actor/pg_clipfrac"].values[0] for m in ours_m) > 0  # the clip was exercised
    # and LAD is a different loss on the same batch (the comparison can fail)
    lad, _, _ = run_ppo_loss(lad_config(mode), bt, with_weights=True)
    assert not torch.allclose(lad, base, rtol=1e-2)


def test_config_params_override_and_are_checked():
    bt = make_batch(seed=4)
    config = actor_config("ladsim-lad", "token-mean", "+actor_rollout_ref.actor.policy_loss.params={eta: 2.0}")
    loss, _, _ = run_ppo_loss(config, bt)
    lp = bt["lp"]
    terms = objective_token_terms("lad", lp, bt["old"], bt["adv"], bt["mask"], params={"eta": 2.0})
    torch.testing.assert_close(loss, agg_loss(terms, bt["mask"], "token-mean"), **TOL)
    with pytest.raises(Exception, match="unknown parameter lad.beta"):
        actor_config("ladsim-lad", "token-mean", "+actor_rollout_ref.actor.policy_loss.params={beta: 2.0}")
    with pytest.raises(Exception, match="unknown ladsim loss_mode"):
        actor_config("ladsim-nope", "token-mean")


def test_direct_call_contract():
    from ladsim.integrations.verl import make_policy_loss

    bt = make_batch(seed=5)
    fn = make_policy_loss("lad", **LAD_PARAMS)
    out = fn(bt["old"], bt["lp"], bt["adv"], bt["mask"], "seq-mean-token-mean", None, bt["weights"])
    assert isinstance(out, tuple) and len(out) == 2
    loss, metrics = out
    assert loss.dim() == 0 and set(metrics) == {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"}
    with pytest.raises(ValueError, match="unknown objective"):
        make_policy_loss("nope")
    with pytest.raises(ValueError, match="unknown parameter lad.beta"):
        make_policy_loss("lad", beta=1.0)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_ladsim_kl_cov_equals_verls_kl_cov_at_the_same_call_site(mode):
    """ladsim-kl-cov reads verl's kl_cov_ratio / ppo_kl_coef; the top-covariance picks are over each
    micro-batch's valid tokens, as verl's. (No empty row here: a micro-batch whose valid tokens all share one
    advantage has all covariances 0, and verl's torch.topk breaks that tie arbitrarily, ladsim by position.)"""
    bt = make_batch(seed=6, spread=0.5, empty_row=False)
    extra = ("actor_rollout_ref.actor.policy_loss.kl_cov_ratio=0.2",
             "actor_rollout_ref.actor.policy_loss.ppo_kl_coef=0.5")
    ours, ours_grad, _ = run_ppo_loss(actor_config("ladsim-kl-cov", mode, *extra), bt, with_weights=True)
    base, base_grad, _ = run_ppo_loss(actor_config("kl_cov", mode, *extra), bt, with_weights=True)
    torch.testing.assert_close(ours, base, **TOL)
    torch.testing.assert_close(ours_grad, base_grad, **TOL)
    plain, _, _ = run_ppo_loss(actor_config("ladsim-kl-cov", mode, extra[0],
                                            "actor_rollout_ref.actor.policy_loss.ppo_kl_coef=0.0"), bt, True)
    assert not torch.allclose(plain, base, rtol=1e-4)  # the penalty was exercised


@pytest.mark.parametrize(("objective", "match"), [
    ("lad-theory", "whole action set"), ("flowrl", "learned log Z"), ("entadv", "entropy")])
def test_objectives_verl_cannot_run_are_refused_with_the_reason(objective, match):
    from ladsim.integrations.verl import make_policy_loss

    with pytest.raises(ValueError, match=match):
        make_policy_loss(objective)
    with pytest.raises(Exception, match="unknown ladsim loss_mode"):
        actor_config(f"ladsim-{objective}", "token-mean")


# --- the one-line switch: LADPolicyLossConfig as the policy loss's _target_ ------------------------------------

ONE_LINE = "actor_rollout_ref.actor.policy_loss._target_=ladsim.integrations.verl.LADPolicyLossConfig"


def composed_actor(*overrides: str):
    """verl's actor config from its yaml with only ``overrides`` (and this suite's batch sizes): no loss_mode."""
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={MICRO}", "actor_rollout_ref.rollout.n=4",
            *overrides])
    return cfg, omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


@pytest.mark.parametrize("mode", MODES)
def test_one_line_of_config_switches_verl_to_practical_lad(mode):
    """The documented one-line change alone gives ladsim-lad with its defaults (eta 1, JS) through verl's ppo_loss;
    ladsim's reference here spells eta and div out, so a change of the defaults fails it."""
    raw, config = composed_actor(ONE_LINE, f"actor_rollout_ref.actor.loss_agg_mode={mode}")
    assert raw.actor_rollout_ref.actor.policy_loss.loss_mode == "vanilla"  # what verl's yaml passes
    assert type(config.policy_loss).__name__ == "LADPolicyLossConfig"
    assert config.policy_loss.loss_mode == "ladsim-lad" and config.policy_loss.get("loss_mode") == "ladsim-lad"
    bt = make_batch(seed=7)
    loss, grad, _ = run_ppo_loss(config, bt, with_weights=True)
    lp = bt["lp"].clone().requires_grad_()
    terms = lad_token_terms(lp, bt["old"], bt["adv"], bt["mask"], eta=1.0, div="js") * bt["weights"]
    ref = agg_loss(terms, bt["mask"], mode, empty_rows="include")
    torch.testing.assert_close(loss, ref.detach(), **TOL)
    torch.testing.assert_close(grad, torch.autograd.grad(ref, lp)[0], **TOL)
    vanilla, _, _ = run_ppo_loss(composed_actor(f"actor_rollout_ref.actor.loss_agg_mode={mode}")[1], bt, True)
    assert not torch.allclose(loss, vanilla, rtol=1e-2)  # without the line: verl's vanilla, another loss


def test_the_one_line_target_takes_params_and_refuses_another_loss_mode():
    _, config = composed_actor(ONE_LINE, "+actor_rollout_ref.actor.policy_loss.params={eta: 0.5, div: hd}")
    bt = make_batch(seed=8)
    loss, grad, _ = run_ppo_loss(config, bt)
    ref_loss, ref_grad = ladsim_reference(bt, "token-mean")  # LAD_PARAMS: eta 0.5, hd
    torch.testing.assert_close(loss, ref_loss, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)
    assert composed_actor(ONE_LINE, "actor_rollout_ref.actor.policy_loss.loss_mode=ladsim-lad")[1].policy_loss \
        .loss_mode == "ladsim-lad"
    with pytest.raises(Exception, match="loss_mode='ladsim-grpo' contradicts policy_loss._target_"):
        composed_actor(ONE_LINE, "actor_rollout_ref.actor.policy_loss.loss_mode=ladsim-grpo")
    with pytest.raises(Exception, match="unknown parameter lad.beta"):
        composed_actor(ONE_LINE, "+actor_rollout_ref.actor.policy_loss.params={beta: 2.0}")
