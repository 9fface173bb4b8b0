"""Bad input gets a clear error, and nothing is lost: one small bad file per case, through the API and the CLI.

Every case must raise a kit error (FormatError, FeatureError, ConfigError: all ValueErrors) whose message names the
file and line, or the key, and the reason; through ``tvgkit train`` the user sees that message as ONE ``error:`` line
with exit status 2, and no run folder is created. Exceptions that are not kit errors keep their traceback.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tvgkit import config
from tvgkit.cli import main
from tvgkit.config import ConfigError
from tvgkit.data.features import FeatureError, MissingFeaturesError, check_coverage, open_features, write_hdf5
from tvgkit.data.formats import FormatError, read_annotations, read_charades_sta
from tvgkit.errors import InputError
from tvgkit.train import PRESETS, RunConfig, load_splits, train

DIM = 8
GOOD_VIDS = [f"v{i}" for i in range(8)]
TINY_TEXT = [s for s in PRESETS["tiny"] if not s.startswith("data.synth.")]


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
}


@pytest.mark.parametrize("case", FEATURE_CASES)
def test_bad_features_name_the_file_video_and_reason(data, case, capsys) -> None:
    damage, keys, pattern = FEATURE_CASES[case]
    if damage:
        damage(data)
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
    sets = [*sets, f"runs_dir={data / 'runs'}"]
    _train_both_ways(data, sets, ConfigError, pattern, capsys, config_file=path)


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
    import tvgkit.commands

    def broken(args):
        return {}["oops"]

    monkeypatch.setattr(tvgkit.commands, "runs", broken)
    with pytest.raises(KeyError, match="oops"):
        main(["runs", str(tmp_path)])
