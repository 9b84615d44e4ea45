"""Figures: one function per figure, drawing only what it is given (no training, no computation beyond layout).

One style for every figure: the colours and labels of the objectives below, labelled axes, PNG (for the
README) and, where asked, PDF (for papers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ladsim.io import atomic_file  # noqa: E402

OBJECTIVE_COLORS = {"grpo": "#d1495b", "lad": "#00798c", "lad-theory": "#edae49", "target": "#30343f"}
OBJECTIVE_LABELS = {"grpo": "GRPO", "lad": "LAD (practical)", "lad-theory": "LAD (theoretical)",
                    "target": r"target $P_A \propto \pi_{old}\,e^{A/\eta}$"}

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
            fig.savefig(tmp, format=fmt)
        written.append(target)
    plt.close(fig)
    return written


def plot_distribution(target: np.ndarray, policies: Mapping[str, np.ndarray], *, title: str = "",
                      spread: Mapping[str, np.ndarray] | None = None):
    """The target distribution beside each objective's final policy (the layout of the paper's Figure 1).

    Args:
        target: ``(N,)`` the advantage-induced target distribution.
        policies: objective -> ``(N,)`` final policy (mean over seeds).
        spread: optional objective -> ``(2, N)`` lower/upper band over seeds.
    Returns the matplotlib figure.
    """
    arms = np.arange(len(target))
    panels = [("target", target)] + list(policies.items())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 2.7), sharey=False)
        axes = np.atleast_1d(axes)
        for ax, (name, probs) in zip(axes, panels):
            ax.bar(arms, probs, width=0.9, color=objective_color(name), alpha=0.9,
                   label="policy" if name != "target" else None)
            if spread is not None and name in spread:
                lo, hi = spread[name]
                ax.vlines(arms, lo, hi, color="black", lw=0.8)
            if name != "target":
                ax.step(arms, target, where="mid", color=OBJECTIVE_COLORS["target"], lw=1.0, ls="--",
                        label="target")
                ax.legend(loc="upper right", fontsize=8)
            ax.set_title(objective_label(name))
            ax.set_xlabel("arm index")
            ax.set_xlim(-1, len(target))
        axes[0].set_ylabel("probability")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


# --- the study figures (``ladsim.studies``): one function per figure, ``fn(data, *, title, **options)`` -------
# ``data`` maps a frame name to the tidy DataFrame the study saved (``figures/data/<study>_<frame>.csv``).

DIVERGENCE_LABELS = {"tv": "TV", "hd": "Hellinger", "js": "JS", "kl": "KL", "rkl": "rKL", "jf": "Jeffreys",
                     "pearson": r"Pearson $\chi^2$", "neyman": r"Neyman $\chi^2$"}
CLASS_COLORS = {"strict": "#00798c", "non-strict": "#8d6a9f", None: "#9a9a9a"}
METRIC_LABELS = {
    "expected_reward": "expected reward",
    "entropy": "entropy (nats)",
    "mode_coverage": "modes kept",
    "js_to_target": r"JS to $P_A$ (nats)",
    "tv_to_target": r"TV to $P_A$",
    "kl_to_target": r"KL to $P_A$ (nats)",
    "top_arm_mass": "mass on the top arm",
}


def metric_label(name: str) -> str:
    if name in METRIC_LABELS:
        return METRIC_LABELS[name]
    kind, _, k = name.partition("@")
    if kind == "pass":
        return f"pass@{k} (P[a correct arm in {k} pulls])"
    if kind == "distinct":
        return f"distinct@{k} (correct arms found in {k} pulls)"
    return name


def _caption(fig, text: str) -> None:
    if text:
        fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=9, wrap=True, color="#30343f")


def plot_distribution_figure(data, *, title: str = "", caption: str = ""):
    """Figure 1: the target ``P_A`` beside each objective's final policy, with its distance to ``P_A``.

    ``data["policy"]``: ``objective, seed, arm, probability, target, reward``; ``data["final"]``: the metrics
    at the last step (``js_to_target``, ``mode_coverage``). Seeds are averaged per arm.
    """
    policy, final = data["policy"], data["final"]
    objectives = list(dict.fromkeys(policy["objective"]))
    target = policy[policy["objective"] == objectives[0]].groupby("arm")["target"].first().to_numpy()
    n_modes = int(final["modes"].iloc[0])
    arms = np.arange(len(target))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 1 + len(objectives), figsize=(3.2 * (1 + len(objectives)), 2.9))
        ax = axes[0]
        ax.bar(arms, target, width=0.9, color=OBJECTIVE_COLORS["target"])
        ax.set_title(r"target $P_A \propto \pi_{old}\,e^{A/\eta}$")
        ax.set_ylabel("probability")
        for ax, objective in zip(axes[1:], objectives):
            probs = policy[policy["objective"] == objective].groupby("arm")["probability"].mean().to_numpy()
            ax.bar(arms, probs, width=0.9, color=objective_color(objective), label="final policy")
            ax.step(arms, target, where="mid", color=OBJECTIVE_COLORS["target"], lw=1.1, ls="--",
                    label=r"target $P_A$")
            row = final[final["objective"] == objective]
            ax.text(0.03, 0.97, f"JS to $P_A$ = {row['js_to_target'].mean():.2g} nats\n"
                    f"modes kept: {row['mode_coverage'].mean():.0f} of {n_modes}\n"
                    f"top arm: {row['top_arm_mass'].mean():.2f}",
                    transform=ax.transAxes, va="top", ha="left", fontsize=8.5)
            ax.set_title(objective_label(objective))
            ax.set_ylim(0, max(probs.max(), target.max()) * 1.45)
        axes[1].legend(loc="upper right", fontsize=8)
        for ax in axes:
            ax.set_xlabel("arm index")
            ax.set_xlim(-1, len(target))
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        _caption(fig, caption)
    return fig


def plot_landscape_figure(data, *, title: str = "", caption: str = ""):
    """Figure 2: contours of practical LAD over ``(theta1, theta2)`` (``theta3 = 0``), each objective's path
    from the common start and the closed-form optimum; one panel per divergence (top to bottom).

    ``data["grid"]``: ``div, theta1, theta2, loss``; ``data["trajectory"]``: ``div, objective, step, theta1,
    theta2, loss``; ``data["optimum"]``: ``div, theta1, theta2, pi1, pi2, pi3``.
    """
    grid, paths, optimum = data["grid"], data["trajectory"], data["optimum"]
    divs = list(dict.fromkeys(grid["div"]))
    styles = {"grpo": dict(lw=2.2, ls="-", zorder=3), "lad": dict(lw=4.0, ls="-", zorder=3, alpha=0.85),
              "lad-theory": dict(lw=1.8, ls=(0, (3, 2)), zorder=4)}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(divs), 1, figsize=(5.6, 4.3 * len(divs) + 0.9), squeeze=False)
        for ax, div in zip(axes[:, 0], divs):
            g = grid[grid["div"] == div]
            t1 = np.sort(g["theta1"].unique())
            t2 = np.sort(g["theta2"].unique())
            loss = g.pivot(index="theta2", columns="theta1", values="loss").loc[t2, t1].to_numpy()
            levels = np.geomspace(loss.min(), loss.max(), 16)
            filled = ax.contourf(t1, t2, loss, levels=levels, cmap="Greys_r", norm=matplotlib.colors.LogNorm())
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
            ax.text(0.02, 0.02, f"after {int(p['step'].max())} steps, $(\\theta_1, \\theta_2)$ =\n" + "\n".join(ends)
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


FIGURES = {
    "distribution": plot_distribution_figure,
    "landscape": plot_landscape_figure,
}
