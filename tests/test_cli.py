"""The grounding sub-commands through ``tvgkit.cli.main``: synth, extract, train, eval, runs, predict."""

from __future__ import annotations

import json

import h5py
import pytest

from tvgkit.cli import main
from tvgkit.data.extract import FEATURE_DIM
from tvgkit.grounding.presets import PRESETS

TINY = [*PRESETS["tiny"], "train.device=cpu"]  # CPU-exact: eval must reproduce metrics.json


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        sets = [a for s in TINY for a in ("--set", s)]
        assert main(["train", *sets, "--set", f"runs_dir={root / 'runs'}", "--set", "name=a", "--quiet"]) == 0
        extra = ["--set", f"runs_dir={root / 'runs'}", "--set", "name=b", "--set", "model.prompt_ensemble=false"]
        assert main(["train", *sets, *extra, "--quiet"]) == 0
        yield root


def test_eval_json_last_line_matches_metrics(workspace, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", str(workspace / "runs" / "a"), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((workspace / "runs" / "a" / "metrics.json").read_text())["test"]
    assert last["split"] == "test" and last["mIoU"] == pytest.approx(saved["mIoU"])


def test_runs_table_shows_only_differing_keys(workspace, capsys) -> None:
    capsys.readouterr()
    assert main(["runs", str(workspace / "runs"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    assert [r["run"] for r in rows] == ["a", "b"]
    assert [r["model.prompt_ensemble"] for r in rows] == [True, False]
    assert not any(k.startswith("train.") or k.startswith("data.") for k in rows[0])


def test_synth_video_extract_and_predict(workspace, tmp_path, capsys) -> None:
    video = tmp_path / "demo.mp4"
    sets = [a for s in TINY if s.startswith("data.synth.") for a in ("--set", s.removeprefix("data.synth."))]
    assert main(["synth", *sets, "--video", str(video), "--cache-dir", str(workspace / "cache"), "--quiet"]) == 0
    out = tmp_path / "f.hdf5"
    assert main(["extract", str(video), "--out", str(out)]) == 0
    with h5py.File(out) as f:
        assert list(f) == ["demo"] and f["demo"].shape[1] == FEATURE_DIM
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(workspace / "runs" / "a"),
                "--video",
                str(video),
                "--query",
                "the red box grows",
                "--top",
                "3",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1] == f"checkpoint {workspace / 'runs' / 'a' / 'best.pt'}, backbone blobs"
    rows = [line.split() for line in lines[3:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(float(r[1]) <= float(r[2]) for r in rows)


def test_user_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert main(["train", "--set", "train.no_such_key=1"]) == 2


class _Chosen(Exception):
    """Raised by the stand-in trainer below with the config ``tvgkit train`` would have trained."""


@pytest.mark.parametrize(
    ("cuda", "args", "preset_name", "first_line"),
    [
        (True, [], "gpu", "no config given and CUDA present: preset 'gpu'"),
        (False, [], "quick", "no config given: a quick run"),
        (False, ["--preset", "gpu"], "gpu", None),
        (True, ["--preset", "quick"], "quick", None),
        (True, ["--set", "train.epochs=1"], "quick", None),  # a --set starts from the quick default everywhere
    ],
)
def test_train_picks_the_preset_of_the_device(monkeypatch, capsys, cuda, args, preset_name, first_line) -> None:
    from tvgkit.grounding.presets import preset

    def chosen(cfg, **kwargs):
        raise _Chosen(cfg)

    monkeypatch.setattr("tvgkit.runtime.cuda_visible", lambda: cuda)
    monkeypatch.setattr("tvgkit.grounding.train.train", chosen)
    with pytest.raises(_Chosen) as info:
        main(["train", *args, "--quiet"])
    sets = [s for flag, s in zip(args, args[1:], strict=False) if flag == "--set"]
    assert info.value.args[0] == preset(preset_name, sets)
    notes = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("data: ")]
    assert (len(notes) == 1 and notes[0].startswith(first_line)) if first_line else notes == []


def test_train_refuses_a_config_with_a_preset_and_unknown_presets(tmp_path, capsys) -> None:
    config = tmp_path / "my.yaml"
    config.write_text("seed: 1\n")
    assert main(["train", str(config), "--preset", "gpu"]) == 2
    assert main(["train", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "config file or --preset, not both" in err and "'huge': not a preset; choose from full, gpu," in err
