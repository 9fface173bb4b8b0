"""Bad input gets a clear error, and nothing is lost: one small bad file per case, through the API and the CLI.

Every case must raise a kit error (FormatError, FeatureError, ConfigError: all ValueErrors) whose message names the
file and line, or the key, and the reason; through ``tvgkit train`` the user sees that message as ONE ``error:`` line
with exit status 2, and no run folder is created. Exceptions that are not kit errors keep their traceback.

The matrix: annotations (malformed, empty, whitespace-only, emptied by the clean-up, in every format, through
``tvgkit train`` and ``tvgkit baselines``), byte-order marks (read as without, checked on the real files where
present), features (non-finite, widths, dtypes, 1-D / 3-D, empty, truncated HDF5 and .npy), configs, a run folder
damaged or edited (``tvgkit eval`` / ``predict``) and queries (empty, whitespace, longer than the model takes).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from tvgkit import config
from tvgkit.cli import main
from tvgkit.config import ConfigError
from tvgkit.data.features import FeatureError, MissingFeaturesError, check_coverage, open_features, write_hdf5
from tvgkit.data.formats import FormatError, read_annotations, read_charades_sta
from tvgkit.data.locate import data_root
from tvgkit.errors import InputError
from tvgkit.grounding.presets import PRESETS, RunConfig
from tvgkit.grounding.splits import load_splits
from tvgkit.grounding.train import train

DIM = 8
GOOD_VIDS = [f"v{i}" for i in range(8)]
TINY_TEXT = [*(s for s in PRESETS["tiny"] if not s.startswith("data.synth.")), "train.device=cpu"]


def _features(vids, dim: int = DIM, clips: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v: rng.normal(size=(clips, dim)).astype(np.float32) for v in vids}


def _rows(vids, queries_per_video: int = 2) -> list[dict]:
    return [
        {
            "qid": f"{v}_{k}",
            "query": f"the red ball moves {k}",
            "duration": 10.0,
            "vid": v,
            "relevant_windows": [[k, 4]],
        }
        for v in vids
        for k in range(queries_per_video)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A good dataset (train: v0-v5, test: v6-v7, 8-dim features) to break one piece at a time."""
    monkeypatch.setenv("TVGKIT_CACHE", str(tmp_path / "cache"))
    write_hdf5(_features(GOOD_VIDS), tmp_path / "f.hdf5")
    _write_jsonl(tmp_path / "train.jsonl", _rows(GOOD_VIDS[:6]))
    _write_jsonl(tmp_path / "test.jsonl", _rows(GOOD_VIDS[6:]))
    (tmp_path / "durations.json").write_text(json.dumps({v: {"duration": 10.0} for v in GOOD_VIDS}))
    return tmp_path


def _files_sets(d: Path, **keys) -> list[str]:
    base = {
        "data.dataset": "files",
        "data.train": d / "train.jsonl",
        "data.test": d / "test.jsonl",
        "data.features": d / "f.hdf5",
        "data.durations": d / "durations.json",
        "runs_dir": d / "runs",
        "name": "bad",
    }
    base.update({k.replace("__", "."): v for k, v in keys.items()})
    return [*TINY_TEXT, *(f"{k}={v}" for k, v in base.items())]


def _cli_error(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit 2 and exactly one ``tvgkit CMD: error: ...`` line on stderr; return that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"tvgkit {argv[0]}: error: "), lines[0]
    return lines[0]


def _train_both_ways(
    d: Path, sets: list[str], error: type, pattern: str, capsys, config_file: Path | None = None, kit_error=True
):
    """The same bad input through ``train()`` (error type and message) and ``tvgkit train`` (one line, exit 2)."""
    with pytest.raises(error, match=pattern) as caught:
        train(config.load(RunConfig, config_file, sets), progress=False)
    assert isinstance(caught.value, (InputError, ConfigError)) == kit_error  # else Python's own FileNotFoundError
    argv = ["train", *([str(config_file)] if config_file else []), *(a for s in sets for a in ("--set", s)), "--quiet"]
    line = _cli_error(argv, capsys)
    assert re.search(pattern, line), line
    assert not (d / "runs").exists(), "a bad input must fail before the run folder is created"
    return caught.value


# --- annotations: each case writes one bad file ------------------------------------------------------------------

GOOD_LINE = "v0 1.0 4.0##a person opens the door\n"
ANNOTATION_CASES = {
    "malformed-line": ("bad.txt", GOOD_LINE + "v1 2.0##no end time\n", r"bad\.txt, line 2: expected 'VID start end"),
    "non-numeric-time": ("bad.txt", GOOD_LINE + "v1 2.0 abc##q\n", r"bad\.txt, line 2: end time 'abc' is not a number"),
    "non-finite-time": ("bad.txt", "v1 nan 3##q\n", r"bad\.txt, line 1: start time 'nan' is not finite"),
    "negative-end": ("bad.txt", "v1 -3 -1##q\n", r"bad\.txt, line 1: negative end time -1\.0"),
    "unknown-video": (
        "bad.txt",
        GOOD_LINE + "zz 1 3##q\n",
        r"bad\.txt, line 2: video 'zz' has no duration in .*durations",
    ),
    "empty-query": ("bad.txt", "v1 1 3##   \n", r"bad\.txt, line 1: empty query for video 'v1'"),
    "empty-query-jsonl": (
        "bad.jsonl",
        '{"qid": "a", "query": "", "duration": 9, "vid": "v1", "relevant_windows": [[0, 1]]}\n',
        r"bad\.jsonl, line 1: empty query for video 'v1'",
    ),
    "empty-jsonl": ("bad.jsonl", "", r"bad\.jsonl: is empty \(or only whitespace\)"),
    "whitespace-txt": ("bad.txt", " \n\t\n\n", r"bad\.txt: is empty \(or only whitespace\)"),
    "only-a-bom-json": ("bad.json", "\ufeff", r"bad\.json: is empty \(or only whitespace\)"),
    "all-dropped-jsonl": (
        "bad.jsonl",
        '{"qid": "a", "query": "q", "duration": 9, "vid": "v1", "relevant_windows": [[5, 3]]}\n',
        r"bad\.jsonl: all 1 queries were dropped by the clean-up \(start >= end after clipping",
    ),
    "zero-duration-jsonl": (
        "bad.jsonl",
        '{"qid": "a", "query": "q", "duration": 0, "vid": "v1", "relevant_windows": [[0, 1]]}\n',
        r"bad\.jsonl, line 1: duration 0\.0 of video 'v1' is not positive",
    ),
    "invalid-json-line": ("bad.jsonl", json.dumps(_rows(["v0"])[0]) + "\n{oops\n", r"bad\.jsonl, line 2: invalid JSON"),
    "missing-field": ("bad.jsonl", '{"qid": "a", "query": "q", "vid": "v1"}\n', r"line 1: missing \['duration', 'rel"),
    "string-time": (
        "bad.jsonl",
        '{"qid": "a", "query": "q", "duration": 9, "vid": "v1", "relevant_windows": [["one", 3]]}\n',
        r"bad\.jsonl, line 1: start time 'one' is not a number",
    ),
    "not-an-object": ("bad.jsonl", "[1, 2]\n", r"bad\.jsonl, line 1: expected a JSON object, got list"),
    "binary-file": ("bad.jsonl", b"\x89HDF\r\n\x1a\n\xff\xfe\x00", r"bad\.jsonl, line 1: not UTF-8 text"),
    "activitynet-empty-sentence": (
        "bad.json",
        '{"v1": {"duration": 10, "timestamps": [[1, 3]], "sentences": [" "]}}',
        r"bad\.json, key 'v1': empty query for video 'v1'",
    ),
    "activitynet-count-mismatch": (
        "bad.json",
        '{"v1": {"duration": 10, "timestamps": [[1, 3], [2, 4]], "sentences": ["a"]}}',
        r"bad\.json, key 'v1': 2 timestamps but 1 sentences",
    ),
    "tacos-zero-fps": (
        "bad.json",
        '{"v1.avi": {"timestamps": [[0, 9]], "sentences": ["a"], "fps": 0, "num_frames": 90}}',
        r"bad\.json, key 'v1\.avi': fps 0\.0 is not positive",
    ),
    "unknown-suffix": ("bad.csv", "vid,start,end\n", r"bad\.csv: annotations must be \.jsonl, Charades-STA \.txt"),
    "boolean-duration": (
        "bad.jsonl",
        '{"qid": "a", "query": "q", "duration": true, "vid": "v1", "relevant_windows": [[0, 1]]}\n',
        r"bad\.jsonl, line 1: duration True is a boolean, not a number",
    ),
    "boolean-time": (
        "bad.jsonl",
        '{"qid": "a", "query": "q", "duration": 9, "vid": "v1", "relevant_windows": [[false, 1]]}\n',
        r"bad\.jsonl, line 1: start time False is a boolean, not a number",
    ),
}


@pytest.mark.parametrize("case", ANNOTATION_CASES)
def test_bad_annotations_name_file_line_and_reason(data, case, capsys) -> None:
    name, content, pattern = ANNOTATION_CASES[case]
    bad = data / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(FormatError, match=pattern) as caught:
        read_annotations(bad, data / "durations.json")
    assert caught.value.path == str(bad)
    _train_both_ways(data, _files_sets(data, data__train=bad), FormatError, pattern, capsys)


def test_zero_duration_in_the_durations_file(data, capsys) -> None:
    (data / "a.txt").write_text(GOOD_LINE)
    (data / "durations.json").write_text('{"v0": {"duration": 0}}')
    pattern = r"a\.txt, line 1: duration 0\.0 of video 'v0' is not positive"
    _train_both_ways(data, _files_sets(data, data__train=data / "a.txt"), FormatError, pattern, capsys)


def test_charades_text_without_durations_is_refused(data, capsys) -> None:
    (data / "a.txt").write_text(GOOD_LINE)
    sets = [s for s in _files_sets(data, data__train=data / "a.txt") if not s.startswith("data.durations=")]
    _train_both_ways(data, sets, FormatError, r"a\.txt: Charades-STA text needs a durations file", capsys)


@pytest.mark.parametrize("key", ["data.train", "data.durations"])
def test_missing_annotation_or_durations_file(data, key, capsys) -> None:
    (data / "a.txt").write_text(GOOD_LINE)
    sets = [*_files_sets(data, data__train=data / "a.txt"), f"{key}={data / 'absent.json'}"]
    pattern = rf"No such file or directory: '{data / 'absent.json'}'"
    _train_both_ways(data, sets, FileNotFoundError, pattern, capsys, kit_error=False)


def test_start_after_end_is_dropped_and_counted_not_an_error(tmp_path) -> None:
    """The documented rule (tvgkit.data.formats): clip to [0, duration], then drop a window with start >= end."""
    (tmp_path / "d.json").write_text('{"v0": {"duration": 10}}')
    (tmp_path / "a.txt").write_text("v0 5 3##reversed\nv0 -1 3##before the start\nv0 2 99##past the end\nv0 1 4##ok\n")
    records, report = read_charades_sta(tmp_path / "a.txt", tmp_path / "d.json")
    assert [r.windows for r in records] == [((0.0, 3.0),), ((2.0, 10.0),), ((1.0, 4.0),)]
    assert (report.n_read, report.n_kept, report.n_dropped) == (4, 3, 1)
    assert (report.n_clipped_start, report.n_clipped_end) == (1, 1)
    assert report.dropped_examples == ["1: v0 windows [(5.0, 3.0)] (duration 10.0)"]


def test_every_removed_window_and_renamed_qid_is_counted_and_shown(tmp_path) -> None:
    """Reversed, zero-length and outside windows are each counted (also those removed from a record that is kept),
    and a qid repeated in a file (here across videos) is renamed qid#2, qid#3 with examples: the one report line."""
    rows = [
        {"qid": "a", "query": "q one", "duration": 10, "vid": "v1", "relevant_windows": [[1, 3], [5, 2]]},
        {"qid": "a", "query": "q two", "duration": 10, "vid": "v2", "relevant_windows": [[4, 4], [2, 6]]},
        {"qid": "b", "query": "q three", "duration": 10, "vid": "v2", "relevant_windows": [[-2, 3]]},
        {"qid": "a", "query": "q four", "duration": 10, "vid": "v3", "relevant_windows": [[12, 15]]},
        {"qid": "a", "query": "q five", "duration": 10, "vid": "v1", "relevant_windows": [[0, 1]]},
    ]
    records, report = read_annotations(_write_jsonl(tmp_path / "a.jsonl", rows))
    assert [(r.qid, r.windows) for r in records] == [
        ("a", ((1.0, 3.0),)),
        ("a#2", ((2.0, 6.0),)),
        ("b", ((0.0, 3.0),)),
        ("a#3", ((0.0, 1.0),)),
    ]
    assert report.summary() == (
        f"{tmp_path / 'a.jsonl'}: read 5, kept 4, dropped 1 (start >= end after clipping), clipped end 0, "
        "clipped start 1; windows removed: 1 reversed, 1 of zero length, 1 outside the video; "
        "renamed 2 repeated qids (2: 'a' -> 'a#2', 5: 'a' -> 'a#3'); "
        "dropped: 4: v3 windows [(12.0, 15.0)] (duration 10.0)"
    )


def test_all_formats_are_read_by_read_annotations(tmp_path) -> None:
    """The files dataset accepts any supported format: each one read through the dispatcher equals its reader."""
    fixtures = Path(__file__).parent / "fixtures"
    from tvgkit.data import read_activitynet, read_jsonl, read_tacos

    durations = fixtures / "charades_durations_small.csv"
    assert read_annotations(fixtures / "charades_sta_small.txt", durations) == read_charades_sta(
        fixtures / "charades_sta_small.txt", durations
    )
    assert read_annotations(fixtures / "activitynet_small.json") == read_activitynet(
        fixtures / "activitynet_small.json"
    )
    assert read_annotations(fixtures / "tacos_small.json") == read_tacos(fixtures / "tacos_small.json")
    assert read_annotations(fixtures / "moments_small.jsonl") == read_jsonl(fixtures / "moments_small.jsonl")


# --- features ------------------------------------------------------------------------------------------------------


def test_missing_features_list_the_ids_and_count(data, capsys) -> None:
    lacking = [f"m{i}" for i in range(6)]
    _write_jsonl(data / "train.jsonl", _rows(GOOD_VIDS[:6] + lacking))
    pattern = (
        r"f\.hdf5: no features for 6 of 14 annotated videos \(m0, m1, m2, m3, m4 and 1 more\); "
        r"fix the video ids, or set data\.skip_missing_features=true to skip their 12 queries"
    )
    err = _train_both_ways(data, _files_sets(data), MissingFeaturesError, pattern, capsys)
    assert isinstance(err, KeyError)  # a missing key, as a mapping's


def test_skip_missing_features_drops_and_reports_them(data, capsys) -> None:
    _write_jsonl(data / "train.jsonl", _rows(GOOD_VIDS[:6] + ["m0", "m1"]))
    cfg = config.load(RunConfig, None, _files_sets(data, data__skip_missing_features="true"))
    capsys.readouterr()
    splits = load_splits(cfg.data, progress=False)
    clean = "dropped 0 (start >= end after clipping), clipped end 0, clipped start 0"
    assert capsys.readouterr().out.strip().splitlines() == [
        f"{data / 'train.jsonl'}: read 16, kept 16, {clean}",
        f"{data / 'test.jsonl'}: read 4, kept 4, {clean}",
        f"{data / 'f.hdf5'}: skipped 4 queries of 2 videos with no features (m0, m1)",
    ]
    vids = {r.vid for part in splits.records.values() for r in part}
    assert vids == set(GOOD_VIDS) and sum(map(len, splits.records.values())) == 16


def test_skipping_every_query_of_a_split_is_an_error(data) -> None:
    with open_features(data / "f.hdf5") as store:
        splits = {"train": read_annotations(data / "train.jsonl")[0], "test": _rows_as_records(["x1"])}
        with pytest.raises(InputError, match=r"split 'test' has no queries \(all 2 lack features\)"):
            check_coverage(store, splits, skip_missing=True)


def _rows_as_records(vids):
    from tvgkit.data.records import Record

    return [
        Record(r["vid"], r["qid"], r["query"], r["duration"], (tuple(r["relevant_windows"][0]),)) for r in _rows(vids)
    ]


def _h5(path: Path, arrays: dict) -> Path:
    """Write arrays as they are (write_hdf5 refuses non-finite values, as it should)."""
    with h5py.File(path, "w") as f:
        for vid, array in arrays.items():
            f[vid] = array
    return path


def _nan_store(d: Path) -> None:
    arrays = _features(GOOD_VIDS)
    arrays["v1"][2, 5] = np.nan
    _h5(d / "f.hdf5", arrays)


def _wide_store(d: Path) -> None:
    _h5(d / "f.hdf5", {**_features(GOOD_VIDS), "v2": np.zeros((6, 2 * DIM), np.float32)})


def _empty_video(d: Path) -> None:
    _h5(d / "f.hdf5", {**_features(GOOD_VIDS), "v1": np.zeros((0, DIM), np.float32)})


FEATURE_CASES = {
    "non-finite": (
        _nan_store,
        {},
        r"f\.hdf5: features of video 'v1' hold non-finite values in 1 clip\(s\), first at clip 2",
    ),
    "dim-vs-config": (
        None,
        {"data__feature_dim": 16},
        r"f\.hdf5: features of video 'v0' have 8 dims but data\.feature_dim",
    ),
    "mixed-widths": (_wide_store, {}, r"f\.hdf5: features of video 'v2' have 16 dims but those of video 'v0' have 8"),
    "video-with-no-clip": (_empty_video, {}, r"f\.hdf5: features of video 'v1' are \(0, 8\), expected \[clips >= 1"),
    "not-hdf5": (lambda d: (d / "f.hdf5").write_text("a text file"), {}, r"f\.hdf5: not a readable HDF5 file"),
    "hdf5-without-videos": (lambda d: _h5(d / "f.hdf5", {}), {}, r"f\.hdf5: the HDF5 file holds no videos"),
    "missing-store": (lambda d: (d / "f.hdf5").unlink(), {}, r"f\.hdf5: no such feature file or folder"),
    "empty-file": (lambda d: (d / "f.hdf5").write_bytes(b""), {}, r"f\.hdf5: not a readable HDF5 file"),
    "truncated-hdf5": (lambda d: _truncate(d / "f.hdf5"), {}, r"f\.hdf5: not a readable HDF5 file \(.*truncated file"),
    "strings-not-numbers": (
        lambda d: _h5(d / "f.hdf5", {**_features(GOOD_VIDS), "v3": np.full((6, DIM), "x", dtype=object)}),
        {},
        r"f\.hdf5: features of video 'v3' are of dtype object, expected integers or floats",
    ),
    "one-d-per-video": (
        lambda d: _h5(d / "f.hdf5", {**_features(GOOD_VIDS), "v1": np.zeros(6, np.float32)}),
        {},
        r"f\.hdf5: features of video 'v1' are \(6,\), expected \[clips >= 1, dim\]",
    ),
    "three-d-per-video": (
        lambda d: _h5(d / "f.hdf5", {**_features(GOOD_VIDS), "v1": np.zeros((6, DIM, 2), np.float32)}),
        {},
        r"f\.hdf5: features of video 'v1' are \(6, 8, 2\), expected \[clips >= 1, dim\]",
    ),
    "empty-npy-folder": (
        lambda d: (d / "npy").mkdir(),
        {"data__features": "<npy>"},
        r"npy: the folder holds no <vid>\.npy or <vid>\.npz files",
    ),
    "object-npy": (
        lambda d: _npy(d, {"v1": np.array([object()] * 3, dtype=object)}),
        {"data__features": "<npy>"},
        r"npy: cannot read the features of video 'v1' \(.*Python objects",
    ),
    "truncated-npy": (
        lambda d: _truncate(_npy(d, {}) / "v2.npy"),
        {"data__features": "<npy>"},
        r"npy: cannot read the features of video 'v2' \(",
    ),
    "video-is-a-group": (
        lambda d: _h5(
            d / "f.hdf5",
            {**_features(GOOD_VIDS[:3]), "v3/c3d_features": np.zeros((6, DIM)), **_features(GOOD_VIDS[4:])},
        ),
        {},
        r"f\.hdf5: the entry of video 'v3' is an HDF5 group, expected a \[clips, dim\] dataset as the first video's",
    ),
    "npz-without-features-array": (
        lambda d: _npz(d, "feats"),
        {"data__features": "<npz>"},
        r"npz: v0\.npz holds no 'features' array \(it holds feats\)",
    ),
    "one-npz-file": (
        lambda d: np.savez(d / "f.npz", feats=np.zeros((6, DIM))),
        {"data__features": "<f.npz>"},
        r"f\.npz: a single \.npz file; features are an HDF5 file or a folder of <vid>\.npy files, or of <vid>\.npz "
        r"files each holding a 'features' array",
    ),
}


def _truncate(path: Path) -> Path:
    """Keep the first half of a file, as a copy cut short or a full disk leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _npy(d: Path, replace: dict) -> Path:
    """The good features as a folder of <vid>.npy, with some videos' arrays replaced (pickled if need be)."""
    (d / "npy").mkdir()
    for vid, array in {**_features(GOOD_VIDS), **replace}.items():
        np.save(d / "npy" / f"{vid}.npy", array, allow_pickle=array.dtype == object)
    return d / "npy"


def _npz(d: Path, key: str) -> Path:
    """The good features as a folder of <vid>.npz files, each holding its array under ``key``."""
    (d / "npz").mkdir()
    for vid, array in _features(GOOD_VIDS).items():
        np.savez(d / "npz" / f"{vid}.npz", **{key: array})
    return d / "npz"


@pytest.mark.parametrize("case", FEATURE_CASES)
def test_bad_features_name_the_file_video_and_reason(data, case, capsys) -> None:
    damage, keys, pattern = FEATURE_CASES[case]
    if damage:
        damage(data)
    keys = {k: data / v[1:-1] if str(v).startswith("<") else v for k, v in keys.items()}
    error = FileNotFoundError if case == "missing-store" else FeatureError
    with pytest.raises(error, match=pattern):
        train(config.load(RunConfig, None, _files_sets(data, **keys)), progress=False)
    line = _cli_error(["train", *(a for s in _files_sets(data, **keys) for a in ("--set", s)), "--quiet"], capsys)
    assert re.search(pattern, line), line
    assert not (data / "runs").exists()


# --- configs -------------------------------------------------------------------------------------------------------

CONFIG_CASES = {
    "unknown-key-override": (None, ["train.lrr=0.1"], r"unknown config key train\.lrr \(known keys: audit, batch_size"),
    "unknown-key-in-yaml": ("data:\n  featurs: f.hdf5\n", [], r"unknown config key data\.featurs"),
    "yaml-not-a-mapping": ("- train\n- eval\n", [], r"c\.yaml: the top level must be a mapping"),
    "invalid-yaml": ("train: {epochs: 2\n", [], r"c\.yaml: not valid YAML"),
    "missing-config-file": ("<absent>", [], r"absent\.yaml: config file not found"),
    "wrong-type": (None, ["train.epochs=many"], r"train\.epochs: expected int, got 'many'"),
    "files-without-test": (
        None,
        ["data.dataset=files", "data.train=t.jsonl"],
        r"data\.dataset=files needs data\.train",
    ),
    "unknown-dataset": (None, ["data.dataset=kinetics"], r"data\.dataset must be 'synthetic' or 'files'"),
    "unknown-peft-method": ("<files>", ["text.peft=lora2"], r"text\.peft: unknown PEFT method 'lora2'"),
    "text-encoder-folder-without-a-model": (
        "<files>",
        ["text.encoder=<data>"],
        r"text\.encoder = '\S+': must be random-bert, minilm, a folder holding a model and its tokenizer, or a hub id "
        r"in the local cache \(",
    ),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_configs_name_the_key(data, case, capsys) -> None:
    text, sets, pattern = CONFIG_CASES[case]
    path = None
    if text == "<absent>":
        path = data / "absent.yaml"
    elif text == "<files>":
        path = data / "c.yaml"
        path.write_text("name: bad\n")
        sets = [*_files_sets(data), *sets]
    elif text is not None:
        path = data / "c.yaml"
        path.write_text(text)
    sets = [*(s.replace("<data>", str(data)) for s in sets), f"runs_dir={data / 'runs'}"]
    _train_both_ways(data, sets, ConfigError, pattern, capsys, config_file=path)


#: --set -> the whole error line after "tvgkit train: error: " (key, value, range); every numeric field has a range
RANGE_CASES = {
    "train.batch_size=0": "train.batch_size = 0: must be >= 1",
    "train.batch_size=-4": "train.batch_size = -4: must be >= 1",
    "train.epochs=0": "train.epochs = 0: must be >= 1",
    "train.lr=-1e-3": "train.lr = -0.001: must be > 0",
    "train.lr=nan": "train.lr = nan: must be a finite number > 0",
    "train.lr=.inf": "train.lr = inf: must be a finite number > 0",
    "train.encoder_lr=0": "train.encoder_lr = 0.0: must be > 0",
    "train.warmup_ratio=1": "train.warmup_ratio = 1.0: must be in [0, 1)",
    "train.clip_grad=0": "train.clip_grad = 0.0: must be > 0",
    "train.log_every=0": "train.log_every = 0: must be >= 1",
    "train.threads=0": "train.threads = 0: must be >= 1",
    "train.checkpoint_every=-1": "train.checkpoint_every = -1: must be >= 0",
    "train.epochs=true": "train.epochs: expected int, got True",
    "seed=-1": "seed = -1: must be >= 0",
    "data.max_clips=0": "data.max_clips = 0: must be >= 1",
    "data.max_clips=161": "data.max_clips = 161: must be <= 160 with text.encoder=random-bert (its 256 positions, "
    "clips from position 96)",
    "data.feature_dim=0": "data.feature_dim = 0: must be >= 1",
    "text.hidden=31": "text.hidden = 31: must be a multiple of text.heads (2)",
    "text.dropout=1": "text.dropout = 1.0: must be in [0, 1)",
    "model.giou_weight=-1": "model.giou_weight = -1.0: must be >= 0",
    "model.head=spans": "model.head = 'spans': must be one of span, regression, regression-mlp",
    "train.select_metric=R1": "train.select_metric = 'R1': must be one of R1@0.1, R1@0.3, R1@0.5, R1@0.7, mIoU",
    "train.rdrop_kind=js": "train.rdrop_kind = 'js': must be one of kl, mse, l1, smooth_l1",
    "data.synth.fps=0": "data.synth.fps = 0.0: must be > 0",
    "data.synth.duration_min=50": "data.synth.duration_min = 50.0: must be <= data.synth.duration_max (12.0)",
    "data.synth.duration_min=true": "data.synth.duration_min: expected float, got True",
    "name=../escaped": "name = '../escaped': must be one folder name (no '/', '\\', '..'; not empty)",
    "name=a/b": "name = 'a/b': must be one folder name (no '/', '\\', '..'; not empty)",
    "name=..": "name = '..': must be one folder name (no '/', '\\', '..'; not empty)",
    "name=": "name = '': must be one folder name (no '/', '\\', '..'; not empty)",
}


@pytest.mark.parametrize("override", RANGE_CASES)
def test_a_config_value_out_of_range_is_one_line_before_anything_is_written(tmp_path, override, capsys) -> None:
    """Through ``tvgkit train`` on the synthetic set: refused before rendering, training or any folder."""
    sets = [*PRESETS["tiny"], f"runs_dir={tmp_path / 'work' / 'runs'}", override]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(tmp_path / "work" / "cache"))
        line = _cli_error(["train", *(a for s in sets for a in ("--set", s)), "--quiet"], capsys)
    assert line == f"tvgkit train: error: {RANGE_CASES[override]}"
    assert list(tmp_path.iterdir()) == []  # no run folder (inside runs_dir or not), no rendered dataset


SYNTH_CASES = {
    "fps=0": "fps = 0.0: must be > 0",
    "fps=nan": "fps = nan: must be a finite number > 0",
    "n_train=0": "n_train = 0: must be >= 1",
    "duration_min=30 duration_max=20": "duration_min = 30.0: must be <= duration_max (20.0)",
    "moment_min=6 moment_max=5": "moment_min = 6.0: must be <= moment_max (5.0)",
    "objects_max=13": "objects_max = 13: must be <= 12, the distinct colour-shape pairs",
    "clip_seconds=-1": "clip_seconds = -1.0: must be > 0",
    "distractor_prob=1.5": "distractor_prob = 1.5: must be in [0, 1]",
    "size=16": "size = 16: must be >= 32",
}


@pytest.mark.parametrize("case", SYNTH_CASES)
def test_synth_settings_out_of_range_render_nothing(tmp_path, case, capsys) -> None:
    sets = [a for s in case.split() for a in ("--set", s)]
    argv = ["synth", *sets, "--cache-dir", str(tmp_path / "cache"), "--video", str(tmp_path / "v.mp4"), "--quiet"]
    assert _cli_error(argv, capsys) == f"tvgkit synth: error: {SYNTH_CASES[case]}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["same", "same-resolved", "hard-link"])
def test_extract_never_writes_over_its_input(tmp_path, out, capsys) -> None:
    from tvgkit.data.extract import write_video

    video = write_video(np.full((8, 64, 64, 3), 128, np.uint8), tmp_path / "a.mp4", fps=4)
    (tmp_path / "link.mp4").hardlink_to(video)
    target = {"same": video, "same-resolved": tmp_path / "x" / ".." / "a.mp4", "hard-link": tmp_path / "link.mp4"}
    before = _snapshot(tmp_path)
    line = _cli_error(["extract", str(video), "--out", str(target[out]), "--quiet"], capsys)
    assert line == (
        f"tvgkit extract: error: --out {target[out]} is the input video {video}: it would be overwritten; "
        "write elsewhere"
    )
    assert _snapshot(tmp_path) == before


def test_extract_refuses_one_file_for_two_outputs(tmp_path, capsys) -> None:
    from tvgkit.data.extract import write_video

    video = write_video(np.full((8, 64, 64, 3), 128, np.uint8), tmp_path / "a.mp4", fps=4)
    before = _snapshot(tmp_path)
    out = tmp_path / "f.hdf5"
    line = _cli_error(["extract", str(video), "--out", str(out), "--durations", str(out), "--quiet"], capsys)
    assert line == f"tvgkit extract: error: --out and --durations are the same file {out}; give two different paths"
    assert _snapshot(tmp_path) == before


def test_extract_refuses_a_folder_as_output_before_reading(tmp_path, capsys) -> None:
    (tmp_path / "out").mkdir()
    line = _cli_error(["extract", str(tmp_path / "absent.mp4"), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert line == f"tvgkit extract: error: --out {tmp_path / 'out'} is a folder; give a file name in it"
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any((tmp_path / "out").iterdir())


def test_runs_on_a_file_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "runs").write_text("")
    line = _cli_error(["runs", str(tmp_path / "runs")], capsys)
    reason = "not a folder (tvgkit runs reads the folder holding the run folders)"
    assert line == f"tvgkit runs: error: {tmp_path / 'runs'}: {reason}"


def test_a_run_name_set_in_python_cannot_leave_runs_dir(data) -> None:
    """A config built in Python skips the loader's checks; the run folder itself is still refused outside runs_dir."""
    cfg = config.load(RunConfig, None, _files_sets(data))
    cfg.name = "../outside"
    with pytest.raises(ConfigError, match=r"^name = '\.\./outside': must be one folder name"):
        train(cfg, progress=False)
    assert not (data / "outside").exists() and not (data / "runs").exists()


def test_the_guards_stop_is_one_line_naming_step_module_and_last_good_weights(data, capsys) -> None:
    """Features of float32-max magnitude: finite, so accepted, but their statistics overflow; the guard stops the
    first step, and ``tvgkit train`` says so in one line (not a traceback with exit status 1)."""
    huge = {v: np.sign(a) * np.finfo(np.float32).max for v, a in _features(GOOD_VIDS).items()}
    _h5(data / "f.hdf5", huge)
    sets = _files_sets(data, train__device="cpu")
    line = _cli_error(["train", *(a for s in sets for a in ("--set", s)), "--quiet"], capsys)
    assert line.startswith("tvgkit train: error: step 0: non-finite "), line
    assert "video_proj" in line  # the module: the input of the video projection is already non-finite
    assert line.endswith(f"Last good weights: {data / 'runs' / 'bad' / 'last_good.pt'}"), line
    assert (data / "runs" / "bad" / "last_good.pt").is_file()


# --- a trained run meets features of another width ------------------------------------------------------------------


@pytest.fixture(scope="module")
def files_run(tmp_path_factory) -> Path:
    """A tiny run trained on 8-dim features of one's own, through the CLI, with missing videos skipped and counted."""
    d = tmp_path_factory.mktemp("files_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(d / "cache"))
        write_hdf5(_features(GOOD_VIDS), d / "f.hdf5")
        _write_jsonl(d / "train.jsonl", _rows(GOOD_VIDS[:6] + ["gone"]))
        _write_jsonl(d / "test.jsonl", _rows(GOOD_VIDS[6:]))
        sets = _files_sets(d, name="own", data__skip_missing_features="true")
        assert main(["train", *(a for s in sets for a in ("--set", s)), "--quiet"]) == 0
        yield d / "runs" / "own"


def test_files_run_skipped_the_video_without_features(files_run) -> None:
    metrics = json.loads((files_run / "metrics.json").read_text())
    splits = load_splits(config.load(RunConfig, files_run / "config.yaml").data, progress=False)
    assert metrics["n_test"] == 4 and metrics["n_train"] + len(splits.records["val"]) == 12  # 14 minus 2 skipped


def test_eval_with_features_of_another_width_is_refused(files_run, tmp_path, capsys) -> None:
    run = shutil.copytree(files_run, tmp_path / "run")
    write_hdf5(_features(GOOD_VIDS, dim=2 * DIM), tmp_path / "wide.hdf5")
    cfg = config.read_yaml(run / "config.yaml")
    cfg["data"]["features"] = str(tmp_path / "wide.hdf5")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = sorted(p.name for p in run.iterdir())
    pattern = rf"wide\.hdf5: features have 16 dims but the checkpoint of {run} was trained on 8"
    assert re.search(pattern, _cli_error(["eval", str(run)], capsys))
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


def test_predict_on_a_video_needs_a_run_trained_on_extracted_features(files_run, tmp_path, capsys) -> None:
    from tvgkit.data.extract import write_video

    video = write_video(np.full((8, 64, 64, 3), 128, np.uint8), tmp_path / "grey.mp4", fps=4)
    line = _cli_error(["predict", str(files_run), "--video", str(video), "--query", "a red ball"], capsys)
    assert "grey.mp4: tvgkit extract gives 124 features per clip, but the run" in line
    assert "was trained on 8-dim features" in line


# --- nothing lost, and only kit errors are shortened -----------------------------------------------------------------


def test_a_failed_hdf5_write_keeps_the_old_file(tmp_path) -> None:
    path = write_hdf5(_features(["a"]), tmp_path / "f.hdf5")
    before = path.read_bytes()
    with pytest.raises(FeatureError, match="video 'b' hold non-finite values"):
        write_hdf5({"a": np.ones((2, 2)), "b": np.full((2, 2), np.inf)}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["f.hdf5"]


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path) -> None:
    """Only kit errors become one line: a KeyError from a bug in a handler propagates with its traceback."""
    import tvgkit.grounding.commands

    def broken(args):
        return {}["oops"]

    monkeypatch.setattr(tvgkit.grounding.commands, "runs", broken)
    with pytest.raises(KeyError, match="oops"):
        main(["runs", str(tmp_path)])


def test_integer_and_half_precision_features_are_read_as_float32(data) -> None:
    """Documented acceptance (README, 'Bad input'): any integer or float width is converted to float32."""
    arrays = {
        v: (10 * a).astype(dtype)
        for (v, a), dtype in zip(_features(GOOD_VIDS).items(), [np.int32, np.float16] * 4, strict=True)
    }
    _h5(data / "f.hdf5", arrays)
    splits = load_splits(config.load(RunConfig, None, _files_sets(data)).data, progress=False)
    for vid in ("v0", "v1"):
        assert splits.features[vid].dtype == np.float32
        assert np.array_equal(splits.features[vid], arrays[vid].astype(np.float32))


# --- the named datasets (tvgkit baselines): empty, whitespace-only, emptied by the clean-up, byte-order marks -----

MOMENTS = [(0.0, 3.0), (1.0, 6.5), (2.0, 4.0), (4.5, 9.0), (0.5, 8.0), (6.0, 10.0), (3.0, 5.5), (7.0, 9.5)]


def _named_datasets(root: Path) -> Path:
    """Good small train and test files of the three named datasets under their usual names (8 varied moments)."""
    folders = {name: root / name for name in ("charades_sta", "activitynet_captions", "tacos")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for split in ("train", "test"):
        lines = (f"v{i} {s} {e}##a person opens door {i}\n" for i, (s, e) in enumerate(MOMENTS))
        (folders["charades_sta"] / f"charades_sta_{split}.txt").write_text("".join(lines))
        csv_rows = "".join(f"v{i},10.0\n" for i in range(len(MOMENTS)))
        (folders["charades_sta"] / f"Charades_v1_{split}.csv").write_text("id,length\n" + csv_rows)
        anet = {
            f"v{i}": {"duration": 10.0, "timestamps": [[s, e]], "sentences": [f" she dances {i}"]}
            for i, (s, e) in enumerate(MOMENTS)
        }
        (folders["activitynet_captions"] / f"{split}.json").write_text(json.dumps(anet))
        tacos = {
            f"s{i}.avi": {"timestamps": [[30 * s, 30 * e]], "sentences": [f"he cuts {i}"], "fps": 30, "num_frames": 300}
            for i, (s, e) in enumerate(MOMENTS)
        }
        (folders["tacos"] / f"{split}.json").write_text(json.dumps(tacos))
    return root


WHITESPACE = "  \n\t\n\r\n"
EMPTY = r"is empty \(or only whitespace\)"
#: case -> (dataset, file written (relative to the data folder), its content, what the error line says)
NAMED_CASES = {
    "charades-txt-empty": ("charades-sta", "charades_sta/charades_sta_test.txt", "", EMPTY),
    "charades-txt-whitespace": ("charades-sta", "charades_sta/charades_sta_test.txt", WHITESPACE, EMPTY),
    "charades-txt-only-a-bom": ("charades-sta", "charades_sta/charades_sta_test.txt", "\ufeff\n", EMPTY),
    "charades-txt-all-dropped": (
        "charades-sta",
        "charades_sta/charades_sta_test.txt",
        "v0 5 3##reversed\nv1 12 15##after the end\n",
        r"all 2 queries were dropped by the clean-up \(start >= end after clipping to \[0, duration\]\), "
        r"for example 1: v0 windows \[\(5\.0, 3\.0\)\]",
    ),
    "charades-csv-empty": ("charades-sta", "charades_sta/Charades_v1_test.csv", "", EMPTY),
    "charades-csv-whitespace": ("charades-sta", "charades_sta/Charades_v1_test.csv", WHITESPACE, EMPTY),
    "charades-csv-header-only": (
        "charades-sta",
        "charades_sta/Charades_v1_test.csv",
        "id,length\n",
        "holds no video durations",
    ),
    "activitynet-empty": ("activitynet", "activitynet_captions/test.json", "", EMPTY),
    "activitynet-whitespace": ("activitynet", "activitynet_captions/test.json", WHITESPACE, EMPTY),
    "activitynet-no-videos": ("activitynet", "activitynet_captions/test.json", "{}", r"holds no annotations"),
    "activitynet-all-dropped": (
        "activitynet",
        "activitynet_captions/test.json",
        '{"v0": {"duration": 10, "timestamps": [[4, 4]], "sentences": ["a"]}}',
        r"all 1 queries were dropped by the clean-up",
    ),
    "tacos-empty": ("tacos", "tacos/test.json", "", EMPTY),
    "tacos-whitespace": ("tacos", "tacos/test.json", WHITESPACE, EMPTY),
    "tacos-no-videos": ("tacos", "tacos/test.json", "{}", r"holds no annotations"),
    "jsonl-empty": ("tacos", "tacos/tacos_test_release.jsonl", "", EMPTY),
    "jsonl-whitespace": ("tacos", "tacos/tacos_test_release.jsonl", WHITESPACE, EMPTY),
}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time: equal snapshots mean nothing was written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", NAMED_CASES)
def test_empty_or_emptied_dataset_files_are_one_line(tmp_path, case, capsys) -> None:
    """The issue's first case (an empty charades_sta_test.txt ended in a traceback), in every format."""
    dataset, name, content, pattern = NAMED_CASES[case]
    root = _named_datasets(tmp_path / "data")
    if name.endswith(".jsonl"):  # lighthouse JSONL is read where the 2D-TAN JSON is absent
        (root / "tacos" / "test.json").unlink()
    (root / name).write_text(content, encoding="utf-8")
    before = _snapshot(tmp_path)
    line = _cli_error(["baselines", "--dataset", dataset, "--data-dir", str(root), "--json"], capsys)
    assert re.search(rf"error: {re.escape(str(root / name))}: {pattern}", line), line
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("dataset", ["charades-sta", "activitynet", "tacos"])
def test_a_byte_order_mark_changes_nothing_through_the_cli(tmp_path, dataset, capsys) -> None:
    """Every file of the dataset saved with a UTF-8 BOM: the same report and the same baselines as without."""
    outputs = []
    for variant in ("plain", "bom"):
        root = _named_datasets(tmp_path / variant)
        if variant == "bom":
            for path in (p for p in root.rglob("*") if p.is_file()):
                path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
        capsys.readouterr()
        assert main(["baselines", "--dataset", dataset, "--data-dir", str(root), "--json"]) == 0
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "error" not in captured.err
        outputs.append(captured.out.replace(str(root), "ROOT"))
    assert outputs[0] == outputs[1]
    assert re.search(r"^test: ROOT/\S+: read 8, kept 8, dropped 0", outputs[0], re.M), outputs[0]


FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = {
    "charades-txt-csv": (FIXTURES / "charades_sta_small.txt", FIXTURES / "charades_durations_small.csv"),
    "charades-txt-json": (FIXTURES / "charades_sta_small.txt", FIXTURES / "charades_durations_small.json"),
    "activitynet": (FIXTURES / "activitynet_small.json", None),
    "tacos": (FIXTURES / "tacos_small.json", None),
    "jsonl": (FIXTURES / "moments_small.jsonl", None),
}
REAL_FILES = {
    "real-charades-txt-csv": ("charades_sta", "charades_sta_test.txt", "Charades_v1_test.csv"),
    "real-charades-jsonl": ("charades_sta", "charades_test_release.jsonl", None),
    "real-activitynet": ("activitynet_captions", "val.json", None),
    "real-tacos": ("tacos", "test.json", None),
}


def _with_bom(path: Path, folder: Path) -> Path:
    copy = folder / path.name
    copy.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    return copy


@pytest.mark.parametrize("case", [*FIXTURE_FILES, *REAL_FILES])
def test_a_file_with_a_byte_order_mark_reads_the_same_records(tmp_path, case) -> None:
    if case in FIXTURE_FILES:
        annotations, durations = FIXTURE_FILES[case]
    else:
        folder, name, durations_name = REAL_FILES[case]
        root = data_root()
        if root is None or not (root / folder / name).is_file():
            pytest.skip(f"real file {folder}/{name} not found (set $TVGKIT_DATA; see README 'Real annotations')")
        annotations = root / folder / name
        durations = root / folder / durations_name if durations_name else None
    records, report = read_annotations(annotations, durations)
    bom_records, bom_report = read_annotations(
        _with_bom(annotations, tmp_path), durations and _with_bom(durations, tmp_path)
    )
    assert bom_records == records and len(records) > 0
    assert dataclasses.replace(bom_report, source=report.source) == report


def test_a_config_with_a_byte_order_mark_reads_the_same(tmp_path) -> None:
    (tmp_path / "c.yaml").write_bytes(codecs.BOM_UTF8 + b"name: bom\ntrain:\n  epochs: 3\n")
    cfg = config.load(RunConfig, tmp_path / "c.yaml")
    assert (cfg.name, cfg.train.epochs) == ("bom", 3)


def test_real_tacos_clean_up_report_is_printed(capsys) -> None:
    """What the clean-up did is printed for a real dataset: counts, and the first dropped queries when any."""
    root = data_root()
    if root is None or not (root / "tacos").is_dir():
        pytest.skip("real TACoS files not found (set $TVGKIT_DATA; see README 'Real annotations')")
    assert main(["baselines", "--dataset", "tacos", "--data-dir", str(root), "--json"]) == 0
    out = capsys.readouterr().out
    for split in ("test", "train"):
        pattern = (
            rf"^{split}: \S+tacos\S+: read \d+, kept \d+, dropped \d+ \(start >= end after clipping\), clipped end"
        )
        assert re.search(pattern, out, re.M), out


# --- a run folder that was damaged or edited (tvgkit eval / predict on files_run) -------------------------------------


def _other_model(run: Path, overrides: list[str], dim: int = DIM) -> dict:
    """The weights of a model of another size or feature width, with the run's own tokenizer."""
    from tvgkit.grounding.build import build_model

    cfg = config.load(RunConfig, run / "config.yaml", overrides)
    return build_model(cfg, [], dim, tokenizer_dir=run / "tokenizer")[0].state_dict()


def _edit_config(run: Path, **changes) -> None:
    cfg = config.merge(config.read_yaml(run / "config.yaml"), changes)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


NOT_FIT = r"best\.pt does not fit the model \S+config\.yaml describes \(was config\.yaml edited, or best\.pt copied"
#: case -> (damage, what the error line says)
RUN_CASES = {
    "truncated-best": (
        lambda run: _truncate(run / "best.pt"),
        r"best\.pt: damaged or not a checkpoint \(truncated\? torch says: .*\); re-train with: tvgkit train "
        r"\S+config\.yaml \(last\.pt holds the last epoch's weights, under 'model'\)$",
    ),
    "empty-best": (lambda run: (run / "best.pt").write_bytes(b""), r"best\.pt: damaged or not a checkpoint"),
    "best-of-another-model-size": (
        lambda run: torch.save(_other_model(run, ["text.layers=2"]), run / "best.pt"),
        NOT_FIT + r".*Unexpected key\(s\) in state_dict",
    ),
    "best-of-another-feature-width": (
        lambda run: torch.save(_other_model(run, [], dim=2 * DIM), run / "best.pt"),
        r"f\.hdf5: features have 8 dims but the checkpoint of \S+ was trained on 16",
    ),
    "config-missing": (lambda run: (run / "config.yaml").unlink(), r"config\.yaml: config file not found"),
    "config-empty": (lambda run: (run / "config.yaml").write_text(""), NOT_FIT),
    "config-edited-size": (lambda run: _edit_config(run, text={"hidden": 64}), NOT_FIT + r".*size mismatch"),
    "config-edited-unknown-key": (lambda run: _edit_config(run, colour="red"), r"unknown config key colour"),
    "config-not-yaml": (lambda run: (run / "config.yaml").write_text("train: {epochs: 2\n"), r"not valid YAML"),
    "config-binary": (lambda run: (run / "config.yaml").write_bytes(b"\x89HDF\r\n\x1a\n\xff"), r"not UTF-8 text"),
}


@pytest.mark.parametrize("case", RUN_CASES)
def test_a_damaged_or_edited_run_folder_is_one_line(files_run, tmp_path, case, capsys) -> None:
    run = shutil.copytree(files_run, tmp_path / "run")
    damage, pattern = RUN_CASES[case]
    damage(run)
    before = _snapshot(tmp_path)
    line = _cli_error(["eval", str(run), "--split", "test", "--json"], capsys)
    assert re.search(pattern, line), line
    assert _snapshot(tmp_path) == before


def test_predict_names_a_truncated_checkpoint(files_run, tmp_path, capsys) -> None:
    run = shutil.copytree(files_run, tmp_path / "run")
    _truncate(run / "best.pt")
    line = _cli_error(["predict", str(run), "--video", str(tmp_path / "v.mp4"), "--query", "a red ball"], capsys)
    assert re.search(rf"error: {re.escape(str(run / 'best.pt'))}: damaged or not a checkpoint", line), line


# --- queries: empty, whitespace, longer than the model takes -----------------------------------------------------

LONG_QUERY = " ".join(["the red ball moves to the left of the screen"] * 20)  # 200 words


@pytest.mark.parametrize("query", ["", "   \t"])
def test_predict_refuses_an_empty_query(files_run, tmp_path, query, capsys) -> None:
    before = _snapshot(files_run)
    line = _cli_error(["predict", str(files_run), "--video", str(tmp_path / "v.mp4"), "--query", query], capsys)
    assert line == "tvgkit predict: error: --query is empty: give the sentence whose moment to find"
    assert _snapshot(files_run) == before


def test_predict_refuses_a_query_whose_first_word_is_already_too_long(files_run, tmp_path, capsys) -> None:
    """Cutting words cannot help here: refused, rather than grounding the prompt template alone.

    99 letters of the vocabulary are 99 WordPiece tokens (a word over BERT's 100 characters would be one [UNK]).
    """
    query = "e" * 99
    line = _cli_error(["predict", str(files_run), "--video", str(tmp_path / "v.mp4"), "--query", query], capsys)
    assert line.endswith(f"its first word {'e' * 30!r} makes a prompt longer than the model's 96 tokens"), line


def test_predict_cuts_an_over_long_query_with_a_warning(files_run, monkeypatch, capsys) -> None:
    """Documented acceptance (README, 'Bad input'): the query is cut to its first words and a warning says so.

    files_run was trained on 8-dim features of its own, so the video reader is replaced by one that gives such
    features; everything else is the real command.
    """
    import tvgkit.data.extract

    monkeypatch.setattr(tvgkit.data.extract, "extract_video", lambda *a, **k: (_features(["x"], clips=12)["x"], 12.0))
    capsys.readouterr()
    assert main(["predict", str(files_run), "--video", "clip.mp4", "--query", LONG_QUERY, "--top", "3"]) == 0
    out, err = capsys.readouterr()
    cut, unseen = err.splitlines()  # the cut, then the words this run never saw in training (a separate warning)
    assert re.fullmatch(
        r"tvgkit predict: warning: the query makes a \d{3}-token prompt, longer than the model's 96; "
        r"using its first \d+ words",
        cut,
    ), err
    assert unseen.startswith("tvgkit predict: warning: ") and "never occur in the run's training queries" in unseen
    lines = out.strip().splitlines()
    # the spans under a line naming the checkpoint and backbone
    assert len(lines) == 3 + 3 and lines[0].startswith('clip.mp4 (12.0 s), query "the red ball')
    kept = re.search(r"first (\d+) words", err).group(1)
    assert len(re.search(r'query "(.*)":$', lines[0]).group(1).split()) == int(
        kept
    )  # the query printed is the one used


def test_eval_cuts_over_long_annotated_queries_with_a_warning(files_run, tmp_path, capsys) -> None:
    """An annotation file with an over-long query: cut with a warning (first query id named), the run evaluates."""
    run = shutil.copytree(files_run, tmp_path / "run")
    rows = _rows(GOOD_VIDS[6:])
    rows[0]["query"] = LONG_QUERY
    _write_jsonl(tmp_path / "long.jsonl", rows)
    _edit_config(run, data={"test": str(tmp_path / "long.jsonl")})
    capsys.readouterr()
    pattern = r"1 of 4 queries make prompts longer than the model's 96 tokens and were cut to their first words"
    with pytest.warns(UserWarning, match=pattern + r" \(first: v6_0\)"):
        assert main(["eval", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'long.jsonl'}: read 4, kept 4, dropped 0" in out  # the clean-up report, then the metrics
    assert json.loads(out.strip().splitlines()[-1])["split"] == "test"


def test_predict_warns_about_pieces_its_tokenizer_maps_to_unk(files_run, monkeypatch, capsys) -> None:
    """A query of only emoji: no word the run knows, and none its tokenizer knows, so it is named (as a Chinese
    query's characters are), not answered silently."""
    import tvgkit.data.extract

    monkeypatch.setattr(tvgkit.data.extract, "extract_video", lambda *a, **k: (_features(["x"], clips=12)["x"], 12.0))
    capsys.readouterr()
    assert main(["predict", str(files_run), "--video", "clip.mp4", "--query", "🎈 🐢🐢", "--top", "1"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "tvgkit predict: warning: 2 word(s) of the query never occur in the run's training queries: 🎈, 🐢🐢; "
        "the spans below ignore what they say"
    ]


def test_a_test_split_identical_to_training_is_warned_about(files_run, tmp_path, capsys) -> None:
    run = shutil.copytree(files_run, tmp_path / "run")
    train_file = config.read_yaml(run / "config.yaml")["data"]["train"]
    _edit_config(run, data={"test": train_file, "val": train_file})
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [
        f"tvgkit eval: warning: the {split} split ({train_file}) holds exactly the training split's 14 queries "
        f"({train_file}): its metrics measure memorisation, not grounding"
        for split in ("val", "test")
    ]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ('{"test": {"R1@0.5": 1', "Expecting ',' delimiter: line 1 column 22 (char 21)"),
        ('{"val_best": {"mIoU": 3}}', "no 'test' entry"),
        (b"\xff\xfe", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ],
)
def test_runs_skips_a_damaged_run_with_one_warning_line(files_run, tmp_path, damage, reason, capsys) -> None:
    """Documented choice (README, 'Bad input'): the table of the other runs, and one warning line per skipped run."""
    shutil.copytree(files_run, tmp_path / "runs" / "good")
    bad = shutil.copytree(files_run, tmp_path / "runs" / "bad")
    (bad / "metrics.json").write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "runs"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert [r["run"] for r in json.loads(out.strip().splitlines()[-1])["runs"]] == ["good"]
    damaged = f"{bad / 'metrics.json'}: not the results of a finished run ({reason})"
    assert err.splitlines() == [f"tvgkit runs: warning: skipped run bad: {damaged}"]
