"""The catalogue of policy losses (ladsim.objectives.catalogue): each against an independent numpy formula, value and
gradient (so every stop-gradient is checked too); each hand gradient against autograd on exact, masked and sampled
batches; each through the bandit's and the token tree's fused engines against their autograd references; the token
forms (GSPO's sequence-mean ratio beside verl's straight-through one, GMPO's token clip, VESPO's sequence weight);
and the listing of ``ladsim objectives``. The parity with verl and TRL themselves is in tests/integration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ladsim.bandit.config import BanditConfig
from ladsim.bandit.fused import objective_gradient
from ladsim.bandit.trainer import train_objective
from ladsim.llm.objective_loss import objective_token_loss
from ladsim.llm.token_loss import agg_loss
from ladsim.objectives import (Batch, EntropyBonus, KLPenalty, get_objective, list_objectives, make_params,
                               objective_terms, register_gradient)
from ladsim.objectives.catalogue import token_inputs, token_ratio
from ladsim.streams import SeedStreams
from ladsim.tree.config import TreeConfig
from ladsim.tree.trainer import train_objective as train_tree_objective

CATALOGUE = ("cispo", "gspo", "sapo", "gmpo", "dppo-tv", "dppo-kl", "gpg", "dro", "luspo", "vespo")
# parameters under which every clip, gate, cap and trust region acts on some entries of the batches below and
# not on others (asserted in the formula test)
ACTIVE = {
    "cispo": {"eps_low": 0.3, "eps_high": 0.4, "log_ratio_clamp": 1.5},
    "gspo": {"eps_low": 0.2, "eps_high": 0.3, "log_ratio_max": 1.0},
    "sapo": {"tau_pos": 2.0, "tau_neg": 3.0, "log_ratio_clamp": 1.5},
    "gmpo": {"eps_low": 0.3, "eps_high": 0.4},
    "dppo-tv": {"delta_low": 0.01, "delta_high": 0.02, "ratio_cap": 2.0, "log_ratio_clamp": 1.5},
    "dppo-kl": {"delta_low": 0.002, "delta_high": 0.004, "ratio_cap": 2.0, "log_ratio_clamp": 1.5},
    "gpg": {},
    "dro": {"beta": 0.3},
    "luspo": {"eps_low": 0.2, "eps_high": 0.3, "delta": 1.5},
    "vespo": {"k_pos": 1.5, "lambda_pos": 2.5, "k_neg": 2.5, "lambda_neg": 1.5},
}


def inputs(seed: int = 0, rows: int = 3, n: int = 40, spread: float = 1.0):
    """Random ``logp``, ``logp_old`` (log-softmax rows: a bandit's arms), advantages; float64 numpy."""
    g = np.random.default_rng(seed)

    def log_softmax(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lp = log_softmax(g.normal(0, spread, (rows, n)))
    return lp, log_softmax(lp + g.normal(0, spread, (rows, n))), g.normal(0, 1, (rows, n))


def ppo_branch(a, s, lo, hi, delta=None):
    """PPO-clip of ``s``: ``(value, d value / d log s, clipped)`` (``max`` takes the larger; inside the band both
    branches are equal and their gradients too); ``delta``: TRL's two-sided clip, the unclipped ``s`` capped."""
    bounded = np.clip(s, -np.inf if lo is None else lo, np.inf if hi is None else hi)
    capped = s if delta is None else np.minimum(s, delta)
    value = np.maximum(-a * capped, -a * bounded)
    clipped = -a * bounded > -a * capped
    stopped = clipped | (capped < s)
    return value, np.where(stopped, 0.0, -a * s), stopped


def reference(name: str, lp, lp_old, a, p: dict):
    """``(terms, dterms/dlogp, where a clip/gate/mask acts or None)`` from the formulas of docs/objectives.md."""
    d = lp - lp_old
    c = p.get("log_ratio_clamp")
    inside = np.ones_like(d, bool) if c is None else np.abs(d) <= c
    r = np.exp(d if c is None else np.clip(d, -c, c))
    if name == "cispo":
        w = np.clip(r, 1 - p["eps_low"], 1 + p["eps_high"])
        return -w * a * lp, -w * a, (w != r)
    if name in ("gspo", "luspo"):
        cap = p.get("log_ratio_max")
        s = np.exp(d if cap is None else np.minimum(d, cap))
        value, grad, clipped = ppo_branch(a, s, 1 - p["eps_low"], 1 + p["eps_high"], p.get("delta"))
        return value, grad if cap is None else np.where(d <= cap, grad, 0.0), clipped
    if name == "sapo":
        tau = np.where(a > 0, p["tau_pos"], p["tau_neg"])
        sig = 1 / (1 + np.exp(-tau * (r - 1)))
        return -a * 4 / tau * sig, np.where(inside, -4 * a * sig * (1 - sig) * r, 0.0), ~inside
    if name == "gmpo":
        up, down = d > p["eps_high"], d < -p["eps_low"]
        cd = np.where((a > 0) & up, p["eps_high"], np.where((a < 0) & down, -p["eps_low"], d))
        clipped = ((a > 0) & up) | ((a < 0) & down)
        return -a * np.exp(cd), np.where(clipped, 0.0, -a * np.exp(cd)), clipped
    if name in ("dppo-tv", "dppo-kl"):
        pr, po = np.exp(lp), np.exp(lp_old)
        if name == "dppo-tv":
            valid = np.where(a > 0, pr - po <= p["delta_high"], po - pr <= p["delta_low"])
        else:
            kl = po * (lp_old - lp) + (1 - po) * np.log((1 - po + 1e-8) / (1 - pr + 1e-8))
            valid = np.where(a > 0, (kl <= p["delta_high"]) | (pr <= po), (kl <= p["delta_low"]) | (pr >= po))
        w = np.minimum(r, p["ratio_cap"]) * valid
        return -a * w * lp, -a * w, ~valid
    if name == "gpg":
        return -a * lp, -a, None
    if name == "dro":
        return -(a * lp - p["beta"] / 2 * d**2), -a + p["beta"] * d, None
    if name == "vespo":
        lw = np.clip(d, np.log(1e-8), 20.0)
        k = np.where(a >= 0, p["k_pos"], p["k_neg"])
        lam = np.where(a >= 0, p["lambda_pos"], p["lambda_neg"])
        phi = np.exp(lam + k * lw - lam * np.exp(lw))
        return -phi * a * lp, -phi * a, None
    raise AssertionError(name)


def t(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def test_the_catalogue_is_registered_with_valid_defaults_formula_and_source():
    assert list_objectives()[-len(CATALOGUE):] == list(CATALOGUE)  # after the existing ones, in this order
    for name in CATALOGUE:
        obj = get_objective(name)
        assert obj.formula and obj.reference and obj.summary and obj.grad is not None
        make_params(name)
    assert {n for n in CATALOGUE if get_objective(n).unit == "response"} == {"gspo", "gmpo"}


@pytest.mark.parametrize("params_set", ["defaults", "active"])
@pytest.mark.parametrize("name", CATALOGUE)
def test_terms_and_their_gradient_match_the_formula(name, params_set):
    lp, lp_old, a = inputs(spread=1.0)
    params = make_params(name, ACTIVE[name] if params_set == "active" else {})
    x = t(lp, grad=True)
    got = objective_terms(name, Batch(x, t(lp_old), t(a)), params)
    (grad,) = torch.autograd.grad(got.sum(), x)
    want, want_grad, acting = reference(name, lp, lp_old, a, dataclasses.asdict(params))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-14, atol=0)  # measured <= 1.1e-15 relative
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-14, atol=0)
    if params_set == "active" and acting is not None:  # the branch is exercised both ways
        assert acting.any() and not acting.all(), name


@pytest.mark.parametrize(("name", "change"), [("cispo", {"eps_high": 0.5}), ("sapo", {"tau_pos": 3.0, "tau_neg": 2.0}),
                                              ("gmpo", {"eps_low": 0.4, "eps_high": 0.3})])
def test_the_formula_check_sees_a_changed_parameter(name, change):
    # mutation check of the test above, one per family (REINFORCE weight, soft gate, response-level clip)
    lp, lp_old, a = inputs()
    got = objective_terms(name, Batch(t(lp), t(lp_old), t(a)), make_params(name, {**ACTIVE[name], **change}))
    want = reference(name, lp, lp_old, a, dataclasses.asdict(make_params(name, ACTIVE[name])))[0]
    assert not np.allclose(got.numpy(), want, rtol=1e-6)


# --- hand gradients against autograd (tests/test_fused.py's check, with every clip acting) ---------------------

def random_batch(mode: str, seed: int = 0, S: int = 4, n: int = 9) -> tuple[Batch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(torch.randn(S, n, generator=g, dtype=torch.float64), -1)
    logp_old = torch.log_softmax(logp + 0.6 * torch.randn(S, n, generator=g, dtype=torch.float64), -1)
    adv = torch.randn(S, n, generator=g, dtype=torch.float64)
    ref = torch.log_softmax(torch.randn(n, generator=g, dtype=torch.float64), -1)
    weights = logp_old.exp() if mode != "sampled" else None
    mask = (torch.arange(n) % 4 != 1).expand(S, n) if mode == "exact-masked" else None
    entropy = -(logp.exp() * logp).sum(-1, keepdim=True)
    return Batch(logp, logp_old, adv, weights=weights, mask=mask, logp_ref=ref, entropy=entropy,
                 generator=SeedStreams(3, S)), logp


def gradients(obj, batch: Batch, params, logp: torch.Tensor):
    """``(hand, autograd)`` gradients of the objective's reduced loss plus a KL penalty and an entropy bonus."""
    kl, bonus = KLPenalty(0.1, "k3"), EntropyBonus(0.05)
    hand, _ = objective_gradient(obj, batch, params, {}, logp, kl=kl, bonus=bonus)
    auto, _ = objective_gradient(dataclasses.replace(obj, grad=None, exact_grad=None), batch, params, {}, logp,
                                 kl=kl, bonus=bonus)
    return hand, auto


@pytest.mark.parametrize("mode", ["exact", "exact-masked", "sampled"])
@pytest.mark.parametrize("name", CATALOGUE)
def test_hand_gradient_equals_autograd(name, mode):
    batch, logp = random_batch(mode)
    hand, auto = gradients(get_objective(name), batch, make_params(name, ACTIVE[name]), logp)
    torch.testing.assert_close(hand, auto, atol=2e-15, rtol=0)  # measured <= 4.4e-16


@pytest.mark.parametrize("name", ["cispo", "sapo", "gspo"])
def test_the_gradient_check_sees_a_wrong_hand_gradient(name):
    # mutation check, one per family: a hand gradient off by 1e-3 fails the comparison above
    obj = get_objective(name)
    wrong = dataclasses.replace(obj, grad=lambda b, p, s: (1.001 * obj.grad(b, p, s)[0], {}))
    batch, logp = random_batch("exact")
    hand, auto = gradients(wrong, batch, make_params(name, ACTIVE[name]), logp)
    assert not torch.allclose(hand, auto, atol=2e-15, rtol=0)


# --- the engines: fused against the autograd reference, in the bandit and in the token tree ---------------------

# Measured (2026-12-03): <= 2.2e-15 over the final policies and every logged metric, except sapo with tau 2 and 3
# in the sampled regime, 1.1e-12 (distinct@16; the policies 3.3e-13): Adam's 1/sqrt(v) amplifies the rounding
# of the gradient (4 sigma (1 - sigma) r against autograd's (4/tau) ... tau) over 80 steps. Bound: 5e-12.
TOL = 5e-12
BANDIT_REGIMES = {
    "exact-refresh": dict(mode="exact", refresh_every=3, init_std=0.3),
    "sampled-refresh-epochs": dict(mode="sampled", group_size=5, refresh_every=4, epochs=2, init_std=0.3),
    "modifiers-exact": dict(mode="exact", kl="k2", kl_beta=0.05, entropy_coef=0.02, init_std=0.3),
}
TREE_REGIMES = {
    "exact-seq-mean-token-mean": dict(mode="exact", refresh_every=3, init_std=0.3, agg="seq-mean-token-mean"),
    "sampled-sequence-mean": dict(mode="sampled", group_size=5, refresh_every=4, epochs=2, ratio="sequence-mean",
                                  init_std=0.3),
    "modifiers-exact-sequence": dict(mode="exact", kl="k2", kl_beta=0.05, entropy_coef=0.02, init_std=0.3,
                                     ratio="sequence", agg="seq-mean-token-sum"),
}


def assert_same_run(train, config, name: str, tol: float = TOL) -> None:
    ref_traj, ref_policy = train(config, name, engine="autograd")
    traj, policy = train(config, name, engine="fused")
    assert np.abs(policy - ref_policy).max() <= tol
    assert ref_traj.keys() == traj.keys()
    for metric in ref_traj:
        assert np.nanmax(np.abs(traj[metric] - ref_traj[metric])) <= tol, metric


def bandit_config(name: str, **regime) -> BanditConfig:
    return BanditConfig(arms=10, reward="mixture:2/1/1,7/1/0.8", steps=80, seeds=3, log_every=20, objectives=(name,),
                        params={name: ACTIVE[name]}, **regime)


def tree_config(name: str, **regime) -> TreeConfig:
    if get_objective(name).unit == "response":  # one entry per response: the token ratio and (without the
        regime.pop("ratio", None)                 # per-token modifiers) the aggregation do not reach it
        if "kl" not in regime and "entropy_coef" not in regime:
            regime.pop("agg", None)
    return TreeConfig(vocab=3, length=3, reward="answers:1,21;partial=0.3", steps=80, seeds=3, log_every=20,
                      objectives=(name,), params={name: ACTIVE[name]}, **regime)


@pytest.mark.parametrize("regime", list(BANDIT_REGIMES))
@pytest.mark.parametrize("name", CATALOGUE)
def test_the_bandit_fused_engine_equals_autograd(name, regime):
    assert_same_run(train_objective, bandit_config(name, **BANDIT_REGIMES[regime]), name)


@pytest.mark.parametrize("regime", list(TREE_REGIMES))
@pytest.mark.parametrize("name", CATALOGUE)
def test_the_tree_fused_engine_equals_autograd(name, regime):
    assert_same_run(train_tree_objective, tree_config(name, **TREE_REGIMES[regime]), name)


@pytest.mark.parametrize("world", ["bandit", "tree"])
@pytest.mark.parametrize("name", ["cispo", "sapo", "gspo"])
def test_the_engine_check_sees_a_wrong_hand_gradient(name, world):
    # mutation check of the two tests above, one per family
    obj = get_objective(name)
    right = obj.grad
    try:
        register_gradient(name)(lambda b, p, s: (1.001 * right(b, p, s)[0], {}))
        with pytest.raises(AssertionError):
            if world == "bandit":
                assert_same_run(train_objective, bandit_config(name, mode="exact", init_std=0.3), name)
            else:
                assert_same_run(train_tree_objective, tree_config(name, mode="exact", init_std=0.3), name)
    finally:
        register_gradient(name)(right)


# --- token batches (B, T): the forms the verl and TRL adapters use ----------------------------------------------

def token_batch(seed: int = 0, B: int = 5, T: int = 6, outcome: bool = True):
    """Padded float32 token tensors with an empty row: ``(log_prob, old, advantages, mask)``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None, :] < torch.randint(1, T + 1, (B,), generator=g)[:, None]
    mask[2] = False
    lp = -2.0 * torch.rand(B, T, generator=g)
    old = lp + 0.4 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)[:, None].expand(B, T).clone() if outcome else torch.randn(B, T, generator=g)
    return lp, old, adv * mask, mask


def straight_through_gspo(lp, old, adv, mask, params):
    """verl's token form of GSPO, written from its formula: ``log s_t = sg(mean_t d) + logp_t - sg(logp_t)``
    capped at 10, then PPO-clip per token."""
    m = mask.float()
    mean_d = ((lp - old) * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)
    s = torch.exp((lp - lp.detach() + mean_d.detach()).clamp(max=params.log_ratio_max))
    return torch.maximum(-adv * s, -adv * s.clamp(1 - params.eps_low, 1 + params.eps_high))


MODES = ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
F32 = {"rtol": 1e-7, "atol": 5e-8}  # float32; measured <= 1.9e-8 (one rounding, another summation order)


@pytest.mark.parametrize("outcome", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_gspo_on_tokens_is_verls_value_and_the_response_mean_of_its_token_gradients(mode, outcome):
    lp, old, adv, mask = token_batch(outcome=outcome)
    params = make_params("gspo", {"eps_low": 0.2, "eps_high": 0.2})
    x, y = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    ours = objective_token_loss("gspo", x, old, adv, mask, params=params, loss_agg_mode=mode,
                                ratio=token_ratio("gspo"))
    theirs = agg_loss(straight_through_gspo(y, old, adv, mask, params), mask, mode)
    (g_ours,), (g_theirs,) = torch.autograd.grad(ours, x), torch.autograd.grad(theirs, y)
    torch.testing.assert_close(ours, theirs, **F32)
    m = mask.float()
    response_mean = (g_theirs * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1) * m
    torch.testing.assert_close(g_ours, response_mean, **F32)  # the documented relation, in every case
    if outcome:  # outcome advantages, no per-token weights: the gradients are the same
        torch.testing.assert_close(g_ours, g_theirs, **F32)
    else:        # per-token advantages: they differ (the relation above is not trivially true)
        assert not torch.allclose(g_ours, g_theirs, **F32)


def test_gmpo_on_tokens_clips_each_token_before_the_geometric_mean():
    lp, old, adv, mask = token_batch(seed=1)
    params = make_params("gmpo", {"eps_low": 0.1, "eps_high": 0.15})
    x = lp.clone().requires_grad_()
    assert token_inputs("gmpo", x, old, adv, mask, params)[2] == "sequence-mean"
    # objective_token_loss forms gmpo's inputs itself (token_inputs), as the adapters rely on
    loss = objective_token_loss("gmpo", x, old, adv, mask, params=params, loss_agg_mode="seq-mean-token-mean",
                                empty_rows="include")
    # independently: per response, d_t clipped toward the pessimistic side, the exp of their mean, times -A
    y = lp.clone().requires_grad_()
    rows = []
    for b in range(lp.shape[0]):
        keep = mask[b]
        if not keep.any():
            rows.append(torch.zeros(()))
            continue
        d, a = (y[b] - old[b])[keep], adv[b][keep][0]
        c = torch.minimum(d, torch.tensor(0.15)) if a > 0 else torch.maximum(d, torch.tensor(-0.1))
        rows.append(-a * torch.exp(c.mean()))
    want = torch.stack(rows).mean()
    torch.testing.assert_close(loss, want, **F32)
    torch.testing.assert_close(torch.autograd.grad(loss, x)[0], torch.autograd.grad(want, y)[0], **F32)
    # the clip acted: with the mean clipped instead of each token, the loss is another
    rows = []
    for b in range(lp.shape[0]):
        keep = mask[b]
        if not keep.any():
            continue
        d, a = (lp[b] - old[b])[keep].mean(), adv[b][keep][0]
        clipped = torch.minimum(d, torch.tensor(0.15)) if a > 0 else torch.maximum(d, torch.tensor(-0.1))
        rows.append(-a * torch.exp(clipped))
    plain = torch.stack(rows).sum() / lp.shape[0]
    assert not torch.allclose(plain, want, rtol=1e-3)


def test_vespo_on_tokens_weighs_each_token_by_its_responses_summed_ratio():
    lp, old, adv, mask = token_batch(seed=2)
    params = make_params("vespo")
    x = lp.clone().requires_grad_()
    assert token_inputs("vespo", x, old, adv, mask, params, ratio="sequence-mean")[2] == "token"  # ratio ignored
    loss = objective_token_loss("vespo", x, old, adv, mask, params=params)  # its inputs formed inside
    m = mask.float()
    log_w = (((lp - old).clamp(-20, 20)) * m).sum(-1, keepdim=True).clamp(np.log(1e-8), 20.0)
    k = torch.where(adv >= 0, 2.0, 3.0)
    lam = torch.where(adv >= 0, 3.0, 2.0)
    phi = torch.exp(lam + k * log_w - lam * log_w.exp())
    y = lp.clone().requires_grad_()
    want = agg_loss(-phi * adv * y, mask, "token-mean")
    torch.testing.assert_close(loss, want, **F32)
    torch.testing.assert_close(torch.autograd.grad(loss, x)[0], torch.autograd.grad(want, y)[0], **F32)
    own = ((lp - old).clamp(-20, 20)).clamp(np.log(1e-8), 20.0)  # each token's own ratio instead: another loss
    token_level = agg_loss(-torch.exp(lam + k * own - lam * own.exp()) * adv * lp, mask, "token-mean")
    assert not torch.allclose(token_level, want, rtol=1e-3)


def test_a_response_unit_objective_reads_the_sequence_mean_ratio_only():
    assert token_ratio("gspo") == token_ratio("gmpo", "sequence-mean") == "sequence-mean"
    assert token_ratio("cispo") == "token" and token_ratio("cispo", "sequence") == "sequence"
    assert token_ratio("vespo", "sequence") == "token"
    for ratio in ("token", "sequence"):
        with pytest.raises(ValueError, match=f"ratio='{ratio}' contradicts"):
            token_ratio("gspo", ratio)


@pytest.mark.parametrize(("name", "values", "match"), [
    ("cispo", {"eps_low": 0.1, "eps_high": -0.2}, "eps_high must be >= -eps_low"),
    ("cispo", {"eps_high": -1.0}, "eps_high"), ("sapo", {"tau_neg": 0.0}, "tau_neg"),
    ("dro", {"beta": 0.0}, "beta"), ("dppo-kl", {"ratio_cap": -1.0}, "ratio_cap"),
    ("vespo", {"lambda_pos": 0.0}, "lambda_pos"), ("gspo", {"eps_low": 1.5}, "eps_low"),
    ("gmpo", {"eps_high": -0.1}, "eps_high"), ("luspo", {"gamma": 1.0}, "unknown parameter luspo.gamma"),
])
def test_bad_parameters_are_refused_naming_them(name, values, match):
    with pytest.raises(ValueError, match=match):
        make_params(name, values)


def test_objectives_command_lists_each_loss_with_formula_and_source():
    from ladsim.objectives.commands import objectives_text  # what `ladsim objectives` prints

    blocks = {b.split(":", 1)[0]: b for b in objectives_text().split("\n\n")}
    for name in CATALOGUE:
        obj = get_objective(name)
        assert f"  loss      {obj.formula}" in blocks[name] and f"  reference {obj.reference}" in blocks[name]
    assert "sapo.tau_neg: float = 1.05" in blocks["sapo"] and "verl 'geo_mean'" in blocks["gmpo"]
    assert "TRL loss_type 'vespo'" in blocks["vespo"] and "gpg" in blocks and "  params    (none)" in blocks["gpg"]
