"""TRL 1.16's own policy losses (loss_type cispo, sapo, luspo, vespo) computed by ladsim's catalogue inside
``LadsimGRPOTrainer``, against TRL's stock ``GRPOTrainer._compute_loss`` on the same inputs: loss and gradients of
every parameter, with TRL's KL term, at the token and the sequence level. TRL's GSPO (``loss_type="grpo"`` at the
sequence level) is ladsim's ``gspo``. A tiny random Llama (tiny.py); no TRL import is skipped: a missing package
fails.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_trl_trainer import COMMON, TOL, WAYS, loss_and_grads, make_inputs, make_trainer
from tiny import reward_yes, tiny_llama, tiny_tokenizer
from trl import GRPOConfig, GRPOTrainer

from ladsim.integrations.trl import LadsimGRPOConfig, LadsimGRPOTrainer

# TOL is test_trl_trainer's float32 bound (rtol 1e-5, atol 1e-7); measured here (2026-12-03) <= 1.2e-7 absolute
# (luspo's token sums), the relative part carrying it where a gradient is large
# TRL's settings away from its defaults, so that each must reach ladsim's loss: the clip (and CISPO's cap, which
# acts: make_inputs' ratios reach e^1.5), SAPO's temperatures, VESPO's gamma weight
OPTS = dict(epsilon=0.15, epsilon_high=1.3, sapo_temperature_pos=2.0, sapo_temperature_neg=3.0, vespo_k_pos=1.5,
            vespo_lambda_pos=2.5, vespo_k_neg=2.5, vespo_lambda_neg=1.5, gradient_accumulation_steps=2)
# (loss_type, ladsim objective, importance_sampling_level): TRL's losses of their own at both levels, and TRL's GSPO
# (grpo at the sequence level; gspo at the token level is refused, below)
CASES = [(loss, loss, level) for loss in ("cispo", "sapo", "luspo", "vespo") for level in ("token", "sequence")]
CASES += [("grpo", "gspo", "sequence")]
# one of ladsim's parameters moved (objective_params): the comparison must then fail
MOVED = {"cispo": {"eps_high": -0.5}, "sapo": {"tau_pos": 1.0}, "luspo": {"eps_low": 0.05}, "vespo": {"k_pos": 1.0},
         "gspo": {"eps_low": 0.01, "eps_high": 0.01}}


def pair(tmp_path, loss_type: str, objective: str, level: str, **ours):
    """TRL's stock trainer and ladsim's on copies of one tiny model, with the same TRL settings."""
    model = tiny_llama(tiny_tokenizer())
    opts = dict(OPTS, loss_type=loss_type, importance_sampling_level=level)
    stock = make_trainer(GRPOTrainer, GRPOConfig, tmp_path / "stock", model=copy.deepcopy(model), **opts)
    mine = make_trainer(LadsimGRPOTrainer, LadsimGRPOConfig, tmp_path / "ours", model=copy.deepcopy(model),
                        objective=objective, **opts, **ours)
    return stock, mine


@pytest.mark.parametrize(("loss_type", "objective", "level"), CASES)
def test_ladsims_catalogue_equals_trls_own_loss(tmp_path, loss_type, objective, level):
    stock, ours = pair(tmp_path, loss_type, objective, level)
    inputs = make_inputs(stock)
    for beta in (0.0, 0.04):  # TRL's KL term (k3 times the ratio) rides along, aggregated as the loss
        stock.beta = ours.beta = beta
        s_loss, s_grads = loss_and_grads(stock, inputs)
        o_loss, o_grads = loss_and_grads(ours, inputs)
        torch.testing.assert_close(o_loss, s_loss, **TOL)
        for og, sg in zip(o_grads, s_grads, strict=True):
            torch.testing.assert_close(og, sg, **TOL)
    moved = make_trainer(LadsimGRPOTrainer, LadsimGRPOConfig, tmp_path / "moved", model=copy.deepcopy(ours.model),
                         objective=objective, objective_params=MOVED[objective],
                         **dict(OPTS, loss_type=loss_type, importance_sampling_level=level))
    moved.beta = stock.beta
    m_loss, m_grads = loss_and_grads(moved, inputs)
    assert not (torch.allclose(m_loss, s_loss, **TOL)
                and all(torch.allclose(mg, sg, **TOL) for mg, sg in zip(m_grads, s_grads, strict=True)))


def test_trls_config_sets_the_catalogues_parameters(tmp_path):
    _, cispo = pair(tmp_path / "c", "cispo", "cispo", "token")
    assert (cispo.ladsim_params.eps_low, cispo.ladsim_params.log_ratio_clamp) == (None, None)
    assert cispo.ladsim_params.eps_high == pytest.approx(0.3)  # TRL caps the weight at epsilon_high = 1 + 0.3
    _, sapo = pair(tmp_path / "s", "sapo", "sapo", "token")
    assert (sapo.ladsim_params.tau_pos, sapo.ladsim_params.tau_neg) == (2.0, 3.0)
    _, vespo = pair(tmp_path / "v", "vespo", "vespo", "token", objective_params={"lambda_neg": 0.5})
    assert vespo.ladsim_params == type(vespo.ladsim_params)(k_pos=1.5, lambda_pos=2.5, k_neg=2.5, lambda_neg=0.5)


@pytest.mark.parametrize("way", WAYS)
def test_the_plain_config_and_the_ladsim_config_give_the_same_catalogue_parameters(tmp_path, way):
    trainer = make_trainer(LadsimGRPOTrainer, way, tmp_path, objective="cispo", loss_type="cispo", **OPTS)
    args = LadsimGRPOConfig(output_dir=str(tmp_path), **COMMON, objective="cispo", loss_type="cispo", **OPTS)
    assert trainer.ladsim_params == args.objective_parameters()


@pytest.mark.parametrize(("settings", "match"), [
    ({"objective": "lad", "loss_type": "vespo"}, "loss_type 'vespo' is a loss of its own"),
    ({"objective": "grpo", "loss_type": "cispo"}, "pass objective='cispo'"),
    ({"objective": "gspo", "loss_type": "grpo"}, "importance_sampling_level='sequence', got 'token'"),
    ({"objective": "gmpo", "loss_type": "grpo"}, "importance_sampling_level='sequence'"),
    ({"objective": "vespo", "loss_type": "vespo", "use_vllm": True}, "vllm_importance_sampling_correction"),
])
@pytest.mark.parametrize("way", WAYS)
def test_what_the_catalogue_cannot_honour_is_refused_before_trl_loads_the_model(tmp_path, settings, match, way):
    """``model=object()``: had TRL been reached first, it would have failed on the model instead."""
    settings = dict(settings)
    ladsim = {k: settings.pop(k) for k in ("objective",)}
    args = way(output_dir=str(tmp_path), **COMMON, **settings, **(ladsim if way is LadsimGRPOConfig else {}))
    with pytest.raises(ValueError, match=match):
        LadsimGRPOTrainer(model=object(), reward_funcs=[reward_yes], args=args,
                          **({} if way is LadsimGRPOConfig else ladsim))
