"""The run directory's quick-look figure (ladsim.quicklook): ticks, binning of many arms, and that the bandit
run's figure shows the final distributions and the learning curves, the same bytes for the same data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ladsim import quicklook
from ladsim.plots import objective_color
from ladsim.quicklook import arm_bins, bandit_run_figure, linear_ticks, log_ticks, tick_label


def test_ticks_are_round_and_inside_the_limits():
    assert linear_ticks(0, 0.37, 4) == pytest.approx([0, 0.1, 0.2, 0.3])
    assert linear_ticks(0, 4000, 4) == pytest.approx([0, 1000, 2000, 3000, 4000])
    assert log_ticks(1e-10, 1) == pytest.approx([1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1])
    assert [tick_label(t, [0, 0.5, 1.0]) for t in (0, 0.5, 1.0)] == ["0.0", "0.5", "1.0"]
    assert [tick_label(t, [], log=True) for t in (1e-10, 1.0, 10.0)] == ["1e-10", "1", "10"]


def test_many_arms_are_binned_by_pixel_column_keeping_their_peaks():
    few = np.linspace(0, 1, 50)
    left, right, value = arm_bins(few, 500)
    assert len(value) == 50 and np.array_equal(value, few) and np.allclose(right - left, 0.8)
    many = np.random.default_rng(0).random(151_936)
    many[123_456] = 7.0
    left, right, value = arm_bins(many, 460)
    assert len(value) <= 460 and value.max() == 7.0 and left[0] == -0.5 and right[-1] == 151_936 - 0.5
    assert np.array_equal(left[1:], right[:-1])  # the columns tile the arms
    assert arm_bins(many, 460, np.minimum)[2].max() < 1  # the lower band takes each column's minimum


def run_figure(curve_scale: float = 1.0, seeds: int = 4):
    n, steps = 40, np.arange(0, 201, 10)
    target = np.exp(-0.5 * ((np.arange(n) - 12) / 3) ** 2)
    target /= target.sum()
    policies = {"grpo": np.eye(n)[12], "lad": target}
    decay = np.exp(-steps / 50)
    curves = {metric: {name: (steps, curve_scale * (k + 1) * decay, 0.8 * curve_scale * decay,
                              1.2 * curve_scale * (k + 1) * decay) for k, name in enumerate(policies)}
              for metric in quicklook.CURVES}
    return bandit_run_figure(target, policies, curves, seeds=seeds, title="test",
                             spread={"lad": np.stack([0.9 * target, 1.1 * target])}, notes={"lad": "JS 0"})


def pixels_of(image: Image.Image, color: str, box: tuple) -> int:
    """How many pixels in ``box`` are within a few levels of ``color``."""
    pixels = np.asarray(image.crop(box).convert("RGB"), dtype=int)
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(-1) <= 12).sum())


def test_the_run_figure_shows_the_distributions_above_and_the_curves_below(tmp_path):
    path = tmp_path / "run.png"
    run_figure().save(path)
    image = Image.open(path)
    width, height = image.size
    assert width == 3 * quicklook.PANEL_W  # target + two objectives: the three curve panels set the width
    upper, lower = (0, 0, width, height // 2), (0, height // 2 + 40, width, height)  # the legend row excluded
    for name in ("grpo", "lad"):
        assert pixels_of(image, objective_color(name), upper) > 40, name  # its final policy's bars
        assert pixels_of(image, objective_color(name), lower) > 40, name  # its learning curves
    assert pixels_of(image, "#00ff00", lower) == 0  # (the measure can fail)


def test_the_run_figure_is_the_same_bytes_for_the_same_data(tmp_path):
    run_figure().save(tmp_path / "a.png")
    run_figure().save(tmp_path / "b.png")
    run_figure(curve_scale=0.5).save(tmp_path / "c.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_a_log_axis_takes_zeros_and_one_seed_draws_no_band(tmp_path):
    n = 6
    steps = np.arange(3)
    zeros = {metric: {"lad": (steps, np.zeros(3), np.zeros(3), np.zeros(3))} for metric in quicklook.CURVES}
    bandit_run_figure(np.full(n, 1 / n), {"lad": np.full(n, 1 / n)}, zeros, seeds=1).save(tmp_path / "z.png")
    assert Image.open(tmp_path / "z.png").size[0] == 3 * quicklook.PANEL_W
