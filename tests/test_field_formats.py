"""The field's formats both ways: the time convention, predictions files, the export to Moment-DETR's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvgkit.cli import main
from tvgkit.data.export import clip_annotations, export_moment_detr
from tvgkit.data.extract import clip_features
from tvgkit.data.features import open_features
from tvgkit.data.formats import read_jsonl
from tvgkit.data.records import Record
from tvgkit.data.synthetic import SynthConfig, build, dataset_root
from tvgkit.data.timeline import Clips
from tvgkit.grounding.dataset import GroundingDataset
from tvgkit.grounding.presets import PRESETS
from tvgkit.metrics import evaluate_ranked

TINY = PRESETS["tiny"]
SETS = [a for s in [*TINY, "train.device=cpu"] for a in ("--set", s)]  # metrics compared exactly: the CPU's


class Store(dict):
    """A feature mapping that records its clip length, as an HDF5 file of tvgkit extract does."""

    clip_seconds = 1.0


# --- the time convention ---


def test_a_10_4_s_video_of_1_s_clips() -> None:
    clips = Clips.of(11, 10.4, 1.0)  # ceil(10.4) = 11 clips, the last one partial
    assert clips.at(10.2) == 10 and clips.window(10) == (10.0, 10.4) and clips.window(3) == (3.0, 4.0)
    # in clip coordinates 10.2 s is halfway through the 0.4-s clip 10: 10.5 of 11 clips; 3.5 s is 3.5 (t / c clips,
    # not stretched by 11 / 10.4 as when clips were spread over the duration)
    assert clips.to_grid([10.2, 10.4, 3.5]).tolist() == pytest.approx([10.5 / 11, 1.0, 3.5 / 11])
    assert clips.to_seconds([10.5 / 11, 1.0, 0.5]).tolist() == pytest.approx([10.2, 10.4, 5.5])
    assert clips.overlapping((2.5, 5.0)) == [2, 3, 4] and clips.overlapping((10.1, 10.4)) == [10]


def test_the_extractor_makes_the_conventions_clips() -> None:
    # 10.4 s at 4 fps: frames at 0, 0.25, ..., 10.25 s (42 frames); clip 10 holds those at 10.0 and 10.25 s
    frames = np.zeros((42, 64, 64, 3), np.uint8)
    frames[40:] = 255  # only the frames of clip 10 differ
    feats = clip_features(frames, fps=4.0, clip_seconds=1.0)
    assert len(feats) == 11 and not np.array_equal(feats[10], feats[9]) and np.array_equal(feats[9], feats[0])


def test_last_clip_ends_at_the_duration_and_unknown_clip_lengths_spread_evenly() -> None:
    short = Clips.of(10, 10.16, 1.0)  # a rendered video whose last 0.16 s made no clip: clip 9 reaches 10.16 s
    assert short.window(9) == (9.0, 10.16) and short.at(10.1) == 9
    assert short.to_grid([10.16, 9.58]).tolist() == pytest.approx([1.0, (9 + 0.58 / 1.16) / 10])
    assert Clips.of(4, 10.0, None).seconds == 2.5  # public features: clips spread evenly
    assert Clips.of(12, 10.4, 1.0).seconds == pytest.approx(10.4 / 12)  # 12 clips cannot fit 10.4 s: even spread


def test_dataset_targets_follow_the_convention(tmp_path) -> None:
    from transformers import BertTokenizer

    from tvgkit.grounding.text import train_wordpiece

    record = Record("v", "q", "the red ball", 10.4, ((10.2, 10.4),))
    tok = BertTokenizer.from_pretrained(str(train_wordpiece(["the red ball", "[MASK]"], 40, tmp_path / "tok")))
    feats, template = np.zeros((11, 3), np.float32), ["{query} [MASK] [MASK]"]
    recorded = GroundingDataset([record], Store(v=feats), tok, template)[0].span
    assert recorded == pytest.approx((10.5 / 11, 1.0))  # in clip 10 of 11, the start halfway through it
    spread = GroundingDataset([record], {"v": feats}, tok, template)[0].span
    assert spread == pytest.approx((10.2 / 10.4, 1.0))  # no clip length recorded: clips spread over 10.4 s


# --- the export ---


def test_relevant_clips_and_saliency_by_hand() -> None:
    record = Record("v", "q", "x", 10.4, ((2.5, 5.0), (9.6, 10.4)))
    ids, scores = clip_annotations(record, 11, 1.0)
    # clip 2 half covered -> floor(4 * 0.5 + 0.5) = 2; clips 3, 4 whole -> 4; clip 9: 0.4 -> 2; clip 10 [10, 10.4]: 4
    assert ids == [2, 3, 4, 9, 10]
    assert scores == [[2] * 3, [4] * 3, [4] * 3, [2] * 3, [4] * 3]
    assert clip_annotations(Record("v", "q", "x", 10.0, ((0.0, 0.05),)), 5, 2.0) == ([0], [[1, 1, 1]])  # at least 1


def test_export_round_trips_through_the_kits_readers(tmp_path) -> None:
    rng = np.random.default_rng(0)
    records = {
        "train": [Record("a", "1", "the red ball", 10.4, ((2.5, 5.0),)), Record("b", "2", "a box", 6.0, ((1, 6),))],
        "test": [Record("a", "3", "the blue disc", 10.4, ((0.0, 3.25), (7.0, 9.0)))],
    }
    features = Store(a=rng.normal(size=(11, 4)).astype(np.float32), b=rng.normal(size=(6, 4)).astype(np.float32))
    written = export_moment_detr(records, features, tmp_path / "out")
    for split, expected in records.items():
        back, report = read_jsonl(written[split])
        assert back == expected and report.n_dropped == 0
    with open_features(written["features"]) as store:
        assert store.layout == "npz" and sorted(store.vids) == ["a", "b"]
        assert all(np.array_equal(store[vid], features[vid]) for vid in features)
    line = json.loads(written["test"].read_text().splitlines()[0])
    assert line["relevant_clip_ids"] == [0, 1, 2, 3, 7, 8] and line["saliency_scores"][3] == [1, 1, 1]


# --- through the command line ---


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("field")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        assert main(["train", *SETS, "--set", f"runs_dir={root / 'runs'}", "--set", "name=a", "--quiet"]) == 0
        yield root


def _synth(sets: list[str]) -> SynthConfig:
    from tvgkit import config

    return config.load(SynthConfig, None, [s.removeprefix("data.synth.") for s in sets if s.startswith("data.synth.")])


def test_train_and_synth_say_where_the_data_is(run, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TVGKIT_CACHE", str(run / "cache"))
    root = dataset_root(_synth(TINY))
    assert main(["train", *SETS, "--set", "train.epochs=1", "--set", f"runs_dir={run / 'runs'}", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"data: synthetic set in {root} (rendered; features.hdf5, <split>.jsonl)"
    )
    sets = [a for s in TINY if s.startswith("data.synth.") for a in ("--set", s.removeprefix("data.synth."))]
    assert main(["synth", *sets, "--quiet"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"synthetic dataset: {root} (a folder named by the hash of its config)"
    assert (root / "features.hdf5").is_file()


def test_eval_writes_the_submission_format(run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TVGKIT_CACHE", str(run / "cache"))
    out = tmp_path / "preds.jsonl"
    capsys.readouterr()
    assert main(["eval", str(run / "runs" / "a"), "--predictions", str(out), "--top", "3", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    test = read_jsonl(dataset_root(_synth(TINY)) / "test.jsonl")[0]
    assert [p["qid"] for p in lines] == [r.qid for r in test]
    assert all(set(p) == {"qid", "query", "vid", "pred_relevant_windows"} for p in lines)
    assert all(len(p["pred_relevant_windows"]) == 3 for p in lines)
    for p, r in zip(lines, test, strict=True):
        scores = [w[2] for w in p["pred_relevant_windows"]]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= s <= e <= r.duration and e - s > 0 for s, e, _ in p["pred_relevant_windows"])
    # the file's top-1 spans are what R1 and mIoU scored; metrics.json holds the new metrics too
    top1 = evaluate_ranked([p["pred_relevant_windows"][:1] for p in lines], [list(r.windows) for r in test])
    assert {k: metrics[k] for k in ("R1@0.5", "mIoU")} == pytest.approx({k: top1[k] for k in ("R1@0.5", "mIoU")})
    saved = json.loads((run / "runs" / "a" / "metrics.json").read_text())["test"]
    assert {"R5@0.5", "mAP@0.5", "mAP@0.75", "mAP@avg"} <= set(saved)
    assert saved["mAP@avg"] == pytest.approx(metrics["mAP@avg"])


def test_eval_refuses_to_overwrite_an_input(run, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TVGKIT_CACHE", str(run / "cache"))
    test_jsonl = dataset_root(_synth(TINY)) / "test.jsonl"
    before = test_jsonl.read_text()
    for target in (run / "runs" / "a" / "config.yaml", test_jsonl):
        assert main(["eval", str(run / "runs" / "a"), "--predictions", str(target)]) == 2
        assert "is one of the command's inputs" in capsys.readouterr().err
    assert test_jsonl.read_text() == before
    assert main(["eval", str(run / "runs" / "a"), "--predictions", str(run / "p.jsonl"), "--top", "0"]) == 2
    assert capsys.readouterr().err.strip() == "tvgkit eval: error: --top must be at least 1, got 0"


def test_predict_json_uses_the_same_window_format(run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TVGKIT_CACHE", str(run / "cache"))
    video = tmp_path / "demo.mp4"
    sets = [a for s in TINY if s.startswith("data.synth.") for a in ("--set", s.removeprefix("data.synth."))]
    assert main(["synth", *sets, "--video", str(video), "--quiet"]) == 0
    capsys.readouterr()
    args = ["predict", str(run / "runs" / "a"), "--video", str(video), "--query", "the red box grows", "--top", "4"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["vid"] == "demo" and result["query"] == "the red box grows" and result["backbone"] == "blobs"
    windows = result["pred_relevant_windows"]
    assert len(windows) == 4 and [w[2] for w in windows] == sorted((w[2] for w in windows), reverse=True)
    assert all(0 <= s < e <= result["duration"] for s, e, _ in windows)


def test_export_command_round_trips_the_synthetic_set(run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TVGKIT_CACHE", str(run / "cache"))
    data_sets = [a for s in TINY if s.startswith("data.") for a in ("--set", s)]
    assert main(["export", *data_sets, "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("train on it: tvgkit train --set data.dataset=files")
    assert lines[-1].endswith("--set data.clip_seconds=1.0")
    source = build(_synth(TINY), progress=False)
    with open_features(source.features) as original, open_features(tmp_path / "out" / "features") as exported:
        assert sorted(exported.vids) == sorted(original.vids)
        assert all(np.array_equal(exported[vid], original[vid]) for vid in original.vids)
    for split in ("train", "val", "test"):
        assert read_jsonl(tmp_path / "out" / f"{split}.jsonl")[0] == read_jsonl(source.jsonl(split))[0]
    # an export into the folder of its own annotation files is refused
    files = ["--set", "data.dataset=files", "--set", f"data.features={tmp_path / 'out' / 'features'}"]
    files += [a for s in ("train", "test") for a in ("--set", f"data.{s}={tmp_path / 'out' / f'{s}.jsonl'}")]
    assert main(["export", *files, "--out", str(tmp_path / "out")]) == 2
    assert "is one of the export's inputs" in capsys.readouterr().err
