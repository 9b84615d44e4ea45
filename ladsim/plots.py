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
