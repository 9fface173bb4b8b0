"""Data: the query record, the field's annotation formats, feature stores, synthetic videos, datasets."""

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
