"""Figures of the grounding notebook: a video's frames with its moment, training curves, predicted vs true spans."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from tvgkit.data.records import Record


def show_frames(frames: np.ndarray, fps: float, record: Record, n: int = 8) -> Figure:
    """``n`` evenly spaced frames; those inside the query's moment get a red title."""
    times = np.linspace(0, (len(frames) - 1) / fps, n)
    start, end = record.window
    fig, axes = plt.subplots(1, n, figsize=(1.4 * n, 2.0))
    for ax, t in zip(axes, times, strict=True):
        ax.imshow(cv2.cvtColor(frames[int(round(t * fps))], cv2.COLOR_BGR2RGB))
        inside = start <= t <= end
        ax.set_title(f"{t:.0f} s", color="tab:red" if inside else "black", fontsize=9)
        ax.axis("off")
    fig.suptitle(f'"{record.query}": {start:.1f} to {end:.1f} s of {record.duration:.1f} s (red: inside)', fontsize=10)
    return fig


def plot_curves(history: Sequence[dict], metric: str = "R1@0.5") -> Figure:
    """Training loss by step (left) and validation metrics by step (right)."""
    train = [h for h in history if "loss" in h]
    val = [h for h in history if h.get("split") == "val"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot([h["step"] for h in train], [h["loss"] for h in train])
    ax1.set(xlabel="step", ylabel="training loss", title="loss")
    for key in (metric, "R1@0.7", "mIoU"):
        ax2.plot([h["step"] for h in val], [h[key] for h in val], marker="o", label=key)
    ax2.set(xlabel="step", ylabel="percent", title="validation")
    ax2.legend()
    return fig


def plot_spans(records: Sequence[Record], spans: np.ndarray, n: int = 8) -> Figure:
    """True (grey) and predicted (blue) windows of the first ``n`` queries on a common time axis."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * n + 1))
    for i, (r, (s, e)) in enumerate(zip(records[:n], spans[:n], strict=True)):
        y = n - i
        ax.plot([0, r.duration], [y, y], color="0.85", lw=1)
        ax.plot(list(r.window), [y + 0.12] * 2, color="0.4", lw=5, solid_capstyle="butt")
        ax.plot([s, e], [y - 0.12] * 2, color="tab:blue", lw=5, solid_capstyle="butt")
        ax.text(0, y + 0.3, r.query, fontsize=8)
    ax.set(xlabel="seconds", yticks=[], title="true (grey) vs predicted (blue) moments, test queries")
    ax.grid(False)
    return fig
