"""Blob features vs pretrained EfficientNet-Lite0 features for grounding on the synthetic task.

The same rendered videos, queries and grounding model (the ``tvgkit train`` quick default: 3-layer text encoder,
span head, 5 epochs, one thread) are trained once on each backbone's features (``data.synth.backbone``; the two
datasets are cached separately). Per backbone: the seconds the extractor takes per video (rendering excluded, timed
on ``--timing-videos`` test videos: rendered frames per second, and for the network the frames it actually ran on:
``data.synth.backbone_frames`` of the 4 frames of each 1-s clip, upsampled from 64 to ``backbone_size`` px), the
train seconds, and test R1@0.5, R1@0.7 and mIoU; the video-blind best fixed span per metric (chosen on train) is the
bar both must clear.

The default is reduced for a 2-core CPU (pretrained extraction of the quick default's 3,400 videos at the measured
17 network frames/s would take well over an hour there): 200 train / 40 val / 100 test videos. The saved results took
30 minutes under ``nice -n 19`` on a CPU shared with other jobs (load 7 to 10), so their seconds are upper bounds:

    PYTHONPATH=. nice -n 19 python benchmarks/backbones.py
    PYTHONPATH=. python benchmarks/backbones.py --set data.synth.n_train=3000 --set data.synth.n_test=300  # GPU

A table, then one JSON object as the last line (also written to ``--out``, default
``benchmarks/results/backbones.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "backbones.json"
SIZE = ["data.synth.n_train=200", "data.synth.n_val=40", "data.synth.n_test=100", "train.threads=1"]
BACKBONES = ("blobs", "efficientnet-lite0")
METRICS = ("R1@0.5", "R1@0.7", "mIoU")


def extraction_speed(cfg, n_videos: int) -> dict[str, float]:
    """Rendered frames per second through the extractor (and network frames per second), rendering excluded."""
    from tvgkit.data.synthetic import make_video, synth_features

    synth_features(cfg, make_video(cfg, "test", 0)[1])  # load the network before timing
    frames, seconds = 0, 0.0
    for k in range(n_videos):
        video = make_video(cfg, "test", k)[1]
        tick = time.perf_counter()
        synth_features(cfg, video)
        seconds += time.perf_counter() - tick
        frames += len(video)
    per_clip = round(cfg.fps * cfg.clip_seconds)
    through_network = frames if cfg.backbone == "blobs" else frames * min(cfg.backbone_frames, per_clip) / per_clip
    return {"frames_per_s": frames / seconds, "network_frames_per_s": through_network / seconds}


def run(backbone: str, overrides: list[str], timing_videos: int, runs_dir: str) -> dict:
    """Build (or reuse) the dataset with ``backbone``, time its extractor, train and test one model on it."""
    from tvgkit import config
    from tvgkit.data.synthetic import build
    from tvgkit.grounding.baselines import per_metric_baseline
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.splits import load_splits
    from tvgkit.grounding.train import train

    cfg = config.load(RunConfig, None, [*SIZE, *overrides, f"data.synth.backbone={backbone}"])
    cfg.name, cfg.runs_dir = f"backbone-{backbone}", runs_dir
    tick = time.perf_counter()
    build(cfg.data.synth, progress=False)
    build_s = time.perf_counter() - tick
    speed = extraction_speed(cfg.data.synth, timing_videos)
    splits = load_splits(cfg.data, progress=False)
    result = train(cfg, progress=False, splits=splits)
    test = result.metrics["test"]
    prior = per_metric_baseline(splits.records["train"], splits.records["test"])
    return {
        "backbone": backbone,
        "feature_dim": splits.features.dim,
        "build_s": round(build_s, 1),
        "frames_per_s": round(speed["frames_per_s"], 1),
        "network_frames_per_s": round(speed["network_frames_per_s"], 1),
        "train_s": round(result.train_seconds, 1),
        **{k: round(test[k], 2) for k in METRICS},
        "blind_per_metric": {k: round(prior[k], 2) for k in METRICS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a RunConfig override")
    parser.add_argument("--timing-videos", type=int, default=10, help="test videos the extractor is timed on")
    parser.add_argument("--runs-dir", default="runs/benchmark-backbones")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    tick = time.perf_counter()
    rows = [run(b, args.set, args.timing_videos, args.runs_dir) for b in BACKBONES]
    header = f"{'backbone':<20}{'dim':>6}{'build s':>9}{'frames/s':>10}{'net fr/s':>10}{'train s':>9}"
    print(header + "".join(f"{k:>9}" for k in METRICS))
    for r in rows:
        print(
            f"{r['backbone']:<20}{r['feature_dim']:>6}{r['build_s']:>9.0f}{r['frames_per_s']:>10.1f}"
            f"{r['network_frames_per_s']:>10.1f}{r['train_s']:>9.0f}" + "".join(f"{r[k]:>9.2f}" for k in METRICS)
        )
    prior = rows[0]["blind_per_metric"]
    print(f"{'blind (per metric)':<64}" + "".join(f"{prior[k]:>9.2f}" for k in METRICS))
    result = {
        "command": "PYTHONPATH=. nice -n 19 python benchmarks/backbones.py " + " ".join(f"--set {s}" for s in args.set),
        "size": [*SIZE, *args.set],
        "torch_threads": 1,
        "total_s": round(time.perf_counter() - tick, 1),
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
