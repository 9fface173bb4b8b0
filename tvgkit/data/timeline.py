"""The kit's one time convention: which seconds a clip covers, and how spans move between seconds and clips.

**Clip i covers the seconds [i * c, (i + 1) * c)**, c being the clip length, **and the last clip ends at the
duration D**: it is partial when D is not a whole number of clips (Moment-DETR's and lighthouse's convention, c = 2 s
on QVHighlights, so a field model reading the kit's features needs no guess), and it reaches D when a video's last
frames made no clip of their own (a rendered video has int(D * fps) frames, which can fall short of D by less than
1 / fps: at the kit's 4 fps its clips end up to 0.24 s before D).

- The extractor (:func:`tvgkit.data.extract.clip_features`) pools the frames at times [i * c, (i + 1) * c) into clip
  i (a last partial clip is kept); :func:`tvgkit.data.extract.read_frames` samples a file at t = 0, 1/fps, ...;
  the renderer (:mod:`tvgkit.data.synthetic`) draws frame f at t = f / fps.
- The model works in clip coordinates: time t lies at x = t / c in clip x (the last clip stretched or cut to end at
  D), as the fraction x / n of the n clips (:meth:`Clips.to_grid`, targets); a decoded span goes back to seconds by
  the inverse map (:meth:`Clips.to_seconds`), so a span is never cut off at the video's end. Videos pooled to
  ``data.max_clips`` clips keep the same fractions.
- Features that do not record their clip length (the public layouts: 2D-TAN's HDF5, ActivityNet's C3D, folders of
  .npy / .npz) are taken to spread evenly over the duration, c = D / n, which is what those files mean, unless
  ``data.clip_seconds`` gives c. ``tvgkit extract`` and the synthetic set record c (HDF5 attribute
  ``clip_seconds``). Clips that would start at or past D ((n - 1) * c >= D: features that do not fit the duration)
  fall back to the even spread too.

Before this convention the kit spread every video's clips evenly over its duration (c = D / n for all features),
moving a time by up to 3.7% of the video at its end on the synthetic set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tvgkit.data.records import Record


@dataclass(frozen=True)
class Clips:
    """A video's ``n`` clips of ``seconds`` each on its time axis, the last one ending at ``duration``."""

    n: int
    seconds: float
    duration: float

    @classmethod
    def of(cls, n: int, duration: float, clip_seconds: float | None) -> Clips:
        """The convention's clips; without a known clip length (or one that does not fit), the even spread."""
        c = clip_seconds if clip_seconds and (n - 1) * clip_seconds < duration else duration / n
        return cls(int(n), float(c), float(duration))

    def _knots(self) -> tuple[list[float], list[float]]:
        """Seconds and clip coordinates at the start, at the last clip's start and at the end."""
        if self.n == 1:
            return [0.0, self.duration], [0.0, 1.0]
        last = (self.n - 1) * self.seconds
        return [0.0, last, self.duration], [0.0, self.n - 1.0, float(self.n)]

    def to_grid(self, seconds) -> np.ndarray:
        """Times in seconds as fractions of the clips (``x / n``), clamped to [0, 1]."""
        t, x = self._knots()
        return np.interp(np.asarray(seconds, np.float64), t, x) / self.n

    def to_seconds(self, fractions) -> np.ndarray:
        """Fractions of the clips back in seconds, within [0, duration]."""
        t, x = self._knots()
        return np.interp(np.asarray(fractions, np.float64) * self.n, x, t)

    def window(self, i: int) -> tuple[float, float]:
        """The seconds clip ``i`` covers: ``[i * c, (i + 1) * c)``, the last one up to the duration."""
        return i * self.seconds, self.duration if i == self.n - 1 else min((i + 1) * self.seconds, self.duration)

    def at(self, t: float) -> int:
        """The clip covering time ``t`` (a time past the last clip's start belongs to the last clip)."""
        return min(max(math.floor(t / self.seconds), 0), self.n - 1)

    def overlapping(self, window: Sequence[float]) -> list[int]:
        """The clips a window overlaps by more than nothing (``floor(start / c)`` to ``ceil(end / c) - 1``)."""
        start, end = window
        first = self.at(start)
        last = min(max(math.ceil(end / self.seconds) - 1, first), self.n - 1)
        return list(range(first, last + 1))


def clip_seconds_of(features) -> float | None:
    """The clip length a feature store records (``clip_seconds``, or ``data.clip_seconds``); None: not recorded."""
    value = getattr(features, "clip_seconds", None)
    return None if value is None else float(value)


def n_clips(features: Mapping[str, np.ndarray], vid: str) -> int:
    """A video's number of clips, read without loading its features where the store can (HDF5, .npy)."""
    shape = getattr(features, "shape", None)
    return int(shape(vid)[0]) if callable(shape) else len(features[vid])


def clips_of(records: Sequence[Record], features: Mapping[str, np.ndarray]) -> list[Clips]:
    """The :class:`Clips` of every record's video (its number of clips read from ``features``)."""
    c = clip_seconds_of(features)
    counts: dict[str, int] = {}
    for r in records:
        if r.vid not in counts:
            counts[r.vid] = n_clips(features, r.vid)
    return [Clips.of(counts[r.vid], r.duration, c) for r in records]


def to_seconds(spans: np.ndarray, clips: Sequence[Clips]) -> np.ndarray:
    """Spans ``[N, ..., 2]`` as fractions of each record's clips, in seconds."""
    spans = np.asarray(spans, dtype=np.float64)
    return np.stack([c.to_seconds(s) for c, s in zip(clips, spans, strict=True)]) if len(spans) else spans
