"""Annotation readers and writers: fixtures with every clean-up case, malformed input, and the real files."""

from pathlib import Path

import numpy as np
import pytest

from tvgkit.data import (
    FormatError,
    load_dataset,
    read_activitynet,
    read_charades_sta,
    read_jsonl,
    read_tacos,
    write_charades_sta,
    write_jsonl,
)
from tvgkit.data.locate import data_root

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = data_root()


def _content(records):
    return [(r.vid, r.query, r.duration, r.windows) for r in records]


@pytest.mark.parametrize("durations", ["charades_durations_small.csv", "charades_durations_small.json"])
def test_charades_sta_clean_up_is_counted(durations):
    records, report = read_charades_sta(FIXTURES / "charades_sta_small.txt", FIXTURES / durations)
    # line 2 ends after the 30 s video (clipped), line 3 has start > end, line 5 starts after the 25 s video.
    assert (report.n_read, report.n_kept, report.n_dropped, report.n_clipped_end) == (5, 3, 2, 1)
    assert [r.qid for r in records] == ["AAAAA_1", "AAAAA_2", "BBBBB_4"]
    assert records[1].windows == ((20.8, 30.0),)
    assert records[0].query == "a person is putting a book on a shelf."
    assert records[2].duration == 20.5
    assert "read 5, kept 3, dropped 2" in str(report)


def test_activitynet_strips_sentences_and_clips_both_ends():
    records, report = read_activitynet(FIXTURES / "activitynet_small.json")
    assert (report.n_read, report.n_kept, report.n_dropped) == (4, 3, 1)
    assert (report.n_clipped_end, report.n_clipped_start) == (1, 1)
    assert records[0].query == "A young woman is seen standing in a room."
    assert records[1].windows == ((17.37, 82.73),)
    assert records[2].windows == ((0.0, 5.0),) and records[2].qid == "v_two_1"


def test_tacos_frames_become_seconds():
    records, report = read_tacos(FIXTURES / "tacos_small.json")
    assert [r.vid for r in records] == ["s17-d69", "s17-d69"]
    assert records[0].duration == pytest.approx(12438 / 29.4)
    assert records[0].windows[0] == pytest.approx((224 / 29.4, 358 / 29.4))
    assert records[1].windows[0][1] == records[1].duration  # frame 12600 > 12438 frames: clipped
    assert report.n_clipped_end == 1


def test_jsonl_keeps_several_windows_and_round_trips(tmp_path):
    records, report = read_jsonl(FIXTURES / "moments_small.jsonl")
    assert [r.qid for r in records] == ["7", "q8"]
    assert records[1].windows == ((1.0, 3.0), (10.0, 20.0))
    assert report.n_clipped_end == 1
    again, again_report = read_jsonl(write_jsonl(records, tmp_path / "out.jsonl"))
    assert again == records
    assert again_report.n_clipped_end == 0


def test_charades_sta_writer_round_trips(tmp_path):
    records, _ = read_tacos(FIXTURES / "tacos_small.json")
    txt = write_charades_sta(records, tmp_path / "sta.txt", tmp_path / "durations.json")
    again, report = read_charades_sta(txt, tmp_path / "durations.json")
    assert _content(again) == _content(records)  # floats survive exactly (shortest repr)
    assert report.n_clipped_end == 0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("AAAAA 0.0 6.9 a person sits.", "expected 'VID start end##sentence'"),
        ("AAAAA zero 6.9##a person sits.", "start time 'zero' is not a number"),
        ("AAAAA 0.0 nan##a person sits.", "end time 'nan' is not finite"),
        ("AAAAA -3.0 -1.0##a person sits.", "negative end time"),
        ("ZZZZZ 0.0 6.9##a person sits.", "video 'ZZZZZ' has no duration"),
        ("AAAAA 0.0 6.9##   ", "empty query"),
    ],
)
def test_charades_sta_malformed_line_names_file_and_line(tmp_path, line, reason):
    txt = tmp_path / "bad.txt"
    txt.write_text("AAAAA 0.0 6.9##fine.\n" + line + "\n")
    with pytest.raises(FormatError, match=reason) as err:
        read_charades_sta(txt, FIXTURES / "charades_durations_small.csv")
    assert str(err.value).startswith(f"{txt}, line 2: ")


def test_structured_formats_name_the_key(tmp_path):
    bad = tmp_path / "anet.json"
    bad.write_text('{"v_x": {"duration": 0, "timestamps": [[0, 1]], "sentences": ["a"]}}')
    with pytest.raises(FormatError, match=r"anet.json, key 'v_x': duration 0.0 of video 'v_x' is not positive"):
        read_activitynet(bad)
    bad.write_text('{"v_x": {"duration": 5, "timestamps": [[0, 1]], "sentences": []}}')
    with pytest.raises(FormatError, match="1 timestamps but 0 sentences"):
        read_activitynet(bad)
    bad.write_text('{"v_x": {"timestamps": [[0, 1]], "sentences": ["a"], "fps": 25}}')
    with pytest.raises(FormatError, match="needs 'timestamps', 'sentences', 'fps' and 'num_frames'"):
        read_tacos(bad)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"qid": 1, "query": "a", "duration": 5, "vid": "x", "relevant_windows": [[0, 1]]}\n{"qid": 2,\n')
    with pytest.raises(FormatError, match=r"m.jsonl, line 2: invalid JSON"):
        read_jsonl(jsonl)
    with pytest.raises(FormatError, match="durations must be a Charades_v1"):
        read_charades_sta(FIXTURES / "charades_sta_small.txt", FIXTURES / "moments_small.jsonl")


def test_load_dataset_explains_missing_splits(tmp_path):
    with pytest.raises(ValueError, match="Charades-STA has no validation split"):
        load_dataset("charades-sta", "val", tmp_path)
    with pytest.raises(FileNotFoundError, match="no tacos test annotations"):
        load_dataset("tacos", "test", tmp_path)


# --- the real files (../shared/data or $TVGKIT_DATA) --------------------------------------------------------------

needs_data = pytest.mark.skipif(ROOT is None, reason="real annotations absent: set $TVGKIT_DATA to run these tests")


@needs_data
@pytest.mark.parametrize(
    ("name", "split", "counts"),
    [
        # (read, kept, dropped, clipped end): checked by hand against the files' READMEs and lighthouse's JSONL.
        ("charades-sta", "train", (12408, 12404, 4, 1802)),
        ("charades-sta", "test", (3720, 3720, 0, 562)),
        ("activitynet", "train", (37421, 37417, 4, 261)),
        ("activitynet", "val", (17505, 17505, 0, 134)),
        ("activitynet", "test", (17031, 17031, 0, 111)),
        ("tacos", "train", (9790, 9790, 0, 43)),
        ("tacos", "val", (4436, 4436, 0, 0)),
        ("tacos", "test", (4001, 4001, 0, 5)),
    ],
)
def test_real_files_counts(name, split, counts):
    records, report = load_dataset(name, split, ROOT)
    assert (report.n_read, report.n_kept, report.n_dropped, report.n_clipped_end) == counts
    assert report.n_clipped_start == 0
    assert len(records) == report.n_kept
    assert all(0 <= s < e <= r.duration for r in records for s, e in r.windows)


@needs_data
def test_charades_sta_dropped_lines_are_named():
    _, report = load_dataset("charades-sta", "train", ROOT)
    assert [example.split(":")[0] for example in report.dropped_examples] == ["8252", "8440", "9623", "9624"]
    assert report.dropped_examples[0] == "8252: LEOL6 windows [(8.0, 7.0)] (duration 6.25)"


@needs_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_charades_sta_clean_up_matches_lighthouse(split):
    """Our clean-up of the TALL text reproduces lighthouse's released JSONL exactly (clipped ends, 4 lines dropped)."""
    ours, _ = load_dataset("charades-sta", split, ROOT)
    theirs, report = read_jsonl(ROOT / "charades_sta" / f"charades_{split}_release.jsonl")
    assert report.n_clipped_end == 0 and report.n_dropped == 0
    assert _content(ours) == _content(theirs)


@needs_data
def test_charades_durations_csv_and_json_agree():
    folder = ROOT / "charades_sta"
    from_csv, _ = read_charades_sta(folder / "charades_sta_test.txt", folder / "Charades_v1_test.csv")
    from_json, _ = read_charades_sta(folder / "charades_sta_test.txt", folder / "charades.json")
    assert from_csv == from_json


@needs_data
def test_tacos_frames_match_lighthouse_seconds():
    ours, _ = load_dataset("tacos", "test", ROOT)
    theirs, _ = read_jsonl(ROOT / "tacos" / "tacos_test_release.jsonl")
    assert [(r.vid, r.qid, r.query) for r in ours] == [(r.vid, r.qid, r.query) for r in theirs]
    np.testing.assert_allclose([r.window for r in ours], [r.window for r in theirs], rtol=1e-12)
