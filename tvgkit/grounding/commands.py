"""Handlers of the grounding sub-commands (train, eval, synth, extract, predict, runs, synthetic baselines).

:mod:`tvgkit.cli` holds only the parsers and imports this module when one of these commands runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tvgkit.errors import InputError

QUICK_NOTE = "no config given: a quick run on the kit's synthetic videos (CPU-sized)"


def _json_line(obj: dict) -> None:
    print(json.dumps(obj, sort_keys=True))


def _fmt(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.1f}" for k, v in metrics.items())


def train(args: argparse.Namespace) -> int:
    """``tvgkit train``: one process, or each of ``torchrun``'s processes (only rank 0 prints)."""
    from tvgkit.grounding import distributed

    with distributed.process_group() as world:
        return _train(args, world.main)


def _train(args: argparse.Namespace, main: bool) -> int:
    from tvgkit import config
    from tvgkit.grounding.checkpoint import Interrupted
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.train import train

    if args.resume:
        if args.config or args.set:
            raise InputError("--resume continues a run with its own config.yaml: give no CONFIG and no --set")
        cfg = None
    else:
        if args.config is None and not args.set and main:
            print(QUICK_NOTE)
        cfg = config.load(RunConfig, args.config, args.set or [])
    try:
        result = train(cfg, progress=not args.quiet, resume=args.resume)
    except Interrupted as stop:
        if main:
            print(f"tvgkit train: {stop}", file=sys.stderr)
        return 130
    if not main:
        return 0
    print(f"run folder: {result.run_dir}")
    m = result.metrics
    print(f"trained {m['steps']} steps in {result.train_seconds:.0f} s ({result.samples_per_second} samples/s)")
    print("best on validation:", _fmt({k: v for k, v in m["val_best"].items() if k.startswith(("R1", "mI"))}))
    print("test:", _fmt(m["test"]))
    return 0


def baselines(args: argparse.Namespace) -> int:
    """``tvgkit baselines``: on ``synthetic`` the video-blind priors plus the query-blind trained model."""
    from tvgkit.grounding import baselines as blind

    if args.dataset != "synthetic":
        return blind.main(args)
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.splits import load_splits

    if args.split != "test":
        raise InputError("on the synthetic set the baselines are scored on the test split")
    cfg = RunConfig(seed=args.seed, name="baselines")
    if not args.no_model:  # the cost, before it is paid
        print(
            "tvgkit baselines: also trains the query-blind model (the quick default with emptied queries, about as "
            f"long as tvgkit train: minutes on a CPU) into {Path(cfg.runs_dir) / cfg.name}-query-blind/; "
            "--no-model skips it",
            flush=True,
        )
    splits = load_splits(cfg.data, progress=False)
    if args.no_model:
        results = blind.run_blind_baselines(splits.records["train"], splits.records["test"], seed=args.seed)
        print("synthetic test; the video-blind priors only (--no-model: no query-blind model)")
    else:
        results = blind.blind_baselines(cfg, splits=splits, progress=False)
        print(f"synthetic test; query-blind model = the quick default trained with emptied queries (seed {args.seed})")
    results["best_span_per_metric"] = blind.per_metric_baseline(splits.records["train"], splits.records["test"])
    print(blind.format_table(results))
    if args.json:
        _json_line({name: {k: round(v, 4) for k, v in m.items()} for name, m in results.items()})
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from tvgkit.grounding.evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, args.split)
    if args.json:
        _json_line({"run": str(args.run_dir), "split": args.split, **metrics})
    else:
        print(f"{args.run_dir} [{args.split}]: {_fmt(metrics)}")
    return 0


def synth(args: argparse.Namespace) -> int:
    from tvgkit import config
    from tvgkit.data.synthetic import SynthConfig, build

    cfg = config.load(SynthConfig, None, args.set or [])
    data = build(cfg, cache_dir=args.cache_dir, progress=not args.quiet)
    print(f"synthetic dataset: {data.root}")
    for split in ("train", "val", "test"):
        print(f"  {split}: {data.jsonl(split)}  |  {data.charades_txt(split)}")
    print(f"  durations: {data.durations}\n  features: {data.features}")
    if args.video:
        from tvgkit.data.extract import write_video
        from tvgkit.data.synthetic import generate_split

        spec, frames, records = next(generate_split(cfg, "test", 1))
        path = write_video(frames, args.video, cfg.fps)
        print(f"wrote {path} ({spec.duration:.1f} s); its queries:")
        for r in records:
            print(f"  {r.window[0]:6.2f} {r.window[1]:6.2f}  {r.query}")
    return 0


def extract(args: argparse.Namespace) -> int:
    """``tvgkit extract``: one HDF5 ``{file stem: [clips, dim]}`` (and the durations, for Charades-STA text
    annotations), written only once every video has been read.

    The file's attributes record the backbone, fps, clip length and durations, so that training and ``predict`` can
    refuse features of another backbone. The progress bar counts frames for one video and videos for several.
    """
    from tqdm.auto import tqdm

    from tvgkit.data.backbones import BLOBS, FRAMES_PER_CLIP, IMAGE_SIZE, check_backbone
    from tvgkit.data.extract import extract_video
    from tvgkit.data.features import write_hdf5

    check_backbone(args.backbone)
    stems: dict[str, str] = {}
    for video in args.videos:
        if Path(video).stem in stems:
            raise InputError(f"{video} and {stems[Path(video).stem]} would both be video {Path(video).stem!r}")
        stems[Path(video).stem] = video
    features, durations = {}, {}
    several = len(stems) > 1
    bar = tqdm(stems.items(), desc="extract", unit="video", disable=args.quiet or not several)
    for vid, video in bar:
        feats, duration = extract_video(
            video, args.fps, args.clip_seconds, progress=not (args.quiet or several), backbone=args.backbone
        )
        features[vid], durations[vid] = feats, {"duration": round(duration, 3)}
        bar.write(f"{video}: {duration:.1f} s -> {feats.shape[0]} clips x {feats.shape[1]} features ({args.backbone})")
    attrs = {"backbone": args.backbone, "fps": args.fps, "clip_seconds": args.clip_seconds}
    if args.backbone != BLOBS:
        attrs |= {"image_size": IMAGE_SIZE, "frames_per_clip": FRAMES_PER_CLIP}
    attrs["durations"] = json.dumps({vid: d["duration"] for vid, d in durations.items()})
    print(f"wrote {write_hdf5(features, args.out, attrs=attrs)}")
    if args.durations:
        path = Path(args.durations)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(durations, indent=1))
        print(f"wrote {path}")
    return 0


def predict(args: argparse.Namespace) -> int:
    """``tvgkit predict``: the ranked spans, under a line naming the checkpoint and backbone; query words the run
    never saw are listed on stderr."""
    import warnings

    from tvgkit.grounding.inference import QueryCutWarning, UnseenWordsWarning, predict_video

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnseenWordsWarning)
        warnings.simplefilter("always", QueryCutWarning)
        result = predict_video(
            args.run_dir, args.video, args.query, args.top, args.fps, args.clip_seconds, vid=args.vid
        )
    sys.stdout.flush()  # warnings go out before the results, also when both streams are redirected to one file
    for warning in caught:
        if issubclass(warning.category, (UnseenWordsWarning, QueryCutWarning)):
            print(f"tvgkit predict: warning: {warning.message}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    print(f'{result.video} ({result.duration:.1f} s), query "{result.query}":')
    print(f"checkpoint {result.checkpoint}, backbone {result.backbone or 'unknown (not recorded by the run)'}")
    print(f"{'rank':>4} {'start':>7} {'end':>7} {'score':>7}")
    for rank, (start, end, score) in enumerate(result.spans, 1):
        print(f"{rank:>4} {start:7.2f} {end:7.2f} {score:7.3f}")
    return 0


def runs_table(runs_dir: str | Path = "runs"):
    """A pandas table of finished runs: the config keys that differ between them, and their test metrics.

    A key a run's config ignores (the random BERT's sizes in a run with a pretrained encoder) is left out of that
    run's values: it shows as ``-``, and a column appears only where the runs that use the key differ.
    """
    import pandas as pd

    from tvgkit import config
    from tvgkit.grounding.text import ignored_keys

    rows, flats = [], []
    for run in sorted(Path(runs_dir).glob("*/metrics.json")):
        cfg = config.read_yaml(run.parent / "config.yaml")
        cfg.pop("name", None)
        metrics = json.loads(run.read_text())
        ignored = {f"text.{k}" for k in ignored_keys(cfg.get("text") or {})}
        flats.append({k: v for k, v in config.flatten(cfg).items() if k not in ignored})
        test = metrics["test"]
        rows.append(
            {
                "run": run.parent.name,
                "R1@0.5": round(test["R1@0.5"], 1),
                "R1@0.7": round(test["R1@0.7"], 1),
                "mIoU": round(test["mIoU"], 1),
                "val mIoU": round(metrics["val_best"]["mIoU"], 1),
                "train s": metrics["train_seconds"],
            }
        )
    keys = [k for k in config.differing_keys(flats) if len({repr(f[k]) for f in flats if k in f}) > 1]
    for row, flat in zip(rows, flats, strict=True):
        row.update({k: flat.get(k, "-") for k in keys})
    columns = ["run", *keys, "R1@0.5", "R1@0.7", "mIoU", "val mIoU", "train s"]
    return pd.DataFrame(rows, columns=columns)


def runs(args: argparse.Namespace) -> int:
    table = runs_table(args.runs_dir)
    if table.empty:
        print(f"no finished runs under {args.runs_dir}")
        return 0
    print(table.to_string(index=False))
    if args.json:
        _json_line({"runs": table.to_dict(orient="records")})
    return 0
