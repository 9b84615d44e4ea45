"""Quick-look figures of run directories, drawn on a Pillow image in a few tens of milliseconds.

``ladsim run bandit`` has 0.6 s for everything beyond torch's import (issue 22), its figure included, and
matplotlib cannot fit in it: importing ``matplotlib.figure`` costs 0.35-0.45 s on a 2-core machine and drawing
and saving a run's seven panels another 0.3-0.5 s (log-axis labels go through mathtext; measured 2026-12-03).
The panels here need little of it: axes with ticks, bars, lines, bands over seeds and text, which this module
draws with ``PIL.ImageDraw`` (already installed: matplotlib depends on Pillow). The figures of the studies
(``ladsim.plots``) stay matplotlib's: vector PDFs for papers, drawn off a user's first run.

Everything is drawn at ``SCALE`` times the final size and reduced by a box filter, which antialiases lines and
text. The PNG holds no date, so the same data gives the same bytes. Coordinates: a :class:`Canvas` in final
pixels (x to the right, y down); a :class:`Panel` maps data to it, y linear or logarithmic.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

SCALE = 2  # supersampling factor
TICK, LABEL, TITLE, NOTE = 9.5, 10, 11.5, 9  # font sizes, final pixels
INK = (48, 52, 63)  # text and axes (plots.OBJECTIVE_COLORS["target"])
GRID = (228, 228, 228)
FONT_FILE = "DejaVuSans.ttf"  # matplotlib's default font, shipped in its mpl-data


@lru_cache(maxsize=None)
def font(size: float):
    """The figure font at ``size`` final pixels (times ``SCALE``): DejaVu Sans from matplotlib's data
    directory, found without importing matplotlib; Pillow's own default font where it is missing."""
    from PIL import ImageFont

    px = round(size * SCALE)
    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "mpl-data" / "fonts" / "ttf" / FONT_FILE
        if path.is_file():
            return ImageFont.truetype(str(path), px)
    return ImageFont.load_default(px)


def hex_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``."""
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) within ``[lo, hi]``."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Powers of ten within ``[lo, hi]``, every k-th one so that at most about ``count`` remain."""
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    every = max(1, math.ceil((last - first + 1) / count))
    return [10.0 ** e for e in range(last, first - 1, -every)][::-1]


def tick_label(value: float, ticks: Sequence[float], log: bool = False) -> str:
    """A tick's text: ``1e-6`` on a log axis, else as many decimals as the ticks' spacing needs."""
    if log:
        e = round(math.log10(value))
        return "1" if e == 0 else "10" if e == 1 else f"1e{e}"
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


class Canvas:
    """A white image of ``width x height`` final pixels to draw panels and text on."""

    def __init__(self, width: int, height: int):
        from PIL import Image, ImageDraw

        self.width, self.height = width, height
        self.image = Image.new("RGB", (width * SCALE, height * SCALE), "white")
        self.draw = ImageDraw.Draw(self.image, "RGBA")  # RGBA: fills with alpha blend over what is drawn

    def text(self, xy: tuple[float, float], text: str, size: float = 10, anchor: str = "la",
             fill: tuple = INK, vertical: bool = False) -> None:
        """``text`` at ``xy`` (final pixels), placed by Pillow's ``anchor`` (e.g. ``"mm"``: its middle);
        ``vertical``: read bottom to top (a y-axis label), ``anchor`` then applies to the turned text."""
        x, y = xy[0] * SCALE, xy[1] * SCALE
        if not vertical:
            self.draw.multiline_text((x, y), text, fill=fill, font=font(size), anchor=anchor, spacing=2 * SCALE)
            return
        from PIL import Image, ImageDraw

        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font(size), anchor="lt")
        strip = Image.new("L", (right - left + 2, bottom - top + 2), 0)
        ImageDraw.Draw(strip).text((1 - left, 1 - top), text, fill=255, font=font(size), anchor="lt")
        strip = strip.rotate(90, expand=True)
        w, h = strip.size
        ox = {"l": 0, "m": w / 2, "r": w}[anchor[0]]
        oy = {"a": 0, "t": 0, "m": h / 2, "b": h, "d": h}[anchor[1]]
        self.image.paste(Image.new("RGB", strip.size, fill), (round(x - ox), round(y - oy)), strip)

    def legend(self, xy: tuple[float, float], entries: Sequence[tuple[str, tuple | None]]) -> None:
        """One row of labels from ``xy`` (its left middle), each after a line swatch of its colour (none for
        ``None``)."""
        x, y = xy
        for label, color in entries:
            if color is not None:
                self.draw.line([(x * SCALE, y * SCALE), ((x + 18) * SCALE, y * SCALE)], fill=color, width=3 * SCALE)
                x += 22
            self.text((x, y), label, size=LABEL, anchor="lm")
            x += self.draw.textlength(label, font=font(LABEL)) / SCALE + 28

    def save(self, path: str | Path) -> None:
        """The image reduced to its final size, as PNG at ``path`` (no metadata, so no date)."""
        self.image.reduce(SCALE).save(path, format="PNG")


class Panel:
    """A plot area ``box = (left, top, right, bottom)`` of a canvas (final pixels) showing ``xlim x ylim``;
    ``ylog``: a logarithmic y axis (limits > 0)."""

    def __init__(self, canvas: Canvas, box: tuple[float, float, float, float], xlim: tuple[float, float],
                 ylim: tuple[float, float], ylog: bool = False):
        self.canvas, self.box, self.xlim, self.ylog = canvas, box, xlim, ylog
        self.ylim = (math.log10(ylim[0]), math.log10(ylim[1])) if ylog else ylim

    def px(self, x) -> np.ndarray:
        """Data x -> image pixels (scaled)."""
        (x0, x1), (left, _, right, _) = self.xlim, self.box
        return SCALE * (left + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * (right - left))

    def py(self, y) -> np.ndarray:
        """Data y -> image pixels (scaled), clipped to the panel."""
        y = np.asarray(y, dtype=float)
        if self.ylog:
            y = np.log10(np.maximum(y, 10.0 ** self.ylim[0]))
        (y0, y1), (_, top, _, bottom) = self.ylim, self.box
        frac = np.clip((y - y0) / (y1 - y0), 0.0, 1.0)
        return SCALE * (bottom - frac * (bottom - top))

    def bars(self, left, right, height, color: tuple, base: float = 0.0) -> None:
        """Rectangles from ``base`` to ``height`` over ``[left, right]`` (arrays of one length)."""
        xs0, xs1, ys = self.px(left), self.px(right), self.py(height)
        y0 = float(self.py(base))
        for a, b, y in zip(xs0, xs1, ys):
            if y < y0:
                self.canvas.draw.rectangle((a, y, max(a, b - 1), y0), fill=color)

    def line(self, x, y, color: tuple, width: float = 1.5) -> None:
        """A polyline through ``(x, y)``."""
        points = list(zip(self.px(x).tolist(), self.py(y).tolist()))
        self.canvas.draw.line(points, fill=color, width=max(1, round(width * SCALE)), joint="curve")

    def band(self, x, lo, hi, color: tuple, alpha: float = 0.22) -> None:
        """The area between ``lo`` and ``hi`` over ``x``, translucent."""
        xs = self.px(x).tolist()
        points = list(zip(xs, self.py(hi).tolist())) + list(zip(xs[::-1], self.py(lo)[::-1].tolist()))
        self.canvas.draw.polygon(points, fill=(*color, round(255 * alpha)))

    def vlines(self, x, lo, hi, color: tuple, width: float = 0.8) -> None:
        """A vertical segment from ``lo`` to ``hi`` at each ``x``."""
        w = max(1, round(width * SCALE))
        for a, y0, y1 in zip(self.px(x), self.py(lo), self.py(hi)):
            self.canvas.draw.line([(a, y0), (a, y1)], fill=color, width=w)

    def note(self, text: str, size: float = NOTE) -> None:
        """Text in the panel's upper left corner."""
        left, top = self.box[:2]
        self.canvas.text((left + 6, top + 4), text, size=size)

    def grid(self, yticks: Sequence[float]) -> None:
        """Light horizontal lines at ``yticks`` (draw them before the data)."""
        left, _, right, _ = self.box
        for t in yticks:
            y = float(self.py(t))
            self.canvas.draw.line([(left * SCALE, y), (right * SCALE, y)], fill=GRID, width=SCALE)

    def axes(self, title: str = "", xlabel: str = "", ylabel: str = "", xticks: Sequence[float] = (),
             yticks: Sequence[float] = (), ylabels: Sequence[str] | None = None) -> None:
        """Left and bottom axis lines with ``xticks``/``yticks`` (labelled), the axis labels and ``title`` above
        the panel."""
        c, (left, top, right, bottom) = self.canvas, self.box
        d, s = c.draw, SCALE
        if ylabels is None:
            ylabels = [tick_label(t, yticks, self.ylog) for t in yticks]
        for t, label in zip(yticks, ylabels):
            y = float(self.py(t))
            d.line([(left * s - 4 * s, y), (left * s, y)], fill=INK, width=s)
            c.text((left - 6, y / s), label, size=TICK, anchor="rm")
        xlabels = [tick_label(t, xticks) for t in xticks]
        for t, label in zip(xticks, xlabels):
            x = float(self.px(t))
            d.line([(x, bottom * s), (x, bottom * s + 4 * s)], fill=INK, width=s)
            c.text((x / s, bottom + 6), label, size=TICK, anchor="ma")
        d.line([(left * s, top * s), (left * s, bottom * s), (right * s, bottom * s)], fill=INK, width=s)
        if title:
            c.text(((left + right) / 2, top - 6), title, size=TITLE, anchor="md")
        if xlabel:
            c.text(((left + right) / 2, bottom + 21), xlabel, size=LABEL, anchor="ma")
        if ylabel:
            width = max((c.draw.textlength(label, font=font(TICK)) for label in ylabels), default=0) / s
            c.text((left - 12 - width, (top + bottom) / 2), ylabel, size=LABEL, anchor="mb", vertical=True)


def arm_bins(values: np.ndarray, columns: int, reduce=np.maximum) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(left, right, value)`` of the bars that show ``values`` over arms ``0..N-1`` on an axis of
    ``columns`` pixels: one bar per arm (80% of its slot) while there are at most a third as many arms as
    pixels, else one per pixel column holding the ``reduce`` (max, or ``np.minimum``) of its arms, so that
    151,936 arms cost no more to draw than 500."""
    n = len(values)
    arms = np.arange(n)
    if 3 * n <= columns:
        return arms - 0.4, arms + 0.4, values
    col = arms * columns // n
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    edges = np.r_[starts, n] - 0.5
    return edges[:-1], edges[1:], reduce.reduceat(values, starts)


def step_outline(left: np.ndarray, right: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stepped outline ``(x, y)`` over bars ``(left, right, value)`` (their tops joined)."""
    edges = np.r_[left[0], (right[:-1] + left[1:]) / 2, right[-1]]
    return np.repeat(edges, 2)[1:-1], np.repeat(value, 2)


# --- the bandit run's figure ------------------------------------------------------------------------------

CURVES = {"js_to_target": ("JS to P_A (nats, log scale)", True), "entropy": ("entropy (nats)", False),
          "top_arm_mass": ("mass on the top arm", False)}  # metric -> (panel title, log y)
Curve = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # steps (T,), mean (T,), lo (T,), hi (T,)


def bandit_run_figure(target: np.ndarray, policies: Mapping[str, np.ndarray],
                      curves: Mapping[str, Mapping[str, Curve]], *, spread: Mapping[str, np.ndarray] | None = None,
                      notes: Mapping[str, str] | None = None, title: str = "", seeds: int = 1) -> Canvas:
    """A bandit run at a glance: the target ``P_A`` beside each objective's final policy (the layout of the
    paper's Figure 1, the target outlined over each policy), and below, the learning curves of ``CURVES``
    (JS to ``P_A``, entropy, mass on the top arm over the steps), one line per objective.

    Args:
        target: ``(N,)`` the target distribution ``P_A``.
        policies: objective -> ``(N,)`` final policy (mean over seeds).
        curves: metric of ``CURVES`` -> objective -> ``(steps, mean, lo, hi)``, each ``(T,)``: the mean over
            seeds and the band drawn around it (``lo = hi`` draws none).
        spread: optional objective -> ``(2, N)`` lower/upper band of the final policy over seeds.
        notes: optional objective -> text for the corner of its panel.
        seeds: how many seeds the means are over (said in the legend).
    Returns the :class:`Canvas` (``.save(path)`` writes the PNG).
    """
    from ladsim.plots import objective_color, objective_label

    names = list(policies)
    spread, notes = spread or {}, notes or {}
    width = PANEL_W * max(len(names) + 1, len(CURVES))
    head = 34 if title else 8
    canvas = Canvas(width, head + 2 * ROW_H + 30)
    if title:
        canvas.text((width / 2, 10), title, size=12.5, anchor="ma")
    explain = "outlined in every panel:\nthe target P_A"
    if spread:
        explain += f"\nbars: mean of {seeds} seeds,\nblack: their 95% range"
    for i, name in enumerate(["target", *names]):
        box = (i * PANEL_W + MARGIN_L, head + 30, (i + 1) * PANEL_W - MARGIN_R, head + ROW_H - 46)
        if name == "target":
            distribution_panel(canvas, box, target, None, "target P_A ∝ π_old exp(A/η)", INK, note=explain,
                               ylabel="probability")
        else:
            distribution_panel(canvas, box, policies[name], target, objective_label(name),
                               hex_rgb(objective_color(name)), spread.get(name), notes.get(name, ""))

    top = head + ROW_H
    colors = {name: hex_rgb(objective_color(name)) for name in names}
    legend = [(f"over the steps: mean of {seeds} seeds" + (", band: their 95% range" if seeds > 1 else ""), None)]
    canvas.legend((20, top + 10), legend + [(objective_label(name), colors[name]) for name in names])
    curve_w = width / len(CURVES)
    for i, (metric, (panel_title, ylog)) in enumerate(CURVES.items()):
        box = (i * curve_w + MARGIN_L + 6, top + 52, (i + 1) * curve_w - MARGIN_R, top + ROW_H - 24)
        curve_panel(canvas, box, curves[metric], colors, panel_title, ylog)
    return canvas


PANEL_W, ROW_H, MARGIN_L, MARGIN_R = 270, 240, 58, 12  # a distribution panel's width, a row's height, margins


def distribution_panel(canvas: Canvas, box: tuple, probs: np.ndarray, target: np.ndarray | None, title: str,
                       color: tuple, spread: np.ndarray | None = None, note: str = "", ylabel: str = "") -> None:
    """``probs (N,)`` as bars in ``box``, with the ``target`` outlined over them, the ``spread (2, N)`` over
    seeds (a black line per arm, or a grey band where arms share pixel columns) and ``note`` in the corner."""
    n, columns = len(probs), int(box[2] - box[0]) * SCALE
    top = 1.5 * max([probs.max()] + ([] if target is None else [target.max()])
                    + ([] if spread is None else [spread[1].max()]))  # headroom for the note
    panel = Panel(canvas, box, (-1, n), (0, top))
    yticks = linear_ticks(0, top, 4)
    panel.grid(yticks)
    lo, hi, value = arm_bins(probs, columns)
    panel.bars(lo, hi, value, color)
    if spread is not None and len(lo) == n:
        panel.vlines(np.arange(n), spread[0], spread[1], (0, 0, 0))
    elif spread is not None:
        x, below = step_outline(lo, hi, arm_bins(spread[0], columns, np.minimum)[2])
        panel.band(x, below, step_outline(lo, hi, arm_bins(spread[1], columns)[2])[1], (0, 0, 0), 0.35)
    if target is not None:
        panel.line(*step_outline(*arm_bins(target, columns)), INK, width=1.0)
    if note:
        panel.note(note)
    panel.axes(title, "arm index", ylabel, linear_ticks(0, n - 1, 4), yticks)


def curve_panel(canvas: Canvas, box: tuple, series: Mapping[str, Curve], colors: Mapping[str, tuple], title: str,
                ylog: bool) -> None:
    """One learning curve per objective (``series``: name -> ``(steps, mean, lo, hi)``) with its band, the first
    drawn widest so that curves which coincide stay visible; y from 0, or logarithmic over the decades the
    values span (values <= 0 sit on the axis)."""
    steps = np.concatenate([s[0] for s in series.values()])
    values = np.concatenate([np.r_[s[1], s[2], s[3]] for s in series.values()])
    if ylog:
        positive = values[values > 0]
        low = max(positive.min() if positive.size else 1e-16, 1e-16)
        ylim = (10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(max(values.max(), low))))
        ylim = ylim if ylim[1] > ylim[0] else (ylim[0], 10 * ylim[0])
        yticks = log_ticks(*ylim)
    else:
        ylim = (0.0, max(values.max(), 1e-12) * 1.08)
        yticks = linear_ticks(*ylim, 4)
    panel = Panel(canvas, box, (0, max(steps.max(), 1)), ylim, ylog=ylog)
    panel.grid(yticks)
    for k, (name, (x, mean, lo, hi)) in enumerate(series.items()):
        if np.any(hi > lo):
            panel.band(x, lo, hi, colors[name])
        panel.line(x, mean, colors[name], width=max(1.2, 3.2 - 0.8 * k))
    panel.axes(title, "optimizer step", "", linear_ticks(0, steps.max(), 4), yticks)
