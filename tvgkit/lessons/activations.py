"""Look inside a transformer: capture every norm, attention and MLP output, and measure their channels.

The seed's observation to reproduce: LayerNorm outputs of a vision transformer are dominated by a few channels with
extreme values, while BatchNorm outputs vary without such a pattern. The tools here capture the activations with
forward hooks (no change to the model), describe each channel (mean, variance, peak |value|), flag outlier channels
(peak |value| above ``k`` times the median channel's peak), draw token x channel maps (OpenCV images min-max scaled to
0..255 as the seed did, and seaborn heatmaps), and show why the two norms react so differently to one extreme value:
LayerNorm divides a whole *token* by its standard deviation, BatchNorm a whole *channel* by its batch statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)


def default_kind(name: str, module: nn.Module) -> str | None:
    """``'norm'``, ``'attn'`` or ``'mlp'`` for the modules worth capturing in a transformer block, else ``None``."""
    if isinstance(module, NORM_TYPES):
        return "norm"
    leaf = name.rsplit(".", 1)[-1]
    if leaf in {"attn", "attention", "self_attn"}:
        return "attn"
    if leaf in {"ffn", "mlp"}:
        return "mlp"
    return None


@torch.no_grad()
def capture(
    model: nn.Module,
    x: torch.Tensor,
    kinds: tuple[str, ...] = ("norm", "attn", "mlp"),
    kind: Callable[[str, nn.Module], str | None] = default_kind,
) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once and return ``{module name: output}`` for every module whose ``kind`` is in ``kinds``.

    Hooks are removed afterwards even if the forward pass fails. Tuple outputs (attention returning weights too)
    keep their first element. Outputs are detached CPU float tensors.
    """
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if kind(name, module) not in kinds:
            continue

        def hook(_m: nn.Module, _inp: tuple, output: object, name: str = name) -> None:
            tensor = output[0] if isinstance(output, tuple) else output
            out[name] = tensor.detach().float().cpu()

        handles.append(module.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out


def channel_stats(act: torch.Tensor) -> pd.DataFrame:
    """Per-channel mean, variance and peak |value| of ``act[..., C]`` over every other axis (batch and tokens)."""
    flat = act.reshape(-1, act.shape[-1]).double()
    return pd.DataFrame(
        {
            "mean": flat.mean(0).numpy(),
            "var": flat.var(0, unbiased=False).numpy(),
            "peak": flat.abs().amax(0).numpy(),
        }
    )


def outlier_channels(act: torch.Tensor, k: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Channels whose peak |value| exceeds ``k`` times the median channel's peak: ``(indices, ratios)``.

    ``ratios`` holds every channel's peak / median peak, so callers can report the largest even when none passes.
    """
    peak = act.reshape(-1, act.shape[-1]).abs().amax(0).double()
    ratios = (peak / peak.median().clamp_min(1e-12)).numpy()
    return np.flatnonzero(ratios > k), ratios


def outlier_table(acts: dict[str, torch.Tensor], k: float = 6.0) -> pd.DataFrame:
    """One row per captured module: outlier count, top ratio, top channel, and the share of the total squared
    activation carried by the outlier channels (how much they dominate)."""
    rows = []
    for name, act in acts.items():
        idx, ratios = outlier_channels(act, k)
        energy = act.reshape(-1, act.shape[-1]).double().pow(2).sum(0)
        rows.append(
            {
                "module": name,
                "outliers": len(idx),
                "top_ratio": float(ratios.max()),
                "top_channel": int(ratios.argmax()),
                "outlier_energy": float(energy[idx].sum() / energy.sum()) if len(idx) else 0.0,
            }
        )
    return pd.DataFrame(rows)


def to_uint8(map2d: torch.Tensor | np.ndarray) -> np.ndarray:
    """Min-max scale a 2-D map to 0..255 ``uint8`` (a constant map becomes all zeros)."""
    a = np.asarray(map2d, dtype=np.float64)
    lo, hi = a.min(), a.max()
    scaled = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.round(scaled * 255).astype(np.uint8)


def write_map(map2d: torch.Tensor | np.ndarray, path: str | Path, scale: int = 4) -> Path:
    """Write a token x channel map as a PNG with OpenCV (min-max scaled, enlarged ``scale`` times without blur)."""
    import cv2

    img = to_uint8(map2d)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"OpenCV could not write {path}")
    return path


def heatmap(ax: object, map2d: torch.Tensor | np.ndarray, title: str = "", robust: bool = False) -> None:
    """A seaborn heatmap of a token x channel map on ``ax`` (tokens down, channels across)."""
    import seaborn as sns

    sns.heatmap(np.asarray(map2d), ax=ax, cmap="viridis", robust=robust, xticklabels=False, yticklabels=False)
    ax.set_title(title)
    ax.set_xlabel("channel")
    ax.set_ylabel("token")


@torch.no_grad()
def extreme_value_effect(
    norms: dict[str, nn.Module], x: torch.Tensor, value: float = 100.0, where: tuple[int, int, int] = (0, 0, 0)
) -> pd.DataFrame:
    """Set one entry ``x[where] = value`` and compare each norm's output with and without it.

    ``x`` is ``[batch, tokens, channels]``. For each norm (in whatever train/eval mode it is in) the table counts the
    output entries that moved (|change| > 1e-3), how many of them share the token or the channel of the changed entry,
    and the standard deviation left in the rest of that token and of that channel: LayerNorm squashes the token,
    BatchNorm with batch statistics squashes the channel, BatchNorm with running statistics only moves the entry.
    """
    b, t, c = where
    x2 = x.clone()
    x2[b, t, c] = value
    rows = []
    for name, norm in norms.items():
        y, y2 = norm(x), norm(x2)
        moved = (y2 - y).abs() > 1e-3
        moved[b, t, c] = False
        token_rest = torch.cat([y2[b, t, :c], y2[b, t, c + 1 :]])
        channel_rest = y2[..., c].flatten()[torch.arange(y2[..., c].numel()) != b * y.shape[1] + t]
        rows.append(
            {
                "norm": name,
                "other_entries_moved": int(moved.sum()),
                "in_same_token": int(moved[b, t].sum()),
                "in_same_channel": int(moved[..., c].sum()),
                "token_rest_std": float(token_rest.std()),
                "channel_rest_std": float(channel_rest.std()),
            }
        )
    return pd.DataFrame(rows)
