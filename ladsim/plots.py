"""Figures: one function per figure, drawing only what it is given (no training, no computation beyond
layout).

One style for every figure: the colours and labels of the objectives below, labelled axes, PNG (for the
README) and, where asked, PDF (for papers). Figures are ``matplotlib.figure.Figure`` objects made without
pyplot, so importing or calling this module never changes the user's matplotlib backend, and matplotlib
itself is imported only when a figure is drawn.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ladsim.io import atomic_file

OBJECTIVE_COLORS = {"grpo": "#d1495b", "lad": "#00798c", "lad-theory": "#edae49", "target": "#30343f",
                    "entadv": "#8e6c8a", "clip-cov": "#f08a4b", "kl-cov": "#6a994e", "flowrl": "#3d5a80",
                    "cispo": "#b5651d", "gspo": "#7b2cbf", "sapo": "#2a9d8f", "gmpo": "#9c6644", "dppo-tv": "#e76f51",
                    "dppo-kl": "#bc4749", "gpg": "#6c757d", "dro": "#457b9d", "luspo": "#c77dff", "vespo": "#588157"}
OBJECTIVE_LABELS = {"grpo": "GRPO", "lad": "LAD (practical)", "lad-theory": "LAD (theoretical)",
                    "target": r"target $P_A \propto \pi_{old}\,e^{A/\eta}$", "entadv": "EntAdv",
                    "clip-cov": "Clip-Cov", "kl-cov": "KL-Cov", "flowrl": "FlowRL", "cispo": "CISPO", "gspo": "GSPO",
                    "sapo": "SAPO", "gmpo": "GMPO", "dppo-tv": "DPPO-TV", "dppo-kl": "DPPO-KL", "gpg": "GPG",
                    "dro": "DRO", "luspo": "LUSPO", "vespo": "VESPO"}

# Line styles tell apart objectives whose curves coincide (the advantage maximizers often do).
OBJECTIVE_LINESTYLES = {"entadv": "--", "clip-cov": ":", "kl-cov": "-.", "lad-theory": (0, (4, 1, 1, 1))}

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def _figure(nrows: int = 1, ncols: int = 1, *, figsize, layout: str | None = None, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``, without pyplot (no backend, no global figure registry)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def objective_label(name: str) -> str:
    return OBJECTIVE_LABELS.get(name, name)


def objective_color(name: str) -> str:
    return OBJECTIVE_COLORS.get(name, "#666666")


def save_figure(fig, path: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``, atomically; close it; return the paths."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        with atomic_file(target) as tmp:
            # No creation date in PDFs, so regenerating an unchanged figure leaves the committed file unchanged.
            fig.savefig(tmp, format=fmt, metadata={"CreationDate": None} if fmt == "pdf" else None)
        written.append(target)
    return written


BAR_LIMIT = 400  # up to this many arms a distribution is drawn as bars (one patch per arm), above as an area


def draw_distribution(ax, probs: np.ndarray, color: str, **kwargs) -> None:
    """A distribution over arms: a bar per arm (the paper's look) up to ``BAR_LIMIT`` arms, drawn as ONE
    collection of rectangles (a patch per bar costs ~50 ms a panel); above, one stepped filled area (a single
    polygon whatever the number of arms: 151,936 bar patches took minutes to draw and save)."""
    from matplotlib.collections import PolyCollection

    arms = np.arange(len(probs))
    if len(probs) <= BAR_LIMIT:
        lo, hi = arms - 0.45, arms + 0.45
        zero = np.zeros_like(probs)
        verts = np.stack([np.stack([lo, zero], 1), np.stack([lo, probs], 1), np.stack([hi, probs], 1),
                          np.stack([hi, zero], 1)], 1)  # (N, 4, 2): one rectangle per arm
        bars = PolyCollection(verts, facecolors=color, edgecolors="none", **kwargs)
        bars.sticky_edges.y.append(0.0)  # bars stand on the axis, as ax.bar's do
        ax.add_collection(bars, autolim=True)
        ax.autoscale_view()
    else:
        ax.fill_between(arms, probs, step="mid", color=color, lw=0, **kwargs)


def draw_band(ax, lo: np.ndarray, hi: np.ndarray) -> None:
    """The spread over seeds per arm: a line per arm up to ``BAR_LIMIT`` arms, a shaded band above."""
    arms = np.arange(len(lo))
    if len(lo) <= BAR_LIMIT:
        ax.vlines(arms, lo, hi, color="black", lw=0.8)
    else:
        ax.fill_between(arms, lo, hi, step="mid", color="black", alpha=0.35, lw=0)


def plot_distribution(target: np.ndarray, policies: Mapping[str, np.ndarray], *, title: str = "",
                      caption: str = "", spread: Mapping[str, np.ndarray] | None = None,
                      notes: Mapping[str, str] | None = None):
    """Figure 1's layout (the one plotter of final policies): the target ``P_A`` beside each objective's final
    policy, the target dashed over each.

    Args:
        target: ``(N,)`` the advantage-induced target distribution.
        policies: objective -> ``(N,)`` final policy (mean over seeds).
        spread: optional objective -> ``(2, N)`` lower/upper band over seeds.
        notes: optional objective -> text for the panel's corner (its distance to ``P_A``, modes kept, ...).
    Returns the matplotlib figure.
    """
    arms = np.arange(len(target))
    with _style():
        fig, axes = _figure(1, 1 + len(policies), figsize=(3.2 * (1 + len(policies)), 2.9), squeeze=False)
        axes = axes[0]
        draw_distribution(axes[0], target, OBJECTIVE_COLORS["target"])
        axes[0].set_title("target P_A ∝ π_old exp(A/η)")  # plain text: mathtext's parser costs 0.2 s a run
        axes[0].set_ylabel("probability")
        for ax, (name, probs) in zip(axes[1:], policies.items()):
            draw_distribution(ax, probs, objective_color(name), label="final policy")
            top = max(probs.max(), target.max())
            if spread is not None and name in spread:
                draw_band(ax, *spread[name])
                top = max(top, spread[name][1].max())
            ax.step(arms, target, where="mid", color=OBJECTIVE_COLORS["target"], lw=1.1, ls="--",
                    label="target P_A")
            if notes is not None and name in notes:
                ax.text(0.03, 0.97, notes[name], transform=ax.transAxes, va="top", ha="left", fontsize=8.5)
            ax.set_title(objective_label(name))
            ax.set_ylim(0, top * (1.45 if notes else 1.1))
        if len(axes) > 1:
            axes[1].legend(loc="upper right", fontsize=8)
        for ax in axes:
            ax.set_xlabel("arm index")
            ax.set_xlim(-1, len(target))
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        _caption(fig, caption)
    return fig


# --- the study figures (``ladsim.studies``): one function per figure, ``fn(data, *, title, **options)``
# ``data`` maps a frame name to the tidy DataFrame the study saved (``figures/data/<study>_<frame>.csv``).

DIVERGENCE_LABELS = {"tv": "TV", "hd": "Hellinger", "js": "JS", "kl": "KL", "rkl": "rKL", "jf": "Jeffreys",
                     "pearson": r"Pearson $\chi^2$", "neyman": r"Neyman $\chi^2$"}
CLASS_COLORS = {"strict": "#00798c", "non-strict": "#8d6a9f", None: "#9a9a9a"}
METRIC_LABELS = {
    "expected_reward": "expected reward",
    "entropy": "entropy (nats)",
    "mode_coverage": "modes kept",
    "effective_modes": "effective modes",
    "js_to_target": r"JS to $P_A$ (nats)",
    "tv_to_target": r"TV to $P_A$",
    "kl_to_target": r"KL to $P_A$ (nats)",
    "top_arm_mass": "mass on the top arm",
    "top_response_mass": "mass on the top response",
    "correct_mass": "mass on correct responses",
    "node_entropy": "entropy per token (nats)",
    "mean_length": "expected length (tokens)",
    "length_correct": "expected length, correct (tokens)",
    "length_incorrect": "expected length, incorrect (tokens)",
    "truncation_rate": "truncated mass",
}


def metric_label(name: str) -> str:
    """Short axis label of a metric (with its unit where it has one)."""
    return METRIC_LABELS.get(name, name)


METRIC_TITLES = {
    "expected_reward": r"expected reward $\sum_y \pi(y) R(y)$",
    "entropy": "policy entropy (nats)",
    "mode_coverage": "modes kept (of the target's)",
    "effective_modes": "how evenly the modes share the mass",
    "correct_mass": "mass on correct responses",
    "node_entropy": "entropy per token, over the nodes visited",
    "length_correct": "expected length of correct responses",
    "length_incorrect": "expected length of incorrect responses",
    "js_to_target": "JS divergence to P_A (nats)",
}


def metric_title(name: str) -> str:
    """A metric's panel title: what it measures, in words."""
    if name in METRIC_TITLES:
        return METRIC_TITLES[name]
    kind, _, k = name.partition("@")
    if kind == "pass":
        return f"pass@{k}: P(a correct arm among {k} pulls)"
    if kind == "distinct":
        return f"distinct@{k}: correct arms seen in {k} pulls"
    return name


def _flat_note(ax, lo: float, hi: float) -> None:
    """Say so when every value of a panel lies in a band too thin to see (a saturated metric)."""
    if hi - lo < 1e-3 * max(1.0, abs(hi)):
        ax.text(0.5, 0.8, f"every value lies in [{lo:.4f}, {hi:.4f}]:\nsaturated on this task",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="#30343f",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#bbbbbb"))


def _caption(fig, text: str) -> None:
    if text:
        fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=9, wrap=True, color="#30343f")


def plot_distribution_figure(data, *, title: str = "", caption: str = ""):
    """Figure 1 from a study's frames: :func:`plot_distribution` with each objective's distance to ``P_A``.

    ``data["policy"]``: ``objective, seed, arm, probability, target, reward``; ``data["final"]``: the metrics
    at the last step (``js_to_target``, ``mode_coverage``, ``top_arm_mass``). Seeds are averaged per arm.
    """
    policy, final = data["policy"], data["final"]
    objectives = list(dict.fromkeys(policy["objective"]))
    target = policy[policy["objective"] == objectives[0]].groupby("arm")["target"].first().to_numpy()
    means = {o: policy[policy["objective"] == o].groupby("arm")["probability"].mean().to_numpy() for o in objectives}
    return plot_distribution(target, means, title=title, caption=caption,
                             notes=distance_notes(final, int(final["modes"].iloc[0])))


def distance_notes(final, n_modes: int) -> dict[str, str]:
    """objective -> "JS to P_A, modes kept, top arm" (means over seeds of the last step's metrics)."""
    notes = {}
    for objective, row in final.groupby("objective", sort=False):
        notes[objective] = (f"JS to P_A = {row['js_to_target'].mean():.2g} nats\n"
                            f"modes kept: {row['mode_coverage'].mean():.0f} of {n_modes}\n"
                            f"top arm: {row['top_arm_mass'].mean():.2f}")
    return notes


def plot_landscape_figure(data, *, title: str = "", caption: str = ""):
    """Figure 2: contours of practical LAD over ``(theta1, theta2)`` (``theta3 = 0``), each objective's path
    from the common start and the closed-form optimum; one panel per divergence (top to bottom).

    ``data["grid"]``: ``div, theta1, theta2, loss``; ``data["trajectory"]``: ``div, objective, step, theta1,
    theta2, loss``; ``data["optimum"]``: ``div, theta1, theta2, pi1, pi2, pi3``.
    """
    from matplotlib.colors import LogNorm

    grid, paths, optimum = data["grid"], data["trajectory"], data["optimum"]
    divs = list(dict.fromkeys(grid["div"]))
    styles = {"grpo": dict(lw=2.2, ls="-", zorder=3), "lad": dict(lw=4.0, ls="-", zorder=3, alpha=0.85),
              "lad-theory": dict(lw=1.8, ls=(0, (3, 2)), zorder=4)}
    with _style():
        fig, axes = _figure(len(divs), 1, figsize=(5.6, 4.3 * len(divs) + 0.9), squeeze=False)
        for ax, div in zip(axes[:, 0], divs):
            g = grid[grid["div"] == div]
            t1 = np.sort(g["theta1"].unique())
            t2 = np.sort(g["theta2"].unique())
            loss = g.pivot(index="theta2", columns="theta1", values="loss").loc[t2, t1].to_numpy()
            levels = np.geomspace(loss.min(), loss.max(), 16)
            filled = ax.contourf(t1, t2, loss, levels=levels, cmap="Greys_r",
                                 norm=LogNorm())
            ax.contour(t1, t2, loss, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
            bar = fig.colorbar(filled, ax=ax, shrink=0.9, format="%.2g")
            bar.set_label("practical LAD loss (log scale)")
            lo, hi = t1.min(), t1.max()
            p = paths[paths["div"] == div]
            ends = []
            for objective in dict.fromkeys(p["objective"]):
                q = p[p["objective"] == objective]
                x, y = q["theta1"].to_numpy(), q["theta2"].to_numpy()
                ends.append(f"{objective_label(objective)}: ({x[-1]:.2f}, {y[-1]:.2f})")
                ax.plot(x, y, color=objective_color(objective), label=objective_label(objective),
                        **styles.get(objective, {}))
                inside = (x >= lo) & (x <= hi) & (y >= t2.min()) & (y <= t2.max())
                if not inside[-1]:  # the path leaves the window: an arrow where it does
                    last = np.flatnonzero(inside)[-1]
                    ax.annotate("", xy=(x[last], y[last]), xytext=(x[max(last - 3, 0)], y[max(last - 3, 0)]),
                                arrowprops=dict(arrowstyle="-|>", color=objective_color(objective), lw=2),
                                zorder=4)
            ax.plot(*p[["theta1", "theta2"]].to_numpy()[0], "o", color="black", ms=7, zorder=5, label="start")
            o = optimum[optimum["div"] == div].iloc[0]
            ax.plot(o["theta1"], o["theta2"], marker="*", color="#ffd166", mec="black", ms=17, zorder=6,
                    ls="none", label=r"closed-form optimum $\pi^* \propto \pi_{old}\,e^{A/\eta}$")
            ax.text(0.02, 0.02, f"after {int(p['step'].max())} steps, $(\\theta_1, \\theta_2)$ =\n"
                    + "\n".join(ends)
                    + f"\noptimum: ({o['theta1']:.2f}, {o['theta2']:.2f}), "
                      f"$\\pi^*$ = ({o['pi1']:.2f}, {o['pi2']:.2f}, {o['pi3']:.2f})",
                    transform=ax.transAxes, fontsize=7.5, va="bottom", ha="left",
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="none", alpha=0.85))
            ax.set_xlim(lo, hi)
            ax.set_ylim(t2.min(), t2.max())
            ax.set_aspect("equal")
            ax.set_xlabel(r"$\theta_1$ (logit of arm 1; $\theta_3 = 0$)")
            ax.set_ylabel(r"$\theta_2$ (logit of arm 2)")
            ax.set_title(f"f = {get_divergence_name(div)}")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8.5, bbox_to_anchor=(0.45, 0.0))
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        _caption(fig, caption)
    return fig


def get_divergence_name(key: str) -> str:
    from ladsim.divergences import DIVERGENCES

    return DIVERGENCES[key].name if key in DIVERGENCES else key


def _rows(summary, metric, objective, **where):
    rows = summary[(summary["metric"] == metric) & (summary["objective"] == objective)]
    for column, value in where.items():
        rows = rows[rows[column].isna()] if value is None else rows[rows[column].astype(str) == str(value)]
    return rows


def plot_eta_sweep(data, *, title: str = "", caption: str = "",
                   metrics: Sequence[str] = ("expected_reward", "effective_modes", "distinct@16")):
    """Figure 3 analog: one panel per metric against eta (log scale): practical LAD's mean and 95% interval,
    GRPO (no eta) as a horizontal band.

    ``data["summary"]``: ``eta, objective, metric, seeds, mean, lo, hi`` (GRPO rows have no ``eta``).
    """
    summary = data["summary"]
    with _style():
        fig, axes = _figure(1, len(metrics), figsize=(4.1 * len(metrics), 3.4), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            lad = _rows(summary, metric, "lad").dropna(subset=["eta"]).sort_values("eta")
            grpo = _rows(summary, metric, "grpo", eta=None)
            if len(grpo):
                g = grpo.iloc[0]
                ax.axhspan(g["lo"], g["hi"], color=objective_color("grpo"), alpha=0.18, lw=0)
                ax.axhline(g["mean"], color=objective_color("grpo"), lw=1.6, ls="--",
                           label=f"{objective_label('grpo')} (has no η)")
            ax.fill_between(lad["eta"], lad["lo"], lad["hi"], color=objective_color("lad"), alpha=0.25, lw=0)
            ax.errorbar(lad["eta"], lad["mean"], yerr=[lad["mean"] - lad["lo"], lad["hi"] - lad["mean"]],
                        color=objective_color("lad"), marker="o", ms=5, lw=1.8, capsize=3,
                        label=objective_label("lad"))
            ax.set_xscale("log", base=2)
            ax.set_xticks(lad["eta"].to_numpy())
            ax.set_xticklabels([f"{e:g}" for e in lad["eta"]])
            ax.minorticks_off()
            ax.set_xlabel(r"temperature $\eta$ (log scale)")
            ax.set_ylabel(metric_label(metric))
            ax.set_title(metric_title(metric), fontsize=10)
            lo = min(lad["lo"].min(), grpo["lo"].min() if len(grpo) else np.inf)
            hi = max(lad["hi"].max(), grpo["hi"].max() if len(grpo) else -np.inf)
            pad = max(0.15 * (hi - lo), 0.02 * max(abs(hi), 1e-3))
            ax.set_ylim(lo - pad, hi + pad)
            _flat_note(ax, lo, hi)
        seeds = int(summary["seeds"].min())
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9,
                   title=f"mean and 95% bootstrap interval over {seeds} seeds", title_fontsize=8.5,
                   bbox_to_anchor=(0.5, -0.02))
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        _caption(fig, caption)
    return fig


def plot_divergence_ablation(data, *, title: str = "", caption: str = "",
                             metrics: Sequence[str] = ("expected_reward", "effective_modes", "distinct@16")):
    """Figure 4 analog: one point per f-generator (coloured by the paper's class) with its 95% interval, the
    class means as dashed lines (their intervals shaded over the class's points), GRPO as a dotted line.

    ``data["summary"]``: ``div, objective, metric, seeds, mean, lo, hi``; pooled rows carry the class name
    (``strict``, ``non-strict``) in ``div``; GRPO rows have no ``div``.
    """
    from ladsim.divergences import DIVERGENCES

    summary = data["summary"]
    order = [d for d in DIVERGENCES if d in set(summary["div"].dropna())]
    order.sort(key=lambda d: {"strict": 0, "non-strict": 1}.get(DIVERGENCES[d].paper_class, 2))
    with _style():
        fig, axes = _figure(1, len(metrics), figsize=(4.3 * len(metrics), 3.7), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            rows = _rows(summary, metric, "lad").set_index("div")
            x = np.arange(len(order))
            points = rows.loc[order]
            # the axis spans the two classes and GRPO (the comparison drawn); a generator outside it is drawn
            # as a triangle on the edge with its value
            classed = points[[DIVERGENCES[d].paper_class is not None for d in order]]
            grpo = _rows(summary, metric, "grpo", div=None)
            lo, hi = classed["lo"].min(), classed["hi"].max()
            if len(grpo):
                lo, hi = min(lo, grpo["lo"].min()), max(hi, grpo["hi"].max())
            pad = max(0.12 * (hi - lo), 0.02 * max(abs(hi), 1e-3))
            ylo, yhi = lo - pad, hi + pad
            for i, d in enumerate(order):
                p = points.loc[d]
                color = CLASS_COLORS[DIVERGENCES[d].paper_class]
                if ylo <= p["mean"] <= yhi:
                    ax.errorbar(i, p["mean"], yerr=[[p["mean"] - p["lo"]], [p["hi"] - p["mean"]]], fmt="o",
                                ms=7, color=color, capsize=3, lw=1.5, zorder=3)
                else:
                    below = p["mean"] < ylo
                    edge = ylo + 0.04 * (yhi - ylo) if below else yhi - 0.04 * (yhi - ylo)
                    ax.plot(i, edge, marker="v" if below else "^", ms=9, color=color, zorder=3, clip_on=False)
                    ax.annotate(f"{p['mean']:.2f}", (i, edge), xytext=(0, 9 if below else -13),
                                textcoords="offset points", ha="center", fontsize=8, color=color)
            for cls in ("strict", "non-strict"):
                if cls in rows.index:
                    r = rows.loc[cls]
                    members = [i for i, d in enumerate(order) if DIVERGENCES[d].paper_class == cls]
                    span = (min(members) - 0.4, max(members) + 0.4)
                    names = ", ".join(DIVERGENCE_LABELS[order[i]] for i in members)
                    ax.hlines(r["mean"], -0.5, len(order) - 0.5, color=CLASS_COLORS[cls], ls="--", lw=1.4,
                              label=f"{cls} class mean ({names})")
                    ax.fill_between(span, r["lo"], r["hi"], color=CLASS_COLORS[cls], alpha=0.2, lw=0)
            if len(grpo):
                ax.axhline(grpo.iloc[0]["mean"], color=objective_color("grpo"), ls=":", lw=1.6,
                           label=objective_label("grpo"))
            ax.set_xticks(x)
            ax.set_xticklabels([DIVERGENCE_LABELS.get(d, d) for d in order], rotation=35, ha="right")
            for tick, d in zip(ax.get_xticklabels(), order):
                tick.set_color(CLASS_COLORS[DIVERGENCES[d].paper_class])
            ax.set_xlim(-0.6, len(order) - 0.4)
            ax.set_xlabel("f-divergence of practical LAD")
            ax.set_ylabel(metric_label(metric))
            ax.set_title(metric_title(metric), fontsize=10)
            ax.set_ylim(ylo, yhi)
            _flat_note(ax, min(lo, points["lo"].min()), max(hi, points["hi"].max()))
        seeds = int(summary["seeds"].min())
        handles, labels = axes[0, 0].get_legend_handles_labels()
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=CLASS_COLORS[None], marker="o", ls="none"))
        labels.append("in neither class")
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, bbox_to_anchor=(0.5, -0.03),
                   title=f"points: mean and 95% bootstrap interval over {seeds} seeds", title_fontsize=8.5)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        _caption(fig, caption)
    return fig


def regime_caption(summary, metrics: Sequence[str] = ("mode_coverage", "entropy"), a: str = "lad",
                   b: str = "grpo") -> str:
    """One sentence comparing objective ``a`` with ``b`` regime by regime: for each metric, in how many cells
    ``a``'s 95% interval lies above ``b``'s, below it, or the two overlap. Counting only, from the summary."""
    clauses = []
    for metric in metrics:
        rows = summary[summary["metric"] == metric]
        cells = [c for c in rows.columns if c not in ("objective", "metric", "seeds", "mean", "lo", "hi")]
        first = rows[rows["objective"] == a].set_index(cells)
        second = rows[rows["objective"] == b].set_index(cells)
        first, second = first.align(second, join="inner", axis=0)
        above = int((first["lo"] > second["hi"]).sum())
        below = int((first["hi"] < second["lo"]).sum())
        clauses.append(f"{metric_label(metric)} higher in {above} of {len(first)} regimes, lower in {below}, "
                       f"intervals overlapping in {len(first) - above - below} "
                       f"(mean {first['mean'].mean():.2f} vs {second['mean'].mean():.2f})")
    return f"{objective_label(a)} against {objective_label(b)}: " + "; ".join(clauses) + "."


def plot_regime_map(data, *, title: str = "", caption: str = "",
                    metrics: Sequence[str] = ("mode_coverage", "entropy"),
                    rows_axis: str = "refresh", cols_axis: str = "regime",
                    objectives: Sequence[str] = ("grpo", "lad")):
    """Regime map: for each metric (row of panels) and objective (column), a heatmap over the pi_old refresh
    interval (y) and the sampling regime (x), each cell annotated with the mean and the 95% interval.
    The colour scale is shared across objectives so that the two columns compare at a glance. Without a
    ``caption`` one sentence is generated from the numbers (``regime_caption``).
    """
    summary = data["summary"].copy()
    summary[rows_axis] = summary[rows_axis].astype(str)
    summary[cols_axis] = summary[cols_axis].astype(str)
    row_labels = list(dict.fromkeys(summary[rows_axis]))
    col_labels = list(dict.fromkeys(summary[cols_axis]))
    cmaps = {"mode_coverage": "viridis", "entropy": "magma", "expected_reward": "cividis"}
    seeds = int(summary["seeds"].min())
    with _style():
        fig, axes = _figure(len(metrics), len(objectives), squeeze=False, layout="constrained",
                                 figsize=(4.4 * len(objectives) + 1.0, 3.0 * len(metrics) + 0.8))
        for i, metric in enumerate(metrics):
            m = summary[summary["metric"] == metric]
            vmin, vmax = m["lo"].min(), m["hi"].max()
            if metric == "mode_coverage":
                vmin = 0
            for j, objective in enumerate(objectives):
                ax = axes[i, j]
                cell = m[m["objective"] == objective].set_index([rows_axis, cols_axis])
                grid = np.array([[cell.loc[(r, c), "mean"] for c in col_labels] for r in row_labels])
                image = ax.imshow(grid, cmap=cmaps.get(metric, "viridis"), vmin=vmin, vmax=vmax,
                                  aspect="auto")
                for (r, c), value in np.ndenumerate(grid):
                    lo, hi = cell.loc[(row_labels[r], col_labels[c]), ["lo", "hi"]]
                    shade = (value - vmin) / max(vmax - vmin, 1e-12)
                    ax.text(c, r, f"{value:.2f}\n[{lo:.2f}, {hi:.2f}]", ha="center", va="center",
                            fontsize=7.5,
                            color="white" if shade < 0.6 else "black")
                ax.set_xticks(range(len(col_labels)))
                ax.set_xticklabels(col_labels)
                ax.set_yticks(range(len(row_labels)))
                ax.set_yticklabels(row_labels if j == 0 else [])
                if i == len(metrics) - 1:
                    ax.set_xlabel("expectations: exact, or sampled groups of G")
                if j == 0:
                    ax.set_ylabel(r"$\pi_{old}$ refreshed")
                ax.set_title(f"{objective_label(objective)}: {metric_label(metric)}",
                             color=objective_color(objective), fontsize=10.5)
                ax.spines[:].set_visible(False)
            bar = fig.colorbar(image, ax=list(axes[i]), shrink=0.95, pad=0.02)
            bar.set_label(metric_label(metric))
        if title:
            fig.suptitle(title)
        text = caption or regime_caption(summary, metrics, objectives[-1], objectives[0])
        fig.supxlabel(f"cells: mean [95% bootstrap interval] over {seeds} seeds at the last step.\n" + text,
                      fontsize=8.5, ha="center", wrap=True)
    return fig


def plot_objectives_figure(data, *, title: str = "", caption: str = "",
                           curves: Sequence[str] = ("entropy", "mode_coverage", "expected_reward")):
    """Figure 6: every objective in each regime (one row per regime): the final policies (mean over seeds) as
    lines over the arms against the target ``P_A`` (shaded), then one panel per metric over the steps, mean
    and 95% bootstrap interval over seeds.

    ``data["policy"]``: ``regime, objective, seed, arm, probability, target, reward``; ``data["curves"]``:
    ``regime, step, objective, metric, seeds, mean, lo, hi``.
    """
    policy, summary = data["policy"], data["curves"]
    regimes = list(dict.fromkeys(policy["regime"]))
    objectives = list(dict.fromkeys(policy["objective"]))
    with _style():
        fig, axes = _figure(len(regimes), 1 + len(curves), squeeze=False, layout="constrained",
                                 figsize=(4.0 * (1 + len(curves)), 3.1 * len(regimes) + 0.9))
        for row, regime in zip(axes, regimes):
            p = policy[policy["regime"] == regime]
            first = p[p["objective"] == objectives[0]]
            target = first.groupby("arm")["target"].first()
            ax = row[0]
            ax.fill_between(target.index, target.to_numpy(), step="mid", color=objective_color("target"),
                            alpha=0.18, lw=0, label=objective_label("target"))
            for objective in objectives:
                probs = p[p["objective"] == objective].groupby("arm")["probability"].mean()
                ax.step(probs.index, probs.to_numpy(), where="mid", color=objective_color(objective), lw=1.3,
                        ls=OBJECTIVE_LINESTYLES.get(objective, "-"), label=objective_label(objective))
            ax.set_yscale("log")
            ax.set_ylim(max(1e-6, float(target.min()) / 10), 1.5)
            ax.set_xlabel("arm")
            ax.set_ylabel("final probability (log scale)")
            ax.set_title(regime, fontsize=10, loc="left")
            c = summary[summary["regime"] == regime]
            for ax, metric in zip(row[1:], curves):
                m = c[c["metric"] == metric]
                for objective in objectives:
                    o = m[m["objective"] == objective].sort_values("step")
                    ax.fill_between(o["step"], o["lo"], o["hi"], color=objective_color(objective), alpha=0.2, lw=0)
                    ax.plot(o["step"], o["mean"], color=objective_color(objective), lw=1.5,
                            ls=OBJECTIVE_LINESTYLES.get(objective, "-"))
                ax.set_xlabel("optimizer step")
                ax.set_ylabel(metric_label(metric))
                ax.set_title(metric_title(metric), fontsize=10)
        seeds = int(summary["seeds"].min())
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 8), fontsize=8.5,
                   title=f"curves: mean and 95% bootstrap interval over {seeds} seeds", title_fontsize=8.5)
        if title:
            fig.suptitle(title)
        _caption(fig, caption)
    return fig


# --- the token tree (``ladsim.tree``): responses instead of arms -------------------------------------------

def rank_by_target(target: np.ndarray) -> np.ndarray:
    """The responses in decreasing order of the target's probability (ties: in the tree's order)."""
    return np.argsort(-target, kind="stable")


def draw_ranked(ax, target: np.ndarray, policies: Mapping[str, np.ndarray], correct: np.ndarray,
                spread: Mapping[str, np.ndarray] | None = None, labels: Sequence[str] | None = None,
                colors: Mapping[str, str] | None = None) -> None:
    """Probabilities of every response, ranked by the target ``P_A`` (x: rank, log-scaled beyond 50
    responses; y: probability, log-scaled): the target as a black step line, each objective's mean policy over
    seeds as a line (with its 95% band over seeds where given), the correct responses as ticks on top (with
    their tokens where ``labels`` is given and they are few). Readable from 10 to 10^5 responses: lines, not
    bars, and one polygon per band. ``colors``: name -> colour for names that are not objectives (a study's
    variants)."""
    color = (lambda name: colors[name]) if colors else objective_color  # noqa: E731
    label = (lambda name: name) if colors else objective_label  # noqa: E731
    order = rank_by_target(target)
    x = np.arange(1, len(target) + 1)
    floor = max(min(target.min(), *(p[p > 0].min() if (p > 0).any() else 1.0 for p in policies.values())), 1e-12)
    ax.step(x, target[order], where="mid", color=OBJECTIVE_COLORS["target"], lw=1.4, label="target P_A")
    for name, probs in policies.items():
        line = np.maximum(probs[order], floor)
        ax.plot(x, line, color=color(name), lw=1.1, label=label(name), ls=OBJECTIVE_LINESTYLES.get(name, "-"),
                marker="o" if len(x) <= 60 else None, ms=2.5)
        if spread is not None and name in spread:
            lo, hi = (np.maximum(b[order], floor) for b in spread[name])
            ax.fill_between(x, lo, hi, color=color(name), alpha=0.18, lw=0, step=None)
    ranks = x[np.isin(order, np.flatnonzero(correct))]
    ax.set_yscale("log")
    if len(x) > 50:
        ax.set_xscale("log")
    top = ax.get_ylim()[1]
    ax.plot(ranks, np.full(ranks.shape, top), ls="none", marker="v", color="#2a9d8f", ms=5, clip_on=False,
            label="correct response")
    if labels is not None and len(ranks) <= 8:
        for rank, index in zip(ranks, order[ranks - 1]):
            ax.annotate(labels[index], (rank, top), xytext=(0, 6), textcoords="offset points", ha="center",
                        fontsize=7, color="#2a9d8f")
    ax.set_xlabel("response, ranked by the target's probability")
    ax.set_ylabel("probability")


def mass_by_length(probs: np.ndarray, lengths: np.ndarray, correct: np.ndarray, L: int) -> np.ndarray:
    """``(2, L)``: the mass of correct (row 0) and incorrect (row 1) responses of each length ``1..L``."""
    out = np.zeros((2, L))
    np.add.at(out[0], lengths[correct] - 1, probs[correct])
    np.add.at(out[1], lengths[~correct] - 1, probs[~correct])
    return out


def draw_length_mass(ax, target: np.ndarray, policies: Mapping[str, np.ndarray], lengths: np.ndarray,
                     correct: np.ndarray, colors: Mapping[str, str] | None = None) -> None:
    """Grouped bars per response length: for the target and each objective (or variant, coloured by
    ``colors``), the mass on correct (solid) and incorrect (light, stacked above) responses of that length."""
    L = int(lengths.max())
    series = {"target": target, **policies}
    width = 0.8 / len(series)
    for i, (name, probs) in enumerate(series.items()):
        m = mass_by_length(probs, lengths, correct, L)
        x = np.arange(1, L + 1) - 0.4 + (i + 0.5) * width
        color = OBJECTIVE_COLORS["target"] if name == "target" else (colors or {}).get(name, objective_color(name))
        ax.bar(x, m[0], width, color=color, label=None)
        ax.bar(x, m[1], width, bottom=m[0], color=color, alpha=0.3)
    ax.set_xticks(np.arange(1, L + 1))
    ax.set_xlabel("response length |y| (tokens, EOS included)")
    ax.set_ylabel("mass (solid: correct, light: incorrect)")


def draw_curves(ax, curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                ls: str = "-", label_suffix: str = "") -> None:
    """Learning curves: objective -> ``(steps, mean, lo, hi)``, a line and its band."""
    for name, (steps, mean, lo, hi) in curves.items():
        ax.plot(steps, mean, color=objective_color(name), ls=ls, lw=1.2,
                label=objective_label(name) + label_suffix)
        ax.fill_between(steps, lo, hi, color=objective_color(name), alpha=0.15, lw=0)


def plot_tree_run(target: np.ndarray, policies: Mapping[str, np.ndarray], lengths: np.ndarray,
                  correct: np.ndarray, curves: Mapping[str, Mapping[str, tuple]], *, labels: Sequence[str],
                  spread: Mapping[str, np.ndarray] | None = None, title: str = ""):
    """A token-tree run directory's figure: top, the response distribution against ``P_A`` (ranked) and the
    mass by length split into correct and incorrect; bottom, the learning curves (JS to ``P_A``; expected
    length of correct and of incorrect responses).

    Args:
        target: ``(R,)`` the target. policies: objective -> ``(R,)`` mean final policy over seeds.
        lengths: ``(R,)`` response lengths. correct: ``(R,)`` bool.
        curves: metric -> objective -> ``(steps, mean, lo, hi)`` for ``js_to_target``, ``length_correct``,
            ``length_incorrect``. labels: ``(R,)`` each response's tokens. spread: objective -> ``(2, R)``.
    """
    with _style():
        fig, axes = _figure(2, 2, figsize=(11.5, 7.2), gridspec_kw={"width_ratios": [1.6, 1]})
        draw_ranked(axes[0, 0], target, policies, correct, spread, labels)
        axes[0, 0].set_title(f"{len(target):,} responses against the target P_A")
        axes[0, 0].legend(fontsize=7.5, loc="lower left")
        draw_length_mass(axes[0, 1], target, policies, lengths, correct)
        axes[0, 1].set_title("final mass by length (target first)")
        draw_curves(axes[1, 0], curves["js_to_target"])
        axes[1, 0].set_yscale("log")
        axes[1, 0].set_xlabel("step")
        axes[1, 0].set_ylabel("JS to P_A (nats)")
        axes[1, 0].set_title("distance to the target over training")
        draw_curves(axes[1, 1], curves["length_correct"], "-", ": correct")
        draw_curves(axes[1, 1], curves["length_incorrect"], "--", ": incorrect")
        axes[1, 1].set_xlabel("step")
        axes[1, 1].set_ylabel("expected length (tokens)")
        axes[1, 1].set_title("length: correct (solid), incorrect (dashed)")
        axes[1, 1].legend(fontsize=7, ncol=1)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


VARIANT_COLORS = ("#d1495b", "#00798c", "#edae49", "#3d5a80", "#8e6c8a", "#6a994e", "#f08a4b", "#30343f")


def variant_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per variant of a study, in order."""
    return {name: VARIANT_COLORS[i % len(VARIANT_COLORS)] for i, name in enumerate(names)}


def plot_tree_targets(data, *, title: str = "", caption: str = "", axis: str = "variant"):
    """The token tree's response distributions against ``P_A``, one line per variant (a grid axis): ranked
    responses (left) and the mass by length, correct and incorrect (right); the legend gives each variant's JS
    to ``P_A`` (mean over seeds).

    ``data["policy"]``: ``<axis>, objective, seed, response, length, probability, target, reward``;
    ``data["summary"]``: ``<axis>, objective, metric, ...`` with ``js_to_target`` and ``correct_mass``.
    """
    policy, summary = data["policy"], data["summary"]
    variants = list(dict.fromkeys(policy[axis]))
    first = policy[(policy[axis] == variants[0]) & (policy["seed"] == policy["seed"].min())]
    target, lengths = first["target"].to_numpy(), first["length"].to_numpy()
    correct = first["reward"].to_numpy() >= 0.5 * (first["reward"].max() + first["reward"].min())
    js = summary[summary["metric"] == "js_to_target"].set_index(axis)["mean"]
    means = {f"{v} (JS {js[v]:.2g})": policy[policy[axis] == v].groupby("response", sort=False)["probability"]
             .mean().reindex(first["response"]).to_numpy() for v in variants}
    colors = variant_colors(list(means))
    with _style():
        fig, axes = _figure(1, 2, figsize=(12.5, 4.4), gridspec_kw={"width_ratios": [1.6, 1]})
        draw_ranked(axes[0], target, means, correct, labels=first["response"].tolist(), colors=colors)
        axes[0].set_title(f"{len(target)} responses against P_A (JS to P_A in nats, mean over seeds)")
        axes[0].legend(fontsize=7.5, loc="lower left")
        draw_length_mass(axes[1], target, means, lengths, correct, colors=colors)
        axes[1].set_title("final mass by length (target first)")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        _caption(fig, caption)
    return fig


def plot_tree_sweep(data, *, title: str = "", caption: str = "", x: str = "eta", lines: str = "L",
                    rows: str | None = None, metrics: Sequence[str] = ("js_to_target", "correct_mass")):
    """One panel per metric against the grid axis ``x`` (log scale), one line per value of the axis ``lines``,
    one row of panels per value of the axis ``rows`` (if given): mean and 95% bootstrap interval over seeds
    (``data["summary"]``)."""
    summary = data["summary"]
    groups = list(dict.fromkeys(summary[lines]))
    row_values = list(dict.fromkeys(summary[rows])) if rows else [None]
    colors = variant_colors([str(g) for g in groups])
    with _style():
        fig, axes = _figure(len(row_values), len(metrics), figsize=(5.2 * len(metrics), 3.6 * len(row_values)),
                            squeeze=False)
        for axes_row, value in zip(axes, row_values):
            part = summary if value is None else summary[summary[rows] == value]
            for ax, metric in zip(axes_row, metrics):
                m = part[part["metric"] == metric]
                for g in groups:
                    line = m[m[lines] == g].sort_values(x)
                    c = colors[str(g)]
                    ax.fill_between(line[x], line["lo"], line["hi"], color=c, alpha=0.2, lw=0)
                    ax.plot(line[x], line["mean"], color=c, marker="o", ms=3.5, lw=1.4, label=f"{lines} = {g}")
                ax.set_xscale("log")
                if metric.endswith("_to_target"):
                    ax.set_yscale("log")
                ax.set_xlabel(x)
                ax.set_ylabel(metric_label(metric))
                ax.set_title(metric_title(metric) + ("" if value is None else f"\n{rows}: {value}"), fontsize=10)
        axes[0, 0].legend(fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        _caption(fig, caption)
    return fig


def plot_variant_curves(data, *, title: str = "", caption: str = "", axis: str = "variant",
                        metrics: Sequence[str] = ("length_correct", "length_incorrect", "correct_mass")):
    """One panel per metric over the optimizer steps, one line per value of the grid axis ``axis``: mean and
    95% bootstrap interval over seeds (``data["curves"]``: ``<axis>, step, objective, metric, seeds, mean, lo,
    hi``)."""
    curves = data["curves"]
    variants = list(dict.fromkeys(curves[axis]))
    colors = variant_colors([str(v) for v in variants])
    with _style():
        fig, axes = _figure(1, len(metrics), figsize=(4.6 * len(metrics), 3.7), squeeze=False, layout="constrained")
        for ax, metric in zip(axes[0], metrics):
            m = curves[curves["metric"] == metric]
            for v in variants:
                rows = m[m[axis] == v].sort_values("step")
                c = colors[str(v)]
                ax.fill_between(rows["step"], rows["lo"], rows["hi"], color=c, alpha=0.2, lw=0)
                ax.plot(rows["step"], rows["mean"], color=c, lw=1.4, label=str(v))
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(metric_label(metric))
            ax.set_title(metric_title(metric), fontsize=10)
        seeds = int(curves["seeds"].min())
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8.5,
                   title=f"mean and 95% bootstrap interval over {seeds} seeds", title_fontsize=8.5)
        if title:
            fig.suptitle(title)
        _caption(fig, caption)
    return fig


# --- many prompts that share parameters (``ladsim.prompts``): pass@k against k ----------------------------

COVERAGE_LABELS = {"solved_base_only": "base only", "solved_trained_only": "trained only", "solved_both": "both"}
COVERAGE_COLORS = {"solved_base_only": "#30343f", "solved_trained_only": "#2a9d8f", "solved_both": "#bbbbbb"}
# the variants' colours: VARIANT_COLORS without the base's (the dark grey of the target)
PROMPT_COLORS = tuple(c for c in VARIANT_COLORS if c != OBJECTIVE_COLORS["target"]) + ("#9c6644",)


def draw_passk(ax, curves: Mapping[str, tuple], colors: Mapping[str, str], base: tuple | None = None) -> None:
    """pass@k against ``k`` (log2 axis): ``curves`` name -> ``(ks, mean, lo, hi)``, a line and its band each;
    ``base`` the base policy's, in black."""
    series = ({"base": base} if base is not None else {}) | dict(curves)
    for name, (ks, mean, lo, hi) in series.items():
        c = OBJECTIVE_COLORS["target"] if name == "base" else colors[name]
        ax.fill_between(ks, lo, hi, color=c, alpha=0.15, lw=0)
        ax.plot(ks, mean, color=c, lw=2.0 if name == "base" else 1.3, marker="o", ms=2.5, label=name,
                ls="--" if name == "base" else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("pass@k, mean over prompts")


def crossover_label(name: str, k: float | None, gap: float | None) -> str:
    """``name (crossover k = 8, gap -0.036)``, or ``name (no crossover)``."""
    if k is None or not np.isfinite(k):
        return f"{name} (no crossover)"
    return f"{name} (crossover k = {int(k)}, gap {gap:.2g})"


def draw_gap(ax, gaps: Mapping[str, tuple], colors: Mapping[str, str], crossover: Mapping[str, float | None]
             ) -> None:
    """``pass@k(trained) - pass@k(base)`` against ``k``: name -> ``(ks, mean, lo, hi)``; below 0 the base is
    ahead; each objective's crossover ``k`` (name -> ``k`` or ``None``: where its mean first drops below 0) is
    marked."""
    ax.axhline(0.0, color="#30343f", lw=0.8)
    for name, (ks, mean, lo, hi) in gaps.items():
        ax.fill_between(ks, lo, hi, color=colors[name], alpha=0.15, lw=0)
        ax.plot(ks, mean, color=colors[name], lw=1.3, marker="o", ms=2.5, label=name)
        k = crossover.get(name)
        if k is not None and np.isfinite(k):
            ax.plot([k], [np.interp(np.log2(k), np.log2(ks), mean)], marker="v", ms=8, color=colors[name],
                    mec="white", ls="none")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("pass@k trained - pass@k base")


def draw_coverage(ax, coverage: Mapping[str, Mapping[str, Mapping[str, float]]], k_max: int) -> None:
    """Grouped bars per objective: the expected share of prompts solved at ``k_max`` by a sample of the base
    only, of the trained policy only, and of both (``coverage`` name -> metric -> ``{mean, lo, hi}``), with the
    95% interval over seeds."""
    names = list(coverage)
    width = 0.8 / len(COVERAGE_LABELS)
    for i, metric in enumerate(COVERAGE_LABELS):
        x = np.arange(len(names)) - 0.4 + (i + 0.5) * width
        mean = np.array([coverage[n][metric]["mean"] for n in names])
        err = np.array([[mean[j] - coverage[n][metric]["lo"], coverage[n][metric]["hi"] - mean[j]]
                        for j, n in enumerate(names)]).T
        ax.bar(x, mean, width, yerr=err, color=COVERAGE_COLORS[metric], label=COVERAGE_LABELS[metric],
               error_kw={"lw": 0.8, "capsize": 2})
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"share of prompts solved at k = {k_max}")


def _passk_series(intervals, name_column: str, names: Sequence, policy: str) -> dict[str, tuple]:
    """name -> ``(ks, mean, lo, hi)`` of ``policy`` rows (``ladsim.passk.passk_intervals``)."""
    out = {}
    for name in names:
        rows = intervals[(intervals[name_column] == name) & (intervals["policy"] == policy)].sort_values("k")
        out[str(name)] = tuple(rows[c].to_numpy() for c in ("k", "mean", "lo", "hi"))
    return out


def plot_prompts_run(intervals, coverage: Mapping[str, Mapping[str, Mapping[str, float]]],
                     crossover: Mapping[str, int | None], gap: Mapping[str, float | None], *, k_max: int,
                     title: str = ""):
    """A many-prompt run directory's figure: pass@k against ``k`` for the base and each objective, the gap
    ``trained - base`` (the crossover marked), and the coverage at ``k_max``; 95% intervals over seeds.

    Args:
        intervals: ``ladsim.passk.passk_intervals`` of the run's ``passk`` frame.
        coverage: objective -> ``solved_*`` metric -> ``{mean, lo, hi}``.
        crossover: objective -> its crossover ``k`` or ``None``; gap: objective -> ``trained - base`` there.
    """
    names = list(dict.fromkeys(intervals["objective"]))
    colors = {n: objective_color(n) for n in names}
    base = _passk_series(intervals, "objective", names[:1], "base")[str(names[0])]
    with _style():
        fig, axes = _figure(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
        draw_passk(axes[0], _passk_series(intervals, "objective", names, "trained"), colors, base)
        axes[0].set_title("pass@k: base (dashed) and trained")
        axes[0].legend(fontsize=8)
        labels = {n: crossover_label(n, crossover.get(n), gap.get(n)) for n in names}
        draw_gap(axes[1], {labels[n]: v for n, v in _passk_series(intervals, "objective", names, "gap").items()},
                 {labels[n]: colors[n] for n in names}, {labels[n]: crossover.get(n) for n in names})
        axes[1].set_title("trained - base (below 0: the base is ahead; ▼ crossover)")
        axes[1].legend(fontsize=8, loc="lower left")
        draw_coverage(axes[2], coverage, k_max)
        axes[2].set_title(f"coverage at k = {k_max}")
        axes[2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_prompts_passk(data, *, title: str = "", caption: str = "", axis: str = "variant",
                       rows: str = "regime"):
    """The pass@k crossover study: one row of panels per value of the grid axis ``rows`` (e.g. on-policy,
    frozen ``pi_old``), one line per value of ``axis`` (the variants): pass@k against ``k`` with the base
    (dashed), the gap ``trained - base`` with each variant's crossover ``k`` and the gap there in the legend,
    and the coverage at the grid's largest ``k``. Mean and 95% bootstrap interval over seeds.

    ``data["passk"]``: ``<axis>, <rows>, objective, seed, k, policy, pass_at_k``; ``data["summary"]``:
    ``<axis>, <rows>, objective, metric, seeds, mean, lo, hi`` with the ``solved_*`` metrics.
    """
    from ladsim.passk import crossovers, passk_intervals

    passk, summary = data["passk"], data["summary"]
    intervals = passk_intervals(passk, [axis, rows])
    cross = crossovers(passk, [axis, rows])
    variants = list(dict.fromkeys(passk[axis]))
    colors = {str(v): PROMPT_COLORS[i % len(PROMPT_COLORS)] for i, v in enumerate(variants)}
    row_values = list(dict.fromkeys(passk[rows]))
    k_max = int(passk["k"].max())
    with _style():
        fig, axes = _figure(len(row_values), 3, figsize=(16, 4.4 * len(row_values)), squeeze=False,
                            gridspec_kw={"width_ratios": [1.1, 1.3, 1]})
        for ax_row, value in zip(axes, row_values):
            part = intervals[intervals[rows] == value]
            here = cross[cross[rows] == value].set_index(axis)
            ks_of = here["crossover_k"]
            labels = {str(v): crossover_label(str(v), ks_of[v], here.loc[v, "gap"]) for v in variants}
            named = {labels[str(v)]: colors[str(v)] for v in variants}
            base = _passk_series(part, axis, variants[:1], "base")[str(variants[0])]
            trained = {labels[k]: v for k, v in _passk_series(part, axis, variants, "trained").items()}
            gaps = {labels[k]: v for k, v in _passk_series(part, axis, variants, "gap").items()}
            draw_passk(ax_row[0], trained, named, base)
            ax_row[0].set_title(f"{value}: pass@k, base dashed", fontsize=10)
            draw_gap(ax_row[1], gaps, named, {labels[str(v)]: ks_of[v] for v in variants})
            ax_row[1].set_title(f"{value}: trained - base (▼ crossover)", fontsize=10)
            ax_row[1].legend(fontsize=7, loc="lower left")
            s = summary[summary[rows] == value]
            coverage = {str(v): {m: s[(s[axis] == v) & (s["metric"] == m)].iloc[0][["mean", "lo", "hi"]].to_dict()
                                 for m in COVERAGE_LABELS} for v in variants}
            draw_coverage(ax_row[2], coverage, k_max)
            ax_row[2].set_title(f"{value}: coverage at k = {k_max}", fontsize=10)
        axes[0, 2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        seeds = int(intervals["seeds"].min())
        fig.suptitle((f"{title}\n" if title else "") + f"mean and 95% bootstrap interval over {seeds} seeds")
        fig.tight_layout()
        _caption(fig, caption)
    return fig


# --- every objective side by side: the catalogue study (figs 12, 13) --------------------------------------

def plot_objective_bars(data, *, title: str = "", caption: str = "", axis: str = "objective",
                        rows: str | None = None,
                        metrics: Sequence[str] = ("correct_mass", "mode_coverage", "length_incorrect")):
    """One panel per metric (and per value of the grid axis ``rows``, one row each), one horizontal bar per value
    of the grid axis ``axis`` (every objective, in the study's order): the final mean over seeds with its 95%
    bootstrap interval (``data["summary"]``: ``[<rows>,] <axis>, objective, metric, seeds, mean, lo, hi``)."""
    summary = data["summary"]
    names = list(dict.fromkeys(summary[axis]))
    row_values = [None] if rows is None else list(dict.fromkeys(summary[rows]))
    y = np.arange(len(names))
    cycle = variant_colors([str(n) for n in names])  # the registry's colour where an objective has one
    colors = [OBJECTIVE_COLORS.get(str(n), cycle[str(n)]) for n in names]
    with _style():
        fig, axes = _figure(len(row_values), len(metrics), squeeze=False, layout="constrained", sharey=True,
                            figsize=(3.3 * len(metrics) + 1.2, (0.26 * len(names) + 1.0) * len(row_values) + 0.8))
        for r, row_value in enumerate(row_values):
            part = summary if rows is None else summary[summary[rows] == row_value]
            for c, metric in enumerate(metrics):
                ax = axes[r, c]
                m = part[part["metric"] == metric].set_index(axis).reindex(names)
                mean, lo, hi = (m[k].to_numpy(dtype=float) for k in ("mean", "lo", "hi"))
                ax.barh(y, mean, color=colors, alpha=0.85, height=0.7)
                ax.errorbar(mean, y, xerr=np.vstack([mean - lo, hi - mean]), fmt="none", ecolor="#30343f", lw=0.9,
                            capsize=2)
                ax.set_title(metric_title(metric) + ("" if row_value is None else f"\n{row_value}"), fontsize=9.5)
                ax.set_xlabel(metric_label(metric))
                ax.grid(axis="x", alpha=0.3)
            axes[r, 0].set_yticks(y, [str(n) for n in names])
        axes[0, 0].invert_yaxis()
        seeds = int(summary["seeds"].min())
        fig.suptitle((f"{title}\n" if title else "") + f"final mean and 95% bootstrap interval over {seeds} seeds",
                     fontsize=10.5)
        _caption(fig, caption)
    return fig


FIGURES = {
    "distribution": plot_distribution_figure,
    "landscape": plot_landscape_figure,
    "eta_sweep": plot_eta_sweep,
    "divergence_ablation": plot_divergence_ablation,
    "regime_map": plot_regime_map,
    "objectives": plot_objectives_figure,
    "tree_targets": plot_tree_targets,
    "tree_sweep": plot_tree_sweep,
    "variant_curves": plot_variant_curves,
    "prompts_passk": plot_prompts_passk,
    "objective_bars": plot_objective_bars,
}
