"""Statistics of grounding annotations: video durations and where, and how long, the moments are.

These are the numbers a video-blind model can exploit: if most moments start at the beginning of the video or cover
most of it, a prior beats chance without looking at a single frame (Yuan et al. 2021).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from tvgkit.data.records import Record, Report


def moment_frame(records: Sequence[Record]) -> pd.DataFrame:
    """One row per query (first window): duration and moment start, end, length in seconds and as video fractions."""
    rows = [(r.vid, r.duration, *r.window) for r in records]
    frame = pd.DataFrame(rows, columns=["vid", "duration", "start", "end"])
    frame["length"] = frame["end"] - frame["start"]
    for column in ("start", "end", "length"):
        frame[f"{column}_frac"] = frame[column] / frame["duration"]
    return frame


def summary(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per dataset: queries, videos, median duration, mean moment length, and two position biases."""
    rows = {}
    for name, f in frames.items():
        rows[name] = {
            "queries": len(f),
            "videos": f["vid"].nunique(),
            "median duration s": f["duration"].median(),
            "mean moment s": f["length"].mean(),
            "mean length frac": f["length_frac"].mean(),
            "starts at 0 %": 100.0 * (f["start"] == 0).mean(),
            "ends at end %": 100.0 * (f["end"] == f["duration"]).mean(),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def report_frame(reports: Mapping[str, Report]) -> pd.DataFrame:
    """The clean-up reports side by side, one row per source (the counts only)."""
    columns = ["n_read", "n_kept", "n_dropped", "n_clipped_end", "n_clipped_start"]
    return pd.DataFrame({name: {c: getattr(r, c) for c in columns} for name, r in reports.items()}).T
