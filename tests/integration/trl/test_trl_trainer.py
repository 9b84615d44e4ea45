"""ladsim's objectives inside TRL 1.16's GRPOTrainer (ladsim.integrations.trl), against the installed TRL.

Both ways of using it are tested: the one-class swap (``LadsimGRPOTrainer`` with a plain ``GRPOConfig``,
ladsim's settings as trainer keywords, or none) and ``LadsimGRPOConfig``. A tiny random Llama and a word-level
tokenizer are built offline (tiny.py). No TRL import is skipped: a missing package fails.
"""

from __future__ import annotations

import copy
import functools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import prompts, reward_yes, tiny_llama, tiny_tokenizer
from transformers import TrainingArguments
from trl import GRPOConfig, GRPOTrainer

from ladsim.integrations.trl import DEFAULTS, LadsimGRPOConfig, LadsimGRPOTrainer
from ladsim.llm import lad_token_loss
from ladsim.llm.objective_loss import make_token_params

ROOT = Path(__file__).resolve().parents[3]
COMMON = dict(per_device_train_batch_size=4, num_generations=4, max_completion_length=6, logging_steps=1,
              use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=0)


# the two ways: ladsim's settings as fields of a LadsimGRPOConfig, or as keywords of the trainer with a GRPOConfig
WAYS = [LadsimGRPOConfig, GRPOConfig]


def make_trainer(cls, config_cls, tmp_path, model=None, **kwargs):
    """A trainer on the tiny model; with a plain GRPOConfig, ladsim's settings in ``kwargs`` go to the trainer."""
    settings = {} if config_cls is LadsimGRPOConfig else {k: kwargs.pop(k) for k in DEFAULTS if k in kwargs}
    tok = tiny_tokenizer()
    args = config_cls(output_dir=str(tmp_path), **{**COMMON, **kwargs})
    return cls(model=model or tiny_llama(tok), reward_funcs=[reward_yes], args=args, train_dataset=prompts(),
               processing_class=tok, **settings)


# --- training ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("way", WAYS)
def test_lad_trains_three_steps_with_gradient_accumulation(tmp_path, way):
    trainer = make_trainer(LadsimGRPOTrainer, way, tmp_path, objective="lad", eta=0.5, div="js",
                           gradient_accumulation_steps=2, max_steps=3, learning_rate=1e-2, loss_type="grpo")
    assert type(trainer.args) is way and trainer.ladsim_params == make_token_params("lad", {"eta": 0.5})
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    calls = []
    compute = trainer._compute_loss

    def spy(model, inputs):
        loss = compute(model, inputs)
        calls.append((loss.item(), trainer._metrics["train"]["ladsim/loss"][-1],
                      trainer.current_gradient_accumulation_steps))
        return loss

    trainer._compute_loss = spy
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert len(steps) == 3
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["ladsim/loss"]) for h in steps)
    assert all("entropy" in h and "ladsim/approx_kl" in h for h in steps)  # ladsim's metrics in TRL's logs
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "no parameter changed"
    assert len(calls) == 6  # 3 optimizer steps x 2 accumulated micro-batches
    for returned, unscaled, ga in calls:  # the loss handed to backward is the micro-batch loss / GA
        assert ga == 2
        assert returned == pytest.approx(unscaled / 2, rel=1e-6)


# --- ladsim's GRPO equals TRL's stock loss on the same batch ----------------------------------------------

def make_inputs(trainer, seed=0):
    """A batch as TRL's _generate_and_score_completions hands it to _compute_loss, with an empty row, a tool
    mask and old log-probs away from the current ones (so the PPO clip is active)."""
    g = torch.Generator().manual_seed(seed)
    b, p, t = 4, 3, 5
    prompt_ids = torch.randint(3, 13, (b, p), generator=g)
    completion_ids = torch.randint(3, 13, (b, t), generator=g)
    completion_mask = (torch.arange(t)[None, :] < torch.tensor([5, 3, 0, 2])[:, None]).long()
    tool_mask = torch.ones(b, t, dtype=torch.long)
    tool_mask[0, 1:3] = 0
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([prompt_ids, completion_ids], 1),
            torch.cat([torch.ones(b, p, dtype=torch.long), completion_mask], 1), t)
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones(b, p, dtype=torch.long),
              "completion_ids": completion_ids, "completion_mask": completion_mask, "tool_mask": tool_mask,
              "advantages": torch.randn(b, generator=g),
              "old_per_token_logps": logps + 0.5 * torch.randn(b, t, generator=g),
              "ref_per_token_logps": logps + 0.3 * torch.randn(b, t, generator=g),
              "num_items_in_batch": torch.tensor(40.0)}
    return inputs


def loss_and_grads(trainer, inputs):
    trainer.model.train()
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 2
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


# float32; measured differences ~1e-8 absolute (different summation order)
TOL = {"rtol": 1e-5, "atol": 1e-7}


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_ladsim_grpo_equals_trls_loss(tmp_path, loss_type, level):
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    opts = dict(loss_type=loss_type, importance_sampling_level=level, epsilon=0.2, epsilon_high=0.28,
                gradient_accumulation_steps=2)
    stock = make_trainer(GRPOTrainer, GRPOConfig, tmp_path / "stock", model=copy.deepcopy(model), **opts)
    ours = make_trainer(LadsimGRPOTrainer, LadsimGRPOConfig, tmp_path / "ours", model=copy.deepcopy(model),
                        objective="grpo", **opts)
    inputs = make_inputs(stock)
    for beta in (0.0, 0.04):  # TRL's KL term (k3, times the ratio: use_bias_correction_kl) rides along
        stock.beta = ours.beta = beta
        s_loss, s_grads = loss_and_grads(stock, inputs)
        o_loss, o_grads = loss_and_grads(ours, inputs)
        torch.testing.assert_close(o_loss, s_loss, **TOL)
        for og, sg in zip(o_grads, s_grads, strict=True):
            torch.testing.assert_close(og, sg, **TOL)
    assert ours._metrics["train"]["entropy"][-1] == pytest.approx(stock._metrics["train"]["entropy"][-1], rel=1e-6)
    # the comparison can fail: LAD on the same batch is another loss
    lad = make_trainer(LadsimGRPOTrainer, LadsimGRPOConfig, tmp_path / "lad", model=copy.deepcopy(model),
                       objective="lad", **opts)
    lad.beta = 0.04
    assert not torch.allclose(loss_and_grads(lad, inputs)[0], s_loss, rtol=1e-3)


@pytest.mark.parametrize(("loss_type", "objective"), [("grpo", "grpo"), ("dapo", "grpo"), ("luspo", "luspo")])
def test_trls_two_sided_clip_delta_is_the_objectives_delta(tmp_path, loss_type, objective):
    """TRL's ``delta`` (INTELLECT-2) reaches ladsim's ``delta`` parameter: equal to the stock loss with it, and
    not equal without it. The token ratios of make_inputs reach e^1.5, so a cap at 1.3 above 1 + 0.28 acts;
    LUSPO's sequence ratios (geometric means) reach only 1.079 on a negative advantage, so there the clip is
    0.02 and the cap 1.05."""
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    level = "sequence" if objective == "luspo" else "token"
    eps, eps_high, delta = (0.02, 0.02, 1.05) if objective == "luspo" else (0.2, 0.28, 1.3)
    opts = dict(loss_type=loss_type, importance_sampling_level=level, epsilon=eps, epsilon_high=eps_high, delta=delta)
    stock = make_trainer(GRPOTrainer, GRPOConfig, tmp_path / "stock", model=copy.deepcopy(model), **opts)
    ours = make_trainer(LadsimGRPOTrainer, GRPOConfig, tmp_path / "ours", model=copy.deepcopy(model),
                        objective=objective, **opts)
    assert ours.ladsim_params.delta == delta
    inputs = make_inputs(stock)
    s_loss, s_grads = loss_and_grads(stock, inputs)
    o_loss, o_grads = loss_and_grads(ours, inputs)
    torch.testing.assert_close(o_loss, s_loss, **TOL)
    for og, sg in zip(o_grads, s_grads, strict=True):
        torch.testing.assert_close(og, sg, **TOL)
    opts.pop("delta")
    without = make_trainer(LadsimGRPOTrainer, GRPOConfig, tmp_path / "without", model=copy.deepcopy(model),
                           objective=objective, **opts)
    assert not torch.allclose(loss_and_grads(without, inputs)[0], s_loss, **TOL)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("objective", ["entadv", "clip-cov", "kl-cov"])
def test_every_runnable_objective_gives_a_finite_loss_and_gradient(tmp_path, objective, way):
    trainer = make_trainer(LadsimGRPOTrainer, way, tmp_path, objective=objective,
                           objective_params='{"ratio": 0.2}' if objective.endswith("cov") else None)
    loss, grads = loss_and_grads(trainer, make_inputs(trainer))
    assert math.isfinite(loss.item()) and grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_tool_mask_is_honoured(tmp_path):
    trainer = make_trainer(LadsimGRPOTrainer, LadsimGRPOConfig, tmp_path, objective="lad", loss_type="bnpo")
    inputs = make_inputs(trainer)
    with_tool, _ = loss_and_grads(trainer, inputs)
    without = dict(inputs)
    del without["tool_mask"]
    assert not torch.allclose(with_tool, loss_and_grads(trainer, without)[0], rtol=1e-4)


# --- configuration errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"objective": "nope"}, "unknown objective"),
    ({"objective": "grpo", "eta": 0.5}, "has no parameter 'eta'"),
    ({"objective": "lad", "objective_params": '{"beta": 1}'}, "unknown parameter lad.beta"),
    ({"objective": "lad", "eta": 0.0}, "eta"),
    ({"objective": "flowrl"}, "learned log Z"),
    ({"objective": "lad-theory"}, "whole action set"),
])
def test_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LadsimGRPOConfig(output_dir=str(tmp_path), **{**COMMON, **kwargs})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loss_type": "sapo"}, "loss of its own"),
    ({"delta": 2.0}, "delta"),
    ({"entropy_coef": 0.01}, "entropy_coef"),
])
@pytest.mark.parametrize("way", WAYS)
def test_refused_trl_options(tmp_path, kwargs, match, way):
    with pytest.raises(ValueError, match=match):
        make_trainer(LadsimGRPOTrainer, way, tmp_path, objective="lad", **kwargs)


def test_objective_params_json_from_the_command_line(tmp_path):
    args = LadsimGRPOConfig(output_dir=str(tmp_path), objective="grpo",
                            objective_params='{"eps_low": 0.1}', **COMMON)
    assert args.objective_parameters().eps_low == 0.1 and args.objective_parameters().eps_high == 0.2


# --- the one-class swap: a plain GRPOConfig, ladsim's settings as trainer keywords (or the defaults) ------------

def lad_reference(trainer, inputs, **lad):
    """ladsim's own practical LAD loss (``lad_token_loss``, not the adapter) of ``inputs`` under ``bnpo`` (token
    mean) divided by the accumulation steps (2), as ``_compute_loss`` returns it in training."""
    mask = inputs["completion_mask"] * inputs["tool_mask"]
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1), inputs["completion_ids"].size(1))
    loss = lad_token_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], mask,
                          loss_agg_mode="token-mean", **lad)
    return loss / 2


def test_the_defaults_are_practical_lad_with_eta_1_and_js(tmp_path):
    model = tiny_llama(tiny_tokenizer())
    plain = make_trainer(LadsimGRPOTrainer, GRPOConfig, tmp_path / "plain", model=copy.deepcopy(model),
                         loss_type="bnpo")
    inputs = make_inputs(plain)
    loss, _ = loss_and_grads(plain, inputs)
    torch.testing.assert_close(loss, lad_reference(plain, inputs, eta=1.0, div="js"), **TOL)
    assert plain.ladsim_objective == "lad" and plain.ladsim_params == make_token_params("lad", {"eta": 1.0})
    # the keywords reach the loss: another eta and generator give ladsim's loss for those (and not the default's)
    tuned = make_trainer(LadsimGRPOTrainer, GRPOConfig, tmp_path / "tuned", model=copy.deepcopy(model),
                         loss_type="bnpo", eta=0.5, div="hd")
    tuned_loss, _ = loss_and_grads(tuned, inputs)
    torch.testing.assert_close(tuned_loss, lad_reference(tuned, inputs, eta=0.5, div="hd"), **TOL)
    assert not torch.allclose(tuned_loss, loss, rtol=1e-3)


@pytest.mark.parametrize("settings", [{}, {"eta": 0.5, "div": "hd"}, {"objective": "grpo"},
                                      {"objective": "kl-cov", "objective_params": '{"ratio": 0.2}'}])
def test_the_plain_config_equals_the_ladsim_config(tmp_path, settings):
    """The same settings as trainer keywords (with a GRPOConfig) or as LadsimGRPOConfig fields: the same parameters,
    loss and gradient (TRL's clip epsilons reach clipped objectives both ways; beta rides along)."""
    model = tiny_llama(tiny_tokenizer())
    opts = dict(loss_type="grpo", epsilon=0.1, epsilon_high=0.28, gradient_accumulation_steps=2, **settings)
    plain = make_trainer(LadsimGRPOTrainer, GRPOConfig, tmp_path / "plain", model=copy.deepcopy(model), **opts)
    config = make_trainer(LadsimGRPOTrainer, LadsimGRPOConfig, tmp_path / "config", model=copy.deepcopy(model),
                          **opts)
    assert type(plain.args) is GRPOConfig
    assert plain.ladsim_params == config.ladsim_params == config.args.objective_parameters()
    inputs = make_inputs(plain)
    for beta in (0.0, 0.04):
        plain.beta = config.beta = beta
        p_loss, p_grads = loss_and_grads(plain, inputs)
        c_loss, c_grads = loss_and_grads(config, inputs)
        torch.testing.assert_close(p_loss, c_loss, **TOL)
        for pg, cg in zip(p_grads, c_grads, strict=True):
            torch.testing.assert_close(pg, cg, **TOL)


def test_args_none_takes_trls_default_config_and_ladsims_defaults(tmp_path, monkeypatch):
    import trl.trainer.grpo_trainer as grpo_module

    monkeypatch.chdir(tmp_path)  # TRL's default output_dir is relative
    # TRL's default GRPOConfig asks for bf16, which this CPU cannot run: the same defaults, on CPU
    monkeypatch.setattr(grpo_module, "GRPOConfig", functools.partial(GRPOConfig, use_cpu=True, bf16=False,
                                                                     report_to="none"))
    tok = tiny_tokenizer()
    trainer = LadsimGRPOTrainer(model=tiny_llama(tok), reward_funcs=[reward_yes], train_dataset=prompts(),
                                processing_class=tok)
    assert type(trainer.args) is GRPOConfig and trainer.args.output_dir.endswith("-GRPO")
    assert trainer.ladsim_objective == "lad" and trainer.ladsim_params == make_token_params("lad")
    positional = LadsimGRPOTrainer(tiny_llama(tok), [reward_yes], None, prompts(), processing_class=tok,
                                   objective="grpo")  # TRL's positional order, and a ladsim keyword
    assert positional.ladsim_objective == "grpo" and positional.ladsim_params.eps_low == 0.2  # TRL's epsilon


@pytest.mark.parametrize(("config", "settings", "match"), [
    ({"eta": 0.5}, {"eta": 0.7}, r"eta=0.7 contradicts args.eta=0.5"),
    ({"objective": "lad"}, {"objective": "grpo"}, r"objective='grpo' contradicts args.objective='lad'"),
    ({}, {"div": "kl"}, r"div='kl' contradicts args.div='js'"),  # a config's default is the config's setting
    ({"objective": "kl-cov", "objective_params": {"ratio": 0.2}}, {"objective_params": '{"ratio": 0.1}'},
     r"objective_params='\{\"ratio\": 0.1\}' contradicts args.objective_params"),
])
def test_a_ladsim_config_with_contradicting_keywords_is_refused(tmp_path, config, settings, match):
    args = LadsimGRPOConfig(output_dir=str(tmp_path), **COMMON, **config)
    with pytest.raises(ValueError, match=match):
        LadsimGRPOTrainer(model=object(), reward_funcs=[reward_yes], args=args, **settings)


def test_a_ladsim_config_with_agreeing_keywords_is_accepted(tmp_path):
    tok = tiny_tokenizer()
    args = LadsimGRPOConfig(output_dir=str(tmp_path), objective="kl-cov", objective_params={"ratio": 0.2},
                            **COMMON)
    trainer = LadsimGRPOTrainer(model=tiny_llama(tok), reward_funcs=[reward_yes], args=args,
                                train_dataset=prompts(), processing_class=tok,
                                objective="kl-cov", objective_params='{"ratio": 0.2}')
    assert trainer.ladsim_params == args.objective_parameters() and trainer.ladsim_params.ratio == 0.2


@pytest.mark.parametrize(("settings", "error", "match"), [
    ({"objective": "nope"}, ValueError, "unknown objective"),
    ({"objective": "grpo", "eta": 0.5}, ValueError, "has no parameter 'eta'"),
    ({"objective_params": {"beta": 1}}, ValueError, "unknown parameter lad.beta"),
    ({"eta": 0.0}, ValueError, "eta must be > 0"),
    ({"eta": 0.5, "objective_params": {"eta": 0.3}}, ValueError, r"eta=0.5 contradicts objective_params\['eta'\]"),
    ({"objective": "flowrl"}, ValueError, "learned log Z"),
    ({"objective_params": [0.2]}, TypeError, "objective_params must be a dict"),
    ({"objective_params": "{ratio: 0.2}"}, ValueError, "objective_params is not valid JSON"),
])
def test_bad_keywords_are_refused_before_trl_loads_the_model(tmp_path, settings, error, match):
    """``model=object()``: had TRL been reached first, it would have failed on the model instead."""
    args = GRPOConfig(output_dir=str(tmp_path), **COMMON)
    with pytest.raises(error, match=match):
        LadsimGRPOTrainer(model=object(), reward_funcs=[reward_yes], args=args, **settings)


def test_args_of_another_type_are_refused(tmp_path):
    with pytest.raises(TypeError, match="args must be a GRPOConfig"):
        LadsimGRPOTrainer(model=object(), reward_funcs=[reward_yes],
                          args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))


def test_eta_contradicted_in_a_ladsim_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"eta=0.5 contradicts objective_params\['eta'\]"):
        LadsimGRPOConfig(output_dir=str(tmp_path), eta=0.5, objective_params={"eta": 0.3}, **COMMON)


# --- the example -------------------------------------------------------------------------------------------

def test_example_runs_as_written(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "trl_lad.py"), "--output-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained 3 steps with LAD (eta=0.5, div=js)" in out.stdout  # the trainer keywords reached ladsim
