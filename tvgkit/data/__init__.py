"""Data, from a video file or an annotation file to records and clip features, before any model sees them.

``records`` (the query record and the clean-up report), ``formats`` (Charades-STA, ActivityNet, TACoS, JSONL),
``locate`` (where real annotation files live) and ``stats`` (what they hold); ``extract`` and ``backbones`` (frames ->
clip features, blobs or EfficientNet-Lite0), ``features`` (HDF5 / .npy feature stores, resampling, coverage checks),
``synthetic`` (the kit's rendered videos and their annotations), ``images`` (the rendered shapes of notebook 02),
``timeline`` (the time convention: which seconds a clip covers) and ``export`` (a dataset in Moment-DETR's layout).
The grounding model's batches are made in :mod:`tvgkit.grounding.dataset`.

May import: the shared base at the top of the package (``tvgkit.errors``, ``config``, ``runtime``, ``metrics``) and
itself only, so that data tools run without any model code.
"""

from tvgkit.data.formats import (
    FormatError,
    load_dataset,
    read_activitynet,
    read_annotations,
    read_charades_sta,
    read_jsonl,
    read_tacos,
    write_charades_sta,
    write_jsonl,
)
from tvgkit.data.records import Record, Report

__all__ = [
    "FormatError",
    "Record",
    "Report",
    "load_dataset",
    "read_activitynet",
    "read_annotations",
    "read_charades_sta",
    "read_jsonl",
    "read_tacos",
    "write_charades_sta",
    "write_jsonl",
]
