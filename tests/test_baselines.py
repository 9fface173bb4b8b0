"""Video-blind baselines on hand-checkable records, and the ``tvgkit baselines`` command end to end."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tvgkit.cli import main
from tvgkit.data.records import Record
from tvgkit.grounding.baselines import (
    best_fixed_span,
    best_spans_per_metric,
    kde_prior,
    per_metric_baseline,
    run_blind_baselines,
    whole_video,
)

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def _records(spans, duration=10.0):
    return [Record(f"v{i}", str(i), "q", duration, ((s * duration, e * duration),)) for i, (s, e) in enumerate(spans)]


def test_whole_video_scores_the_moment_share():
    test = _records([(0.0, 0.5), (0.25, 0.5), (0.5, 0.6)], duration=8.0)  # whole-video IoUs: 0.5, 0.25, 0.1
    assert whole_video(test) == [(0.0, 8.0)] * 3
    out = run_blind_baselines(test, test)["whole_video"]
    assert (out["R1@0.1"], out["R1@0.5"], out["R1@0.7"]) == (100.0, pytest.approx(100 / 3), 0.0)
    assert out["mIoU"] == pytest.approx(100 * 0.85 / 3)


def test_kde_prior_refuses_degenerate_training_moments():
    with pytest.raises(ValueError, match="lie on a line"):
        kde_prior(_records([(0.0, 0.5), (0.25, 0.5)]), 10)


def test_best_fixed_span_recovers_the_dominant_moment():
    train = _records([(0.2, 0.6)] * 5 + [(0.7, 0.9)])
    assert best_fixed_span(train) == pytest.approx((0.2, 0.6))
    assert best_fixed_span(train, grid_step=0.5) == pytest.approx((0.0, 0.5))  # IoUs 0.8 x5, 0 -> best on a coarse grid
    with pytest.raises(ValueError, match="grid_step must divide 1"):
        best_fixed_span(train, grid_step=0.3)


def test_each_metric_gets_its_own_best_fixed_span():
    # Five moments (0.2, 0.6) and one (0.7, 0.9). mIoU: the dominant moment itself. R1@0.1: the first grid span
    # that overlaps both with IoU >= 0.1 is (0, 0.8) (IoUs 0.5 and 0.11; (0, 0.75) gives 0.06 on the short one).
    # R1@0.7: no span starting at 0 reaches 0.7 on the dominant moment (at most 0.4 / 0.6), (0.05, 0.6) does (0.73).
    train = _records([(0.2, 0.6)] * 5 + [(0.7, 0.9)])
    spans = best_spans_per_metric(train)
    assert spans["mIoU"] == pytest.approx((0.2, 0.6)) and spans["R1@0.1"] == pytest.approx((0.0, 0.8))
    assert spans["R1@0.7"] == pytest.approx((0.05, 0.6))
    assert best_fixed_span(train, metric="R1@0.7") == spans["R1@0.7"] and best_fixed_span(train) == spans["mIoU"]
    with pytest.raises(ValueError, match="unknown metric"):
        best_fixed_span(train, metric="R5@0.5")


def test_per_metric_row_is_at_least_the_mean_iou_span_on_its_training_set():
    rng = np.random.default_rng(1)
    starts = rng.uniform(0.0, 0.6, 300)
    train = _records(np.stack([starts, np.minimum(1.0, starts + rng.uniform(0.05, 0.5, 300))], axis=1))
    out = run_blind_baselines(train, train, per_metric=True)
    assert out["best_span_per_metric"] == per_metric_baseline(train, train)
    for metric, value in out["best_span_per_metric"].items():
        assert value >= out["best_fixed_span"][metric] - 1e-9  # chosen on this very set: never below


def test_kde_prior_is_deterministic_valid_and_follows_the_training_moments():
    rng = np.random.default_rng(0)
    starts = rng.uniform(0.0, 0.2, 200)
    train = _records(np.stack([starts, starts + rng.uniform(0.1, 0.3, 200)], axis=1))
    spans = kde_prior(train, 4000, seed=3)
    assert spans.shape == (4000, 2)
    assert np.all((0 <= spans[:, 0]) & (spans[:, 0] < spans[:, 1]) & (spans[:, 1] <= 1))
    assert np.array_equal(spans, kde_prior(train, 4000, seed=3))
    assert not np.array_equal(spans, kde_prior(train, 4000, seed=4))
    # the sample means follow the training means (0.1 and 0.3) within a few bandwidths' noise
    assert spans.mean(axis=0) == pytest.approx([0.1, 0.3], abs=0.02)
    seconds = kde_prior(train, _records([(0, 1)] * 3, duration=20.0), seed=3)
    assert len(seconds) == 3 and all(0 <= s < e <= 20.0 for s, e in seconds)


def _charades_folder(tmp_path, test_txt=FIXTURES / "charades_sta_small.txt"):
    folder = tmp_path / "charades_sta"
    folder.mkdir()
    shutil.copy(FIXTURES / "charades_sta_small.txt", folder / "charades_sta_train.txt")
    shutil.copy(test_txt, folder / "charades_sta_test.txt")
    for split in ("train", "test"):
        shutil.copy(FIXTURES / "charades_durations_small.csv", folder / f"Charades_v1_{split}.csv")
    return tmp_path


def test_cli_json_last_line(tmp_path, capsys):
    data = str(_charades_folder(tmp_path))
    assert main(["baselines", "--dataset", "charades-sta", "--data-dir", data, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    results = json.loads(lines[-1])
    assert sorted(results) == ["best_fixed_span", "best_span_per_metric", "kde_prior", "whole_video"]
    # kept test moments (0, 6.9)/30, (20.8, 30)/30, (12.5, 15)/20.5: whole-video IoUs 0.23, 0.3067, 0.1220
    whole = results["whole_video"]
    assert whole["R1@0.1"] == 100.0 and whole["R1@0.3"] == pytest.approx(100 / 3, abs=1e-3) and whole["R1@0.5"] == 0
    assert whole["mIoU"] == pytest.approx(100 * (6.9 / 30 + 9.2 / 30 + 2.5 / 20.5) / 3, abs=1e-3)
    assert any("read 5, kept 3, dropped 2" in line for line in lines)


def test_cli_bad_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("AAAAA 0.0 6.9##fine.\nAAAAA 1.0 two##broken.\n")
    data = _charades_folder(tmp_path, test_txt=bad)
    cmd = [sys.executable, "-m", "tvgkit", "baselines", "--dataset", "charades-sta", "--data-dir", str(data)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "charades_sta_test.txt, line 2: end time 'two' is not a number" in done.stderr
