"""Figures of the grounding notebook: a video's frames with its moment, training curves, predicted vs true spans."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tvgkit.data.records import Record
from tvgkit.experiments import mean_se


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


def plot_head_diagnosis(runs: dict[str, Sequence[Sequence[dict]]]) -> Figure:
    """Learning curves of several runs side by side, each the mean over its seeds' logged steps (band: min to max).

    ``runs`` maps a name to the histories of its seeds (the trainer logs these keys). Left to right: the batch's
    mean IoU; the spread of predicted centres against the targets' spread (a head stuck at the blind prior gives
    every query nearly the same span, so its spread stays near 0); the gradient norm reaching the head and the
    ``[MASK]`` slots; validation R1@0.5 after each epoch (error bars: one standard error over seeds).
    """
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def curve(ax, histories, key, colour, label, ls="-"):
        steps = [[h for h in history if key in h] for history in histories]
        n = min(len(s) for s in steps)
        x = [h["step"] for h in steps[0][:n]]
        values = np.array([_smooth([h[key] for h in s[:n]]) for s in steps])
        ax.plot(x, values.mean(0), color=colour, ls=ls, label=label)
        if len(values) > 1:
            ax.fill_between(x, values.min(0), values.max(0), color=colour, alpha=0.15, lw=0)

    for (name, histories), colour in zip(runs.items(), colours, strict=False):
        first = next(h for h in histories[0] if "batch_mIoU" in h)
        label = f"{name} ({len(histories)} seed{'s' if len(histories) > 1 else ''})"
        curve(axes[0], histories, "batch_mIoU", colour, label)
        curve(axes[1], histories, "pred_centre_std", colour, f"{name}: predicted")
        head = next((k for k in ("grad_span_head", "grad_slot_query", "grad_reg_head") if k in first), None)
        if head:
            curve(axes[2], histories, head, colour, f"{name}: head")
        if "grad_mask_slots" in first:
            curve(axes[2], histories, "grad_mask_slots", colour, f"{name}: [MASK] slots", ls=":")
        val = [[h for h in history if h.get("split") == "val"] for history in histories]
        n = min(len(v) for v in val)
        summary = [mean_se([v[i]["R1@0.5"] for v in val]) for i in range(n)]
        axes[3].errorbar(
            [h["step"] for h in val[0][:n]],
            [s["mean"] for s in summary],
            [s["se"] for s in summary],
            color=colour,
            marker="o",
            capsize=3,
            label=name,
        )
    curve(axes[1], [next(iter(runs.values()))[0]], "target_centre_std", "0.5", "targets", ls="--")
    axes[0].set(xlabel="step", ylabel="mIoU of the batch (%)", title="fit")
    axes[1].set(xlabel="step", ylabel="std of span centres", title="do the predictions spread?")
    axes[2].set(xlabel="step", ylabel="gradient norm", yscale="log", title="gradient reaching the head")
    axes[3].set(xlabel="step", ylabel="R1@0.5 (%)", title="validation")
    for ax in axes:  # below the panels: the curves they would hide are the point of the figure
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return fig


def _smooth(values: Sequence[float], window: int = 5) -> np.ndarray:
    """A trailing moving average of the same length (batch-level curves are noisy)."""
    c = np.cumsum(np.asarray(values, float))
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    return out / np.minimum(np.arange(1, len(c) + 1), window)


def heads_table(report: dict) -> pd.DataFrame:
    """One row per run of ``benchmarks/heads.py``'s JSON (test metrics: mean and standard error over its seeds),
    then the blind bars."""
    rows = {}
    for name, run in report["runs"].items():
        seeds = run["seeds"].values()
        row = {}
        for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU"):
            summary = mean_se([s["test"][k] for s in seeds])
            row |= {k: summary["mean"], f"{k} se": summary["se"]}
        row |= {"seeds": len(seeds), "steps": next(iter(seeds))["steps"]}
        rows[name] = row
    for name, m in report.get("blind", {}).items():
        rows[f"blind: {name}"] = {k: m[k] for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")}
    return pd.DataFrame(rows).T


def probe_table(report: dict, seed: str = "0") -> pd.DataFrame:
    """Per run of ``benchmarks/heads.py``: how far its predicted centres spread relative to the targets' (early and
    late in training), the gradient reaching the ``[MASK]`` slots, and the batch mIoU late in training."""
    rows = {}
    for name, run in report["runs"].items():
        curve = [h for h in run["seeds"][seed]["curve"] if "pred_centre_std" in h]
        fifth = max(1, len(curve) // 5)
        first, last = curve[:fifth], curve[-fifth:]
        rows[name] = {
            "spread, first 20% of steps": np.mean([h["pred_centre_std"] / h["target_centre_std"] for h in first]),
            "spread, last 20%": np.mean([h["pred_centre_std"] / h["target_centre_std"] for h in last]),
            "[MASK]-slot gradient": np.mean([h.get("grad_mask_slots", np.nan) for h in last]),
            "batch mIoU, last 20%": np.mean([h["batch_mIoU"] for h in last]),
        }
    return pd.DataFrame(rows).T
