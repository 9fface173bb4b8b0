"""Readers and writers for the annotation formats of temporal video grounding, with counted clean-up.

Every reader returns ``(records, report)``: ``records`` is a list of :class:`Record` in file order (never shuffled,
never silently filtered) and ``report`` counts what was repaired or dropped. The clean-up rules are the ones the
field's pipelines apply (2D-TAN, VSLNet, lighthouse), made explicit:

* a window's end past the video's duration is clipped to the duration (``n_clipped_end``);
* a negative start is clipped to 0 (``n_clipped_start``);
* a window with ``start >= end`` after clipping is dropped; a record left with no window is dropped (``n_dropped``);
  each dropped window is counted by why: given reversed, of zero length, or outside ``[0, duration]``;
* a ``qid`` already seen in the file is renamed ``qid#2``, ``qid#3``, ... (``n_renamed_qids``, with examples): results
  per query would otherwise be ambiguous;
* a boolean where a number belongs (``"duration": true``) is an error, not the number 1.

Clipping is counted per kept window (a window that is dropped anyway is counted once, as dropped).

What cannot be repaired is a :class:`FormatError` naming the file, the line (or key) and what is wrong: an empty
query, a time that is not a finite number, a negative end, a duration that is not positive, a video with no duration,
a file that is not UTF-8 text, a file that is empty or whose every query the clean-up dropped (an empty split fails
far from its file otherwise). Every file is read through :func:`read_text`, so a UTF-8 byte-order mark (as Windows
editors write) is read transparently in every format. :func:`read_annotations` picks the reader from the file
itself, so a user's own annotations can be in any of these formats.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from tvgkit.data.locate import dataset_dir
from tvgkit.data.records import Record, Report
from tvgkit.errors import InputError

MAX_EXAMPLES = 20


class FormatError(InputError):
    """A malformed annotation: the message names the file, the line or key, and the reason."""

    def __init__(self, path: str | Path, where: str | int | None, reason: str):
        self.path, self.where, self.reason = str(path), where, reason
        if where is None:
            location = f"{path}"
        elif isinstance(where, int):
            location = f"{path}, line {where}"
        else:
            location = f"{path}, key {where!r}"
        super().__init__(f"{location}: {reason}")


def _number(value, path, where, what: str) -> float:
    """A finite float, or a FormatError saying which value is not one (a boolean is not: float(True) is 1.0)."""
    if isinstance(value, bool):
        raise FormatError(path, where, f"{what} {value!r} is a boolean, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(path, where, f"{what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise FormatError(path, where, f"{what} {value!r} is not finite")
    return number


class _Cleaner:
    """Applies the clean-up rules to one source and keeps the counts in a :class:`Report`."""

    def __init__(self, path: str | Path):
        self.path = path
        self.report = Report(source=str(path))
        self.records: list[Record] = []
        self.qids: set[str] = set()

    def add(self, where, vid: str, qid: str, query, duration, windows: Iterable[Sequence]) -> None:
        path, report = self.path, self.report
        report.n_read += 1
        if not isinstance(query, str) or not query.strip():
            raise FormatError(path, where, f"empty query for video {vid!r}")
        duration = _number(duration, path, where, "duration")
        if duration <= 0:
            raise FormatError(path, where, f"duration {duration} of video {vid!r} is not positive")
        kept, parsed = [], []
        for window in windows:
            if not isinstance(window, (list, tuple)) or len(window) != 2:
                raise FormatError(path, where, f"window {window!r} is not a (start, end) pair")
            start = _number(window[0], path, where, "start time")
            end = _number(window[1], path, where, "end time")
            parsed.append((start, end))
            if end < 0:
                raise FormatError(path, where, f"negative end time {end}")
            clipped_start, clipped_end = max(start, 0.0), min(end, duration)
            if clipped_start < clipped_end:
                report.n_clipped_start += clipped_start != start
                report.n_clipped_end += clipped_end != end
                kept.append((clipped_start, clipped_end))
            elif start > end:
                report.n_windows_reversed += 1
            elif start == end:
                report.n_windows_zero_length += 1
            else:  # outside [0, duration]: starting at or past the end, or ending at 0
                report.n_windows_outside += 1
        if not kept:
            report.n_dropped += 1
            if len(report.dropped_examples) < MAX_EXAMPLES:
                label = vid if str(where) == vid else f"{where}: {vid}"
                report.dropped_examples.append(f"{label} windows {parsed} (duration {duration})")
            return
        report.n_kept += 1
        self.records.append(
            Record(vid=vid, qid=self._unique(qid, where), query=query.strip(), duration=duration, windows=tuple(kept))
        )

    def _unique(self, qid: str, where) -> str:
        """``qid``, or ``qid#k`` with the smallest free ``k`` when it was seen before (counted, with examples)."""
        new, k = qid, 2
        while new in self.qids:
            new, k = f"{qid}#{k}", k + 1
        self.qids.add(new)
        if new != qid:
            self.report.n_renamed_qids += 1
            if len(self.report.renamed_examples) < MAX_EXAMPLES:
                self.report.renamed_examples.append(f"{where}: {qid!r} -> {new!r}")
        return new

    def result(self) -> tuple[list[Record], Report]:
        """The kept records and the report; a source with no usable record is an error, not an empty split.

        An empty split otherwise surfaces far from its file (a metric over no queries, an empty loader).
        """
        report = self.report
        if not report.n_read:
            raise FormatError(self.path, None, "holds no annotations (no query in it)")
        if not report.n_kept:
            raise FormatError(
                self.path,
                None,
                f"all {report.n_read} queries were dropped by the clean-up (start >= end after clipping to "
                f"[0, duration]), for example {report.dropped_examples[0]}",
            )
        return self.records, report


NOT_TEXT = "not UTF-8 text (a binary file given as annotations?)"
EMPTY = "is empty (or only whitespace): no annotations to read"


def read_text(path: str | Path) -> str:
    """The whole file as text, the one way every reader here opens a file.

    A UTF-8 byte-order mark is dropped (Windows editors write one, and it would otherwise glue itself to the first
    video id or break the JSON parser); bytes that are not UTF-8 are a FormatError naming the line they are on.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FormatError(path, raw.count(b"\n", 0, err.start) + 1, NOT_TEXT) from None


def _read_json(path: str | Path):
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise FormatError(path, None, EMPTY)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(path, err.lineno, f"invalid JSON: {err.msg}") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a text file read with :func:`read_text`; empty files are refused."""
    text = read_text(path)
    if not text.strip():
        raise FormatError(path, None, EMPTY)
    for lineno, line in enumerate(text.split("\n"), start=1):
        yield lineno, line.rstrip("\r")


def _mapping(data, path) -> Mapping:
    if not isinstance(data, dict):
        raise FormatError(path, None, f"expected a JSON object keyed by video id, got {type(data).__name__}")
    return data


def read_durations(path: str | Path) -> dict[str, float]:
    """Video durations in seconds: a Charades ``Charades_v1_*.csv`` (``id``, ``length``) or ``{vid: {"duration"}}``.

    The format is chosen by suffix (``.csv`` or ``.json``).
    """
    path = Path(path)
    if path.suffix == ".csv":
        text = read_text(path)
        if not text.strip():
            raise FormatError(path, None, "is empty (or only whitespace): expected a header with 'id' and 'length'")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "id" not in reader.fieldnames or "length" not in reader.fieldnames:
            raise FormatError(path, 1, f"header must have 'id' and 'length' columns, got {reader.fieldnames}")
        durations = {row["id"]: _number(row["length"], path, reader.line_num, "length") for row in reader}
    elif path.suffix == ".json":
        durations = {}
        for vid, info in _mapping(_read_json(path), path).items():
            if not isinstance(info, dict) or "duration" not in info:
                raise FormatError(path, vid, "missing 'duration'")
            durations[vid] = _number(info["duration"], path, vid, "duration")
    else:
        raise FormatError(path, None, "durations must be a Charades_v1_*.csv or a {vid: {'duration': ...}} .json")
    if not durations:
        raise FormatError(path, None, "holds no video durations")
    return durations


def read_charades_sta(txt_path: str | Path, durations_path: str | Path) -> tuple[list[Record], Report]:
    """Charades-STA text (``VID start end##sentence``, seconds) with durations from a CSV or JSON file.

    Query ids are ``<vid>_<line number>`` so that a record can be traced back to its line.
    """
    txt_path = Path(txt_path)
    durations = read_durations(durations_path)
    cleaner = _Cleaner(txt_path)
    for lineno, line in _lines(txt_path):
        if not line.strip():
            continue
        head, sep, query = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise FormatError(txt_path, lineno, f"expected 'VID start end##sentence', got {line[:80]!r}")
        vid, start, end = parts
        if vid not in durations:
            raise FormatError(txt_path, lineno, f"video {vid!r} has no duration in {durations_path}")
        cleaner.add(lineno, vid, f"{vid}_{lineno}", query, durations[vid], [(start, end)])
    return cleaner.result()


def read_activitynet(json_path: str | Path) -> tuple[list[Record], Report]:
    """ActivityNet Captions JSON ``{vid: {"duration", "timestamps", "sentences"}}`` (seconds).

    Query ids are ``<vid>_<index>``; the leading space many sentences carry is stripped.
    """
    json_path = Path(json_path)
    return _activitynet(_mapping(_read_json(json_path), json_path), json_path)


def _activitynet(data: Mapping, json_path: Path) -> tuple[list[Record], Report]:
    cleaner = _Cleaner(json_path)
    for vid, info in data.items():
        if not isinstance(info, dict) or not {"duration", "timestamps", "sentences"} <= info.keys():
            raise FormatError(json_path, vid, "needs 'duration', 'timestamps' and 'sentences'")
        if len(info["timestamps"]) != len(info["sentences"]):
            raise FormatError(
                json_path,
                vid,
                f"{len(info['timestamps'])} timestamps but {len(info['sentences'])} sentences",
            )
        for i, (window, sentence) in enumerate(zip(info["timestamps"], info["sentences"], strict=True)):
            cleaner.add(vid, vid, f"{vid}_{i}", sentence, info["duration"], [window])
    return cleaner.result()


def read_tacos(json_path: str | Path) -> tuple[list[Record], Report]:
    """TACoS JSON as 2D-TAN ships it: ``{"s13-d21.avi": {"timestamps" (frames), "sentences", "fps", "num_frames"}}``.

    Frames become seconds (``frame / fps``; duration ``num_frames / fps``, as in 2D-TAN's loader); the ``.avi`` is
    dropped from the video id, as lighthouse does, so ids match feature files keyed by the bare name.
    """
    json_path = Path(json_path)
    return _tacos(_mapping(_read_json(json_path), json_path), json_path)


def _tacos(data: Mapping, json_path: Path) -> tuple[list[Record], Report]:
    cleaner = _Cleaner(json_path)
    for key, info in data.items():
        if not isinstance(info, dict) or not {"timestamps", "sentences", "fps", "num_frames"} <= info.keys():
            raise FormatError(json_path, key, "needs 'timestamps', 'sentences', 'fps' and 'num_frames'")
        if len(info["timestamps"]) != len(info["sentences"]):
            raise FormatError(
                json_path, key, f"{len(info['timestamps'])} timestamps but {len(info['sentences'])} sentences"
            )
        fps = _number(info["fps"], json_path, key, "fps")
        if fps <= 0:
            raise FormatError(json_path, key, f"fps {fps} is not positive")
        duration = _number(info["num_frames"], json_path, key, "num_frames") / fps
        vid = key.removesuffix(".avi")
        for i, (frames, sentence) in enumerate(zip(info["timestamps"], info["sentences"], strict=True)):
            if not isinstance(frames, (list, tuple)) or len(frames) != 2:
                raise FormatError(json_path, key, f"timestamp {frames!r} is not a (start, end) pair")
            window = [_number(f, json_path, key, "frame") / fps for f in frames]
            cleaner.add(key, vid, f"{vid}_{i}", sentence, duration, [window])
    return cleaner.result()


def read_jsonl(path: str | Path) -> tuple[list[Record], Report]:
    """Moment-DETR / lighthouse JSONL: one ``{"qid", "query", "duration", "vid", "relevant_windows"}`` per line."""
    path = Path(path)
    cleaner = _Cleaner(path)
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise FormatError(path, lineno, f"invalid JSON: {err.msg}") from None
        if not isinstance(item, dict):
            raise FormatError(path, lineno, f"expected a JSON object, got {type(item).__name__}")
        missing = {"qid", "query", "duration", "vid", "relevant_windows"} - set(item)
        if missing:
            raise FormatError(path, lineno, f"missing {sorted(missing)}")
        windows = item["relevant_windows"]
        if not isinstance(windows, list) or not windows:
            raise FormatError(path, lineno, "'relevant_windows' must be a non-empty list of [start, end]")
        cleaner.add(lineno, str(item["vid"]), str(item["qid"]), item["query"], item["duration"], windows)
    return cleaner.result()


def read_annotations(path: str | Path, durations: str | Path | None = None) -> tuple[list[Record], Report]:
    """Annotations in any supported format, told apart by the file itself (a user's own files need no format key).

    ``.jsonl``: Moment-DETR / lighthouse; ``.txt``: Charades-STA (``durations`` names its CSV or JSON durations file);
    ``.json`` keyed by video id: TACoS as 2D-TAN ships it when the entries hold ``fps`` and ``num_frames``, else
    ActivityNet Captions.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".txt":
        if durations is None:
            raise FormatError(path, None, "Charades-STA text needs a durations file (data.durations=FILE.json or .csv)")
        return read_charades_sta(path, durations)
    if suffix != ".json":
        raise FormatError(path, None, "annotations must be .jsonl, Charades-STA .txt, or ActivityNet / TACoS .json")
    data = _mapping(_read_json(path), path)
    first = next(iter(data.values()), None)
    if first is None:
        raise FormatError(path, None, "holds no videos")
    if isinstance(first, dict) and {"fps", "num_frames"} <= first.keys():
        return _tacos(data, path)
    return _activitynet(data, path)


def jsonl_item(r: Record) -> dict:
    """One record as a Moment-DETR / lighthouse JSONL object (what :func:`write_jsonl` writes a line of)."""
    return {
        "qid": r.qid,
        "query": r.query,
        "duration": r.duration,
        "vid": r.vid,
        "relevant_windows": [[s, e] for s, e in r.windows],
    }


def write_jsonl(records: Iterable[Record], path: str | Path) -> Path:
    """Write records as Moment-DETR / lighthouse JSONL (one object per line); ``read_jsonl`` reads them back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for r in records:
            handle.write(json.dumps(jsonl_item(r)) + "\n")
    return path


def write_charades_sta(records: Iterable[Record], txt_path: str | Path, durations_json_path: str | Path) -> Path:
    """Write Charades-STA text plus a ``{vid: {"duration": d}}`` JSON; ``read_charades_sta`` reads them back.

    The text format holds one window per line, so a record with several windows becomes several lines. Times are
    written with Python's shortest round-trip repr, so reading back gives the same floats.
    """
    txt_path, durations_json_path = Path(txt_path), Path(durations_json_path)
    txt_path.parent.mkdir(parents=True, exist_ok=True)
    durations: dict[str, dict[str, float]] = {}
    with txt_path.open("w", encoding="utf-8") as handle:
        for r in records:
            if "\n" in r.query or "##" in r.query or any(c.isspace() for c in r.vid):
                raise InputError(f"record {r.qid}: a query with a newline or '##', or a video id with a space")
            known = durations.setdefault(r.vid, {"duration": r.duration})
            if known["duration"] != r.duration:
                raise InputError(f"video {r.vid!r} has two durations: {known['duration']} and {r.duration}")
            for start, end in r.windows:
                handle.write(f"{r.vid} {start!r} {end!r}##{r.query}\n")
    durations_json_path.parent.mkdir(parents=True, exist_ok=True)
    durations_json_path.write_text(json.dumps(durations), encoding="utf-8")
    return txt_path


# --- named datasets: which file is which split -------------------------------------------------------------------

DATASET_FOLDERS = {"charades-sta": "charades_sta", "activitynet": "activitynet_captions", "tacos": "tacos"}

#: Candidate files per (dataset, split), first existing wins; each is (reader, annotation file, durations file).
SPLIT_FILES: dict[str, dict[str, list[tuple[str, str, str | None]]]] = {
    # Charades-STA (TALL) has only train and test; there is no validation split.
    "charades-sta": {
        "train": [
            ("charades_sta", "charades_sta_train.txt", "Charades_v1_train.csv"),
            ("charades_sta", "charades_sta_train.txt", "charades.json"),
            ("jsonl", "charades_train_release.jsonl", None),
        ],
        "test": [
            ("charades_sta", "charades_sta_test.txt", "Charades_v1_test.csv"),
            ("charades_sta", "charades_sta_test.txt", "charades.json"),
            ("jsonl", "charades_test_release.jsonl", None),
        ],
    },
    # ActivityNet Captions: 2D-TAN's val.json is the official val_1 and its test.json is val_2 (the file 2D-TAN
    # reports test numbers on). VSLNet makes the opposite choice; the official names are accepted too.
    "activitynet": {
        "train": [("activitynet", "train.json", None)],
        "val": [("activitynet", "val.json", None), ("activitynet", "val_1.json", None)],
        "test": [("activitynet", "test.json", None), ("activitynet", "val_2.json", None)],
    },
    # TACoS (TALL split): 2D-TAN JSONs (frames) or lighthouse JSONL (seconds), train / val / test.
    "tacos": {
        split: [("tacos", f"{split}.json", None), ("jsonl", f"tacos_{split}_release.jsonl", None)]
        for split in ("train", "val", "test")
    },
}

READERS = {"charades_sta": read_charades_sta, "activitynet": read_activitynet, "tacos": read_tacos, "jsonl": read_jsonl}


def load_dataset(name: str, split: str, data_dir: str | Path | None = None) -> tuple[list[Record], Report]:
    """Read split ``split`` of dataset ``name`` (``charades-sta``, ``activitynet``, ``tacos``) from its usual files.

    ``data_dir`` is the dataset's folder or a root holding ``charades_sta/``, ``activitynet_captions/``, ``tacos/``;
    without it ``$TVGKIT_DATA`` (then ``../shared/data``) is used. See ``SPLIT_FILES`` for which file is which split.
    """
    if name not in SPLIT_FILES:
        raise InputError(f"unknown dataset {name!r}; choose from {sorted(SPLIT_FILES)}")
    splits = SPLIT_FILES[name]
    if split not in splits:
        note = " (Charades-STA has no validation split)" if name == "charades-sta" else ""
        raise InputError(f"{name} has no split {split!r}{note}; choose from {sorted(splits)}")
    folder = dataset_dir(DATASET_FOLDERS[name], data_dir)
    for reader, ann_file, durations in splits[split]:
        if (folder / ann_file).is_file() and (durations is None or (folder / durations).is_file()):
            args = [folder / ann_file] + ([folder / durations] if durations else [])
            return READERS[reader](*args)
    wanted = " or ".join(a + (f" + {d}" if d else "") for _, a, d in splits[split])
    raise FileNotFoundError(f"{folder}: no {name} {split} annotations (looked for {wanted})")
