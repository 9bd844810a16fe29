"""The loss curve drawn after each stage (training/training_log.py)."""

from __future__ import annotations

import math

from PIL import Image

from training.training_log import _smooth, plot_loss


def test_the_smoothed_curve_follows_a_steep_fall_without_lag():
    # a short stage: 30 logged rows of a loss that falls from 6 to 0.1, as the demo's stage 2 does
    losses = [0.1 + 6 * math.exp(-k / 3) for k in range(30)]
    smooth = _smooth(losses)
    assert len(smooth) == len(losses) and smooth[0] == losses[0] and smooth[-1] == losses[-1]
    assert abs(smooth[-1] - losses[-1]) < 0.05 * losses[-1] + 0.01, (smooth[-1], losses[-1])
    assert all(abs(s - v) <= max(losses) - min(losses) for s, v in zip(smooth, losses, strict=True))
    # a long stage is smoothed over a window: noise around a flat line shrinks, the line does not move
    noisy = [1.0 + (0.5 if k % 2 else -0.5) for k in range(1000)]
    assert all(abs(s - 1.0) < 0.05 for s in _smooth(noisy)[60:-60])


def test_plot_writes_one_panel_per_stage(tmp_path):
    rows = [{"step": str(k), "loss": str(5 / k)} for k in range(1, 40)]
    png = plot_loss([("stage 1", rows), ("stage 2", rows)], tmp_path / "curve.png")
    with Image.open(png) as image:
        assert image.width > 300 and image.height > 300
