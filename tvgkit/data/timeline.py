"""The kit's one time convention: which seconds a clip covers, and how spans move between seconds and clips.

**Clip i covers the seconds [i * c, (i + 1) * c)**, c being the clip length, cut at the video's duration D: when D is
not a whole number of clips, the last clip is partial (it covers [(n - 1) * c, D)). This is Moment-DETR's and
lighthouse's convention (c = 2 s on QVHighlights), so a field model reading the kit's features needs no guess.

- The extractor (:func:`tvgkit.data.extract.clip_features`) pools the frames at times [i * c, (i + 1) * c) into clip
  i (a last partial clip is kept); :func:`tvgkit.data.extract.read_frames` samples a file at t = 0, 1/fps, ...;
  the renderer (:mod:`tvgkit.data.synthetic`) draws frame f at t = f / fps. A rendered video has int(D * fps)
  frames, so its last frames may fall short of D by less than 1 / fps: its n clips then end at n * c < D (by at most
  0.24 s at the kit's 4 fps), and a time past n * c belongs to the last clip.
- The model works on that grid of n clips: a time t is the fraction t / (n * c) (:func:`to_grid`, clamped to
  [0, 1]); a decoded span goes back to seconds by the same factor, clamped to [0, D] (:func:`to_seconds`). Longer
  videos pooled to ``data.max_clips`` clips keep the grid's length n * c.
- Features that do not record their clip length (the public layouts: 2D-TAN's HDF5, ActivityNet's C3D, folders of
  .npy / .npz) are taken to spread evenly over the duration, c = D / n, which is what those files mean, unless
  ``data.clip_seconds`` gives c. ``tvgkit extract`` and the synthetic set record c (HDF5 attribute
  ``clip_seconds``).

Before this convention the kit stretched every video's clips evenly over its duration (c = D / n for all features),
moving a time by up to 3.7% of the video at its end on the synthetic set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tvgkit.data.records import Record


def clip_seconds_of(features) -> float | None:
    """The clip length a feature store records (``clip_seconds``, or ``data.clip_seconds``); None: not recorded."""
    value = getattr(features, "clip_seconds", None)
    return None if value is None else float(value)


def grid_seconds(n_clips: int, duration: float, clip_seconds: float | None) -> float:
    """The seconds a video's clip grid spans: ``n_clips * clip_seconds``, or the duration when c is not known."""
    return n_clips * clip_seconds if clip_seconds else float(duration)


def n_clips(features: Mapping[str, np.ndarray], vid: str) -> int:
    """A video's number of clips, read without loading its features where the store can (HDF5, .npy)."""
    shape = getattr(features, "shape", None)
    return int(shape(vid)[0]) if callable(shape) else len(features[vid])


def grids(records: Sequence[Record], features: Mapping[str, np.ndarray]) -> np.ndarray:
    """:func:`grid_seconds` of every record's video: float64 ``[N]``."""
    c = clip_seconds_of(features)
    counts: dict[str, int] = {}
    out = []
    for r in records:
        if r.vid not in counts:
            counts[r.vid] = n_clips(features, r.vid)
        out.append(grid_seconds(counts[r.vid], r.duration, c))
    return np.array(out, dtype=np.float64)


def to_grid(window: Sequence[float], grid: float) -> tuple[float, float]:
    """A window in seconds as fractions of the clip grid, clamped to [0, 1] (the model's targets)."""
    start, end = window
    return min(max(start / grid, 0.0), 1.0), min(max(end / grid, 0.0), 1.0)


def to_seconds(spans: np.ndarray, grid: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """Spans as fractions of the grid (``[N, ..., 2]``) in seconds, clamped to each video's ``[0, duration]``."""
    spans = np.asarray(spans, dtype=np.float64)
    shape = (-1,) + (1,) * (spans.ndim - 1)
    grid, duration = np.asarray(grid, np.float64).reshape(shape), np.asarray(duration, np.float64).reshape(shape)
    return np.clip(spans * grid, 0.0, duration)


def clip_window(i: int, clip_seconds: float, duration: float) -> tuple[float, float]:
    """The seconds clip ``i`` covers: ``[i * c, min((i + 1) * c, duration))``."""
    return i * clip_seconds, min((i + 1) * clip_seconds, duration)


def clip_at(t: float, clip_seconds: float, n: int) -> int:
    """The clip covering time ``t`` among ``n`` clips (a time past the last clip's end belongs to the last clip)."""
    return min(max(math.floor(t / clip_seconds), 0), n - 1)


def clips_in(window: Sequence[float], clip_seconds: float, n: int) -> list[int]:
    """The clips a window overlaps (by more than nothing): ``floor(start / c)`` to ``ceil(end / c) - 1``, within n."""
    start, end = window
    first = clip_at(start, clip_seconds, n)
    last = min(max(math.ceil(end / clip_seconds) - 1, first), n - 1)
    return list(range(first, last + 1))
