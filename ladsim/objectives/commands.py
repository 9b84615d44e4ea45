"""CLI command ``ladsim objectives``: every registered objective with its formula, parameters and reference."""

from __future__ import annotations

import typer

from ladsim.advantages import ESTIMATORS
from ladsim.losses import KL_ESTIMATORS
from ladsim.objectives.modifiers import AdaptiveEntropy, EntropyBonus, KLPenalty
from ladsim.objectives.registry import OBJECTIVES, describe_fields


def _default(value) -> str:
    return "None" if value is None else repr(value) if isinstance(value, str) else f"{value:g}" \
        if isinstance(value, float) else str(value)


def objectives_text() -> str:
    """The listing printed by ``ladsim objectives`` (one block per objective, then the modifiers)."""
    blocks = []
    for obj in OBJECTIVES.values():
        lines = [f"{obj.name}: {obj.summary}", f"  loss      {obj.formula}"]
        fields = describe_fields(obj.params)
        for i, (name, type_name, default, doc) in enumerate(fields):
            head = "  params    " if i == 0 else "            "
            lines.append(f"{head}{obj.name}.{name}: {type_name} = {_default(default)}" + (f"  ({doc})" if doc else ""))
        if not fields:
            lines.append("  params    (none)")
        if obj.init_state is not None:
            lines.append("  state     trained with the policy: " + ", ".join(obj.state(obj.params(), ()).keys()))
        if obj.full_support:
            lines.append("  note      needs every action (exact partition functions): bandit only")
        lines.append(f"  reference {obj.reference}")
        blocks.append("\n".join(lines))
    kl, ent, control = KLPenalty(), EntropyBonus(), AdaptiveEntropy()
    blocks.append("\n".join([
        "modifiers (compose with any objective):",
        f"  --kl {{{','.join(KL_ESTIMATORS)}}} --kl-beta B (default {kl.beta:g}): + B k(logp - logp_ref); "
        "k1 = t, k2 = t^2/2, k3 = exp(-t) - 1 + t, abs = |t|; k1+, k3+, abs+ = k1's, k3's, abs's value with k2's "
        "gradient (Schulman 2020; verl kl_penalty)",
        "  --kl-bias-correction: + B r k, r = pi/pi_old the token ratio (TRL use_bias_correction_kl): the current "
        "policy's KL under pi_old's samples",
        f"  --entropy-coef C (default {ent.coef:g}): - C H(pi) (verl entropy_coeff)",
        f"  --entropy-target H: adaptive entropy control (TRL use_adaptive_entropy; Skywork-OR1): the bonus applies "
        f"while the last step's mean token entropy is <= H, its coefficient (from --entropy-coef) moving by "
        f"--entropy-coef-delta (default {control.delta:g}) within [--entropy-coef-min, --entropy-coef-max]"
        f" (default [{control.low:g}, {control.high:g}]) after every step, per seed",
        "  --top-entropy-quantile Q (tree, prompts; sampled): the objective trains only the tokens at or above the "
        "batch's 1 - Q entropy quantile (TRL top_entropy_quantile)",
        "  grpo.delta, luspo.delta: TRL's two-sided clip (INTELLECT-2), the unclipped ratio capped at delta",
        "set a parameter: ladsim run bandit -o flowrl --set flowrl.beta=10 (in `run bandit`, --eta/--div fill "
        "every eta/div parameter and --clip every eps_low/eps_high, before --set)",
    ]))
    blocks.append(estimators_text())
    return "\n\n".join(blocks)


def estimators_text() -> str:
    """The advantage estimators' block of the listing (``--advantage NAME``, ``ladsim.advantages``)."""
    lines = ["advantage estimators (--advantage NAME, every world; a batch is one seed's groups, every prompt's):"]
    for est in ESTIMATORS.values():
        lines += [f"{est.name}: {est.summary}", f"  sampled   {est.sampled}",
                  f"  exact     {est.exact or 'none: sampled-only (refused where advantages are exact)'}",
                  f"  as        {est.trainer}", f"  reference {est.reference}"]
    lines.append("default: grpo on sampled groups (--advantage-scale std|none), R - E_pi_old[R] (dr-grpo's limit) "
                 "where advantages are exact")
    return "\n".join(lines)


def list_objectives_command() -> None:
    """List every registered objective: its loss, parameters with defaults, and reference."""
    typer.echo(objectives_text())
