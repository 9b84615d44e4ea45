"""Run every theory check (quick or full), format the table, write the JSON and markdown reports."""

from __future__ import annotations

import platform
import time
from typing import Callable

import numpy as np

from ladsim.theory.b1 import check_b1
from ladsim.theory.common import CheckResult, single_threaded
from ladsim.theory.entropy_covariance import check_entropy_covariance
from ladsim.theory.flowrl_fixed_point import check_flowrl_fixed_point
from ladsim.theory.gradient import check_gradient, check_linear_term
from ladsim.theory.kl_estimators import check_kl_estimators
from ladsim.theory.kl_penalty import check_kl_penalty_fixed_points
from ladsim.theory.lemma31 import check_lemma31, check_trpo_direction
from ladsim.theory.lemma32 import check_general_form, check_lemma32, check_tv
from ladsim.theory.tree import check_tree_agg_gradient, check_tree_sequence_lad, check_tree_token_lad

# (name, function, quick kwargs, full kwargs); each check gets its own seed derived from --seed
PLAN: list[tuple[str, Callable[..., CheckResult], dict, dict]] = [
    ("lemma31", check_lemma31, {"n_instances": 16, "n_max": 60}, {"n_instances": 200, "n_max": 200}),
    ("trpo_direction", check_trpo_direction,
     {"n_instances": 4, "deltas": np.logspace(-4, -1, 4), "n_boot": 500},
     {"n_instances": 20, "deltas": np.logspace(-4, -1, 7)}),
    ("lemma32", check_lemma32, {"n_instances": 2, "n_max": 12, "n_starts": 2},
     {"n_instances": 8, "n_max": 40, "n_starts": 3}),
    ("lemma32_general", check_general_form, {"n_instances": 7, "n_starts": 1},
     {"n_instances": 21, "n_starts": 3}),
    ("lemma32_tv", check_tv, {"n_instances": 5}, {"n_instances": 40}),
    ("gradient", check_gradient, {"n_instances": 5}, {"n_instances": 50}),
    ("linear_term", check_linear_term, {"n_instances": 4, "reps": 1000}, {"n_instances": 12, "reps": 4000}),
    ("theorem_b1", check_b1, {"n_instances": 2, "n_points": 3, "deltas": np.logspace(-5, -2, 4), "n_boot": 500},
     {"n_instances": 10, "n_points": 8, "deltas": np.logspace(-5, -2, 7)}),
    ("kl_estimators", check_kl_estimators, {"n_samples": 10**6}, {"n_samples": 10**7}),
    ("entropy_covariance", check_entropy_covariance,
     {"n_instances": 8, "steps": np.logspace(-4, -1, 4), "n_boot": 500}, {"n_instances": 40}),
    ("kl_penalty_fixed_points", check_kl_penalty_fixed_points, {"n_identity": 10, "n_train": 2},
     {"n_identity": 50, "n_train": 8}),
    ("flowrl_fixed_point", check_flowrl_fixed_point, {"n_instances": 3}, {"n_instances": 12}),
    ("tree_sequence_lad", check_tree_sequence_lad, {"n_instances": 5}, {"n_instances": 40}),
    ("tree_token_lad", check_tree_token_lad, {"n_instances": 6, "n_train": 1}, {"n_instances": 40, "n_train": 8}),
    ("tree_agg_gradient", check_tree_agg_gradient, {"n_instances": 2}, {"n_instances": 10}),
]
NAMES = [p[0] for p in PLAN]


def run_checks(seed: int = 0, quick: bool = False, only: list[str] | None = None,
               progress: Callable[[str, CheckResult, float], None] | None = None) -> list[CheckResult]:
    """Run the checks in ``PLAN`` (``only`` restricts by name); returns their results in order.

    Check ``k`` is seeded with ``numpy.random.SeedSequence([seed, k])`` so results do not depend on which
    other checks ran. ``progress(name, result, seconds)`` is called after each check.
    """
    results = []
    for k, (name, fn, qkw, fkw) in enumerate(PLAN):
        if only and name not in only:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
        t0 = time.perf_counter()
        with single_threaded():
            res = fn(rng, **(qkw if quick else fkw))
        res.details["seconds"] = time.perf_counter() - t0
        results.append(res)
        if progress:
            progress(name, res, res.details["seconds"])
    return results


def format_table(results: list[CheckResult]) -> str:
    """A plain-text table: claim, instances, worst error, tolerance, pass/fail."""
    head = ("check", "claim", "instances", "worst error", "tolerance", "result")
    rows = [(r.name, r.claim, str(r.instances), f"{r.worst_error:.3g}", f"{r.tolerance:.3g}",
             "pass" if r.passed else "FAIL") for r in results]
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
    for r in results:
        for f in r.failures:
            out.append(f"  {r.name}: {f}")
    return "\n".join(out)


def _entry(r: CheckResult) -> dict:
    """A check's JSON entry; a ``table`` of rows in its details (kl_estimators) moves to the top level."""
    out = r.to_json()
    if "table" in out["details"]:
        out["table"] = out["details"].pop("table")
    return out


def to_json(results: list[CheckResult], seed: int, quick: bool, seconds: float) -> dict:
    return {"checks": [_entry(r) for r in results], "passed": all(r.passed for r in results),
            "seed": seed, "mode": "quick" if quick else "full", "seconds": seconds}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def format_markdown(results: list[CheckResult], seed: int, quick: bool, seconds: float, command: str) -> str:
    """The markdown report (docs/theory-report.md in full mode): table, then the measured numbers per check."""
    by = {r.name: r for r in results}
    lines = [
        "# ladsim theory report",
        "",
        f"Generated by `{command}` (mode: {'quick' if quick else 'full'}, seed {seed}) in {seconds:.1f} s "
        f"on {platform.machine()} / Python {platform.python_version()}. Derivations: [theory.md](theory.md).",
        "",
        "| check | claim | instances | worst error | tolerance | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| `{r.name}` | {r.claim} | {r.instances} | {_fmt(r.worst_error)} | {_fmt(r.tolerance)} | "
                     f"{'pass' if r.passed else '**FAIL**'} |")
    lines += ["", f"Overall: {'all checks pass' if all(r.passed for r in results) else 'SOME CHECKS FAIL'}.", ""]
    if "lemma31" in by:
        d = by["lemma31"].details
        lines += ["## Lemma 3.1 (KL(pi || pi_old) trust region)", "",
                  f"- instances: {by['lemma31'].instances}; actions "
                  f"{d['n_actions_range'][0]}..{d['n_actions_range'][1]};"
                  f" Dirichlet alphas {d['alphas']}; advantages {d['advantage_kinds']} (heavy = Student t, 1.5 dof);"
                  f" delta log-uniform in {d['delta_range']} ({d['delta_capped']} draws capped at half the greedy KL,"
                  " where the constraint stops being active).",
                  f"- worst max-abs policy error (SLSQP + KKT least-squares polish vs closed form with brentq eta): "
                  f"{_fmt(d['worst_policy_abs'])} (tolerance {_fmt(d['tol_policy'])}); SLSQP alone: "
                  f"{_fmt(d['worst_policy_abs_slsqp_only'])} (tolerance {_fmt(d['tol_slsqp_only'])}).",
                  f"- worst relative objective gap (relative to the improvement over pi_old): "
                  f"{_fmt(d['worst_objective_rel_gap'])}; worst relative KL violation "
                  f"{_fmt(d['worst_kl_violation_rel'])}.",
                  f"- worst max-abs |P_pi - P_A| (on actions with pi_old >= {d['p_min_old']:g}): "
                  f"{_fmt(d['worst_p_pi_vs_p_a'])} (tolerance {_fmt(d['tol_p'])}).",
                  f"- problems that needed the trust-constr fallback after SLSQP left the feasible set: "
                  f"{d['solver_fallbacks']}.", ""]
    if "trpo_direction" in by:
        d = by["trpo_direction"].details
        lines += ["## TRPO direction (KL(pi_old || pi) <= delta)", "",
                  f"- slope of max|pi_TRPO - pi_exp| against delta, median over instances: **{d['slope']:.3f}** "
                  f"(derived: 1); pooled fit {d['pooled_slope']:.3f}, 95% bootstrap interval "
                  f"[{d['pooled_ci95'][0]:.3f}, {d['pooled_ci95'][1]:.3f}]; per-instance slopes "
                  f"{d['per_instance_slope_range'][0]:.3f}..{d['per_instance_slope_range'][1]:.3f}.",
                  f"- median distance / delta: {_fmt(d['distance_over_delta_median'])}; solver floor "
                  f"{_fmt(d['solver_floor'])}; TRPO optimum's objective minus the exponential form's (relative to "
                  f"the improvement): {_fmt(d['trpo_objective_excess_rel_min'])}.."
                  f"{_fmt(d['trpo_objective_excess_rel_max'])}.",
                  "", "| delta | median distance | max distance |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v['median'])} | {_fmt(v['max'])} |" for k, v in d["distance_by_delta"].items()]
        lines.append("")
    if "lemma32" in by:
        d = by["lemma32"].details
        lines += ["## Lemma 3.2", "", f"- worst max-abs error of the L-BFGS minimizers vs pi_old exp(A/eta)/Z: "
                  f"{_fmt(by['lemma32'].worst_error)} over {by['lemma32'].instances} minimizations.", "",
                  "| generator / loss | worst error |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in d["worst_by_generator_and_loss"].items()]
        lines.append("")
    if "lemma32_general" in by:
        d = by["lemma32_general"].details
        lines += [f"- general form, g1 = c g2: worst error {_fmt(d['worst_proportional_error'])}; g1/g2 varying: "
                  f"smallest departure of the minimizer from g2/sum g2 {_fmt(d['min_departure_varying_ratio'])} "
                  f"(required >= {_fmt(d['required_departure'])}), worst stationarity spread "
                  f"{_fmt(d['worst_stationarity_spread_varying'])}.", ""]
    if "lemma32_tv" in by:
        d = by["lemma32_tv"].details
        lines += [f"- TV: every LP vertex of the derived minimizer set attains |1 - Z|/2 to "
                  f"{_fmt(by['lemma32_tv'].worst_error)}; smallest diameter of the set "
                  f"{_fmt(d['min_diameter_of_minimizer_set'])}; "
                  f"random policies never below the bound (max shortfall {_fmt(d['max_random_point_below_floor'])}); "
                  f"theoretical TV at other vertices >= {_fmt(d['min_theoretical_tv_at_other_vertices'])} (unique "
                  "minimizer there).", ""]
    if "gradient" in by:
        lines += ["## The gradient", "", f"- formula vs autograd, all generators: worst relative error "
                  f"{_fmt(by['gradient'].worst_error)}."]
    if "linear_term" in by:
        d = by["linear_term"].details
        lines += [f"- f + c(x - 1): worst relative change of the exact gradient "
                  f"{_fmt(by['linear_term'].worst_error)};"
                  f" smallest relative change of the sampled-gradient variance "
                  f"{_fmt(d['min_relative_variance_change'])}"
                  f" (group of {d['group']} samples of pi_old); Monte Carlo vs exact variance within "
                  f"{_fmt(d['worst_mc_vs_exact_variance_rel'])}.", "",
                  "| instance | generator | c | tr Var exact | tr Var Monte Carlo |", "|---|---|---|---|---|"]
        lines += [f"| {r['instance']} | {r['div']} | {r['c']:g} | {_fmt(r['var_exact'])} | {_fmt(r['var_mc'])} |"
                  for r in d["rows"][:16]]
        lines.append("")
    if "theorem_b1" in by:
        d = by["theorem_b1"].details
        lines += ["## Theorem B.1 (derived statement, theory.md section 4)", "",
                  f"- fitted slope of sup_T ||grad L_LAD - grad L_pop|| / ||grad L_pop|| against delta over "
                  f"{_fmt(d['deltas'][0])}..{_fmt(d['deltas'][-1])}: **{d['slope']:.4f}**, 95% bootstrap interval "
                  f"[{d['ci95'][0]:.4f}, {d['ci95'][1]:.4f}] (derived: 1).",
                  f"- KL: gradients identical to {_fmt(d['kl_max_relative_difference'])} (derived C_kl = 0).",
                  f"- without the centring condition (E_pi_old[A] = 1): slope "
                  f"{d.get('uncentred_slope', float('nan')):.3f} "
                  f"[{d.get('uncentred_ci95', [np.nan, np.nan])[0]:.3f}, "
                  f"{d.get('uncentred_ci95', [np.nan, np.nan])[1]:.3f}]"
                  " (derived: 1/2).", "",
                  "| generator | slope | error / (C_f delta) at smallest delta |", "|---|---|---|"]
        for k, s in d["slope_by_generator"].items():
            lo, hi = d["error_over_Cf_delta_at_smallest_delta"][k]
            lines.append(f"| {k} | {s:.4f} | {lo:.4f}..{hi:.4f} |")
        lines += ["", "| delta | median relative gradient error |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in d["median_error_by_delta"].items()]
        lines.append("")
    if "kl_estimators" in by:
        d = by["kl_estimators"].details
        lines += ["## KL estimators k1, k2, k3 (theory.md section 5)", "",
                  f"- {d['n_samples']:.0e} samples of q = N(0, 1) per mu, p = N(mu, 1); worst z-score of a measured "
                  f"mean or std against its closed form: {_fmt(by['kl_estimators'].worst_error)} (tolerance "
                  f"{_fmt(by['kl_estimators'].tolerance)}).", "",
                  "| mu | KL | estimator | bias/KL | derived | std/KL | derived |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['mu']:g} | {r['true_kl']:.3g} | {r['estimator']} | {r['bias_over_kl']:.4f} | "
                  f"{r.get('bias_over_kl_derived', float('nan')):.4f} | {r['std_over_kl']:.4f} | "
                  f"{r.get('std_over_kl_derived', float('nan')):.4f} |" for r in d["table"]]
        lines.append("")
    if "entropy_covariance" in by:
        d = by["entropy_covariance"].details
        lines += ["## Entropy change of a softmax logit step (theory.md section 6)", "",
                  f"- fitted slope of |H(theta + s d) - H(theta) + s Cov_pi(log pi, d)| against s over "
                  f"{_fmt(d['steps'][0])}..{_fmt(d['steps'][-1])}: **{d['slope']:.4f}**, 95% bootstrap interval "
                  f"[{d['ci95'][0]:.4f}, {d['ci95'][1]:.4f}] (derived: 2); per-instance slopes "
                  f"{d['per_instance_slope_range'][0]:.3f}..{d['per_instance_slope_range'][1]:.3f}; directions "
                  f"{d['directions']}.",
                  f"- worst |residual/s^2 - d^T Hess H d / 2| at the smallest s: {_fmt(d['worst_prefactor_abs_error'])}"
                  f" (tolerance {_fmt(d['prefactor_atol'])}).", ""]
    if "kl_penalty_fixed_points" in by:
        d = by["kl_penalty_fixed_points"].details
        lines += ["## GRPO + beta k, on-policy (theory.md section 7)", "",
                  "- expected-gradient identities through the registry's KLPenalty, worst relative error: "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in d["identity_worst_by_estimator"].items()) + ".",
                  f"- the project's loss at the closed-form fixed points: worst relative gradient "
                  f"{_fmt(d['stationarity_worst'])}; trainer ({d['steps']} SGD steps, lr {d['lr']:g}, {d['seeds']} "
                  f"random starts each): worst distance {_fmt(d['trained_distance_worst'])} (tolerance "
                  f"{_fmt(d['distance_tol'])}); the k2 and k3 fixed points differ by at least "
                  f"{_fmt(d['min_separation_k2_vs_k3_fixed_points'])}.", "",
                  "| bandit | arms | beta | estimator | stationarity | trained distance |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['instance']} | {r['n']} | {r['beta']:g} | {r['estimator']} | {_fmt(r['stationarity'])} | "
                  f"{_fmt(r['distance'])} |" for r in d["train"]]
        lines += ["", "| bandit | k1 vs plain GRPO | smallest top-arm mass | k2 fixed point's top mass |",
                  "|---|---|---|---|"]
        lines += [f"| {r['instance']} | {_fmt(r['max_abs_k1_minus_plain'])} | {r['top_arm_mass_min']:.4f} | "
                  f"{r['k2_fixed_point_top_mass']:.4f} |" for r in d["k1"]]
        lines.append("")
    if "flowrl_fixed_point" in by:
        d = by["flowrl_fixed_point"].details
        lines += ["## FlowRL's fixed point (theory.md section 8)", "",
                  f"- registered objective `{d['objective']}`, {d['steps']} SGD steps at lr {d['lr']:g}; trainer with "
                  f"{d['seeds']} random starts, direct loop from pi_old.", "",
                  "| bandit | arms | beta | log Z* | LAD target | trainer | direct | log Z error |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['instance']} | {r['n']} | {r['beta']:g} | {r['log_z']:.4f} | "
                  f"{_fmt(r['lad_target_vs_closed_form'])} | {_fmt(r['trainer_vs_closed_form'])} | "
                  f"{_fmt(r['direct_vs_closed_form'])} | {_fmt(r['log_z_error'])} |" for r in d["rows"]]
        lines.append("")
    if {"tree_sequence_lad", "tree_token_lad", "tree_agg_gradient"} & set(by):
        lines += ["## The token tree (theory.md section 9)", ""]
        if "tree_sequence_lad" in by:
            d = by["tree_sequence_lad"].details
            lines.append(f"- sequence-level LAD: worst TV(argmin, P_A) {_fmt(by['tree_sequence_lad'].worst_error)}; "
                         f"worst relative gradient at P_A {_fmt(d['worst_relative_gradient_at_target'])}.")
        if "tree_token_lad" in by:
            d = by["tree_token_lad"].details
            lines.append(f"- token-level LAD: worst relative gradient at the derived minimizer "
                         f"{_fmt(by['tree_token_lad'].worst_error)}; its smallest TV to P_A {_fmt(d['min_tv_to_p_a'])} "
                         f"(reverse KL with a length-independent mode excepted: there it is P_A); training "
                         f"({d['train_steps']} Adam steps) ends within {_fmt(d['worst_train_tv'])} of it, where it "
                         f"is at least {_fmt(d['min_train_tv_to_p_a'])} from P_A.")
        if "tree_agg_gradient" in by:
            lines.append(f"- the exact gradient of every aggregation mode: worst relative error "
                         f"{_fmt(by['tree_agg_gradient'].worst_error)} against autograd.")
        lines.append("")
    return "\n".join(lines) + "\n"
