"""A dataset in the layout field models read (Moment-DETR, lighthouse, QD-DETR, ...): ``tvgkit export``.

``OUT/features/<vid>.npz`` holds each video's clip features under the key ``features`` (float32 ``[clips, dim]``,
what :func:`tvgkit.data.features.open_features` reads as the ``npz`` layout) and ``OUT/<split>.jsonl`` one query per
line, as QVHighlights: ``qid, query, vid, duration, relevant_windows`` (seconds), ``relevant_clip_ids`` and
``saliency_scores``.

- ``relevant_clip_ids``: the clips a window overlaps, by the kit's time convention (:mod:`tvgkit.data.timeline`:
  clip i covers [i * c, (i + 1) * c), cut at the duration), over all of the query's windows.
- ``saliency_scores``: QVHighlights has three annotators' 0-4 scores per relevant clip; the kit's sources have
  none, so they are derived from overlap: each clip scores ``max(1, floor(4 * f + 0.5))`` for all three annotators, f
  being the fraction of the clip (its part inside the video) that the best-overlapping window covers. A clip inside
  the moment scores 4, one the moment only grazes 1.
- ``duration``: the record's, in seconds. Moment-DETR's highlight evaluator counts ``int(duration / clip_len)``
  clips, so the id of a partial last clip lies past its count; its moment-retrieval metrics do not use clip ids.

The clip length c is the features' (``clip_seconds`` recorded by ``tvgkit extract`` and the synthetic set; else the
clips are taken to spread evenly over the duration, c = duration / clips). ``.npz`` files record no clip length:
train the kit on an export with ``data.clip_seconds`` set to it (the export says so).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tvgkit.data import timeline
from tvgkit.data.features import NPZ_KEY
from tvgkit.data.formats import jsonl_item
from tvgkit.data.records import Record
from tvgkit.errors import InputError

ANNOTATORS = 3  # QVHighlights' saliency scores come from three annotators
MAX_SCORE = 4


def saliency(fraction: float) -> int:
    """A relevant clip's 0-4 score from the fraction of it the moment covers (at least 1: the clip is relevant)."""
    return max(1, math.floor(MAX_SCORE * min(fraction, 1.0) + 0.5))


def clip_annotations(record: Record, n_clips: int, clip_seconds: float | None) -> tuple[list[int], list[list[int]]]:
    """``relevant_clip_ids`` and ``saliency_scores`` of one record whose video has ``n_clips`` clips."""
    clips = timeline.Clips.of(n_clips, record.duration, clip_seconds)
    overlap: dict[int, float] = {}  # clip -> the largest fraction of it a window covers
    for window in record.windows:
        for i in clips.overlapping(window):
            lo, hi = clips.window(i)
            inside = max(0.0, min(hi, window[1]) - max(lo, window[0]))
            overlap[i] = max(overlap.get(i, 0.0), inside / (hi - lo) if hi > lo else 1.0)
    ids = sorted(overlap)
    return ids, [[saliency(overlap[i])] * ANNOTATORS for i in ids]


def export_moment_detr(
    splits: Mapping[str, Sequence[Record]], features: Mapping[str, np.ndarray], out: str | Path
) -> dict[str, Path]:
    """Write ``splits`` and their videos' ``features`` to ``out`` in the Moment-DETR / lighthouse layout.

    Returns the paths written (``features`` folder and one JSONL per split). Refuses a target that is one of the
    inputs (the features folder, an annotation file of the same name).
    """
    out = Path(out)
    feature_dir = out / "features"
    source = Path(getattr(features, "path", "")) if getattr(features, "path", None) else None
    if source is not None and source.resolve() in {feature_dir.resolve(), out.resolve()}:
        raise InputError(f"{out}: the export would overwrite its own input features {source}")
    if out.is_file():
        raise InputError(f"{out} is a file: give a folder to export into")
    clip_seconds = timeline.clip_seconds_of(features)
    vids = list(dict.fromkeys(r.vid for records in splits.values() for r in records))
    feature_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for vid in vids:
        array = np.asarray(features[vid], dtype=np.float32)
        counts[vid] = len(array)
        np.savez_compressed(feature_dir / f"{vid}.npz", **{NPZ_KEY: array})
    written = {"features": feature_dir}
    for split, records in splits.items():
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for r in records:
                ids, scores = clip_annotations(r, counts[r.vid], clip_seconds)
                item = {**jsonl_item(r), "relevant_clip_ids": ids, "saliency_scores": scores}
                handle.write(json.dumps(item) + "\n")
        written[split] = path
    return written
