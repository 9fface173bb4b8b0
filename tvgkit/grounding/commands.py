"""Handlers of the grounding sub-commands (train, eval, synth, extract, predict, runs, synthetic baselines).

:mod:`tvgkit.cli` holds only the parsers and imports this module when one of these commands runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from tvgkit.errors import InputError

QUICK_NOTE = "no config given: a quick run on the kit's synthetic videos (CPU-sized; preset 'quick')"
GPU_NOTE = (
    "no config given and CUDA present: preset 'gpu' on the kit's synthetic videos (batch 256, lr 3e-3, 20 epochs, "
    "-> runs/gpu; --preset quick for the CPU-sized run)"
)


class SkippedRunWarning(UserWarning):
    """A run folder ``tvgkit runs`` leaves out of its table: its metrics.json or config.yaml cannot be read."""


@contextlib.contextmanager
def warning_lines(command: str, *categories: type[Warning]) -> Iterator[None]:
    """Show warnings of ``categories`` raised inside as ``tvgkit COMMAND: warning: ...`` lines on stderr, when they
    happen (a user reads one line, not Python's file-and-line header); other warnings are shown as before."""
    with warnings.catch_warnings():
        shown_before = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, categories):
                print(f"tvgkit {command}: warning: {message}", file=sys.stderr)
            else:
                shown_before(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        for category in categories:
            warnings.simplefilter("always", category)
        yield


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
    from tvgkit.grounding.presets import PRESETS, RunConfig
    from tvgkit.grounding.splits import SplitWarning
    from tvgkit.grounding.train import train
    from tvgkit.lessons.diagnostics import NonFiniteError
    from tvgkit.runtime import cuda_visible

    if args.resume:
        if args.config or args.set or args.preset:
            raise InputError("--resume continues a run with its own config.yaml: give no CONFIG, --preset or --set")
        cfg = None
    else:
        name = args.preset
        if args.config is None and not args.set and name is None:  # nothing asked: the device's default
            name = "gpu" if cuda_visible() else "quick"  # the test suite's simulated CUDA answers here too
            if main:
                print(GPU_NOTE if name == "gpu" else QUICK_NOTE)
        if name is not None and args.config is not None:
            raise InputError("give a config file or --preset, not both")
        if name is not None and name not in PRESETS:
            raise InputError(f"--preset {name!r}: not a preset; choose from {', '.join(sorted(PRESETS))}")
        cfg = config.load(RunConfig, args.config, [*PRESETS.get(name or "quick", []), *(args.set or [])])
        if main:
            print(_data_line(cfg.data))
    try:
        with warning_lines("train", SplitWarning):
            result = train(cfg, progress=not args.quiet, resume=args.resume)
    except Interrupted as stop:
        if main:
            print(f"tvgkit train: {stop}", file=sys.stderr)
        return 130
    except NonFiniteError as stop:  # the guard's stop: NaN/Inf from the data or the settings, not a kit bug
        # the run folder: the one resumed, or the one the trainer made (it sets cfg.name to that folder's name)
        run_dir = Path(args.resume) if args.resume else Path(cfg.runs_dir) / cfg.name
        raise InputError(f"{stop} Last good weights: {_last_good(run_dir)}") from None
    if not main:
        return 0
    print(f"run folder: {result.run_dir}")
    m = result.metrics
    print(f"trained {m['steps']} steps in {result.train_seconds:.0f} s ({result.samples_per_second} samples/s)")
    print("best on validation:", _fmt({k: v for k, v in m["val_best"].items() if k.startswith(("R1", "mI"))}))
    print("test:", _fmt(m["test"]))
    return 0


def _last_good(run_dir: Path) -> str:
    """Where the guard left finite weights: ``last_good.pt``, else the last epoch's ``last.pt``, else none yet."""
    for name in ("last_good.pt", "last.pt"):
        if (run_dir / name).is_file():
            return str(run_dir / name)
    return f"none written (nothing under {run_dir})"


def _data_line(data) -> str:
    """Where a run's data lives: the synthetic set's cache folder (named by its config's hash), or the files."""
    if data.dataset != "synthetic":
        files = {k: getattr(data, k) for k in ("train", "val", "test", "features", "durations") if getattr(data, k)}
        return "data: " + ", ".join(f"{k} {v}" for k, v in files.items())
    from tvgkit.data.synthetic import dataset_root

    root = dataset_root(data.synth)
    state = "rendered" if (root / "DONE").exists() else "rendered now, on first use"
    return f"data: synthetic set in {root} ({state}; features.hdf5, <split>.jsonl)"


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
    """``tvgkit eval``: the metrics of a run's best checkpoint; with ``--predictions`` also its ranked spans."""
    from tvgkit.grounding.evaluate import evaluate_records, rank_run, write_predictions
    from tvgkit.grounding.splits import SplitWarning
    from tvgkit.metrics import MAP_TOP

    if args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    if args.predictions:
        _refuse_input_as_output(Path(args.predictions), args.run_dir)
    with warning_lines("eval", SplitWarning):
        records, ranked = rank_run(args.run_dir, args.split, top=max(args.top, MAP_TOP))
    metrics = evaluate_records(ranked, records)
    if args.predictions:
        path = write_predictions(args.predictions, records, ranked, args.top)
        print(f"wrote {path} ({len(records)} queries, top {args.top} spans each)")
    if args.json:
        _json_line({"run": str(args.run_dir), "split": args.split, **metrics})
    else:
        print(f"{args.run_dir} [{args.split}]: {_fmt(metrics)}")
    return 0


def _refuse_input_as_output(out: Path, run_dir: str) -> None:
    """Refuse an output path that is a file the command reads (the run's files, its annotations, its features)."""
    from tvgkit import config
    from tvgkit.data.synthetic import SynthData, dataset_root
    from tvgkit.grounding.presets import RunConfig

    if out.is_dir():
        raise InputError(f"{out} is a folder: give a file name")
    run = Path(run_dir)
    inputs = [run / name for name in ("best.pt", "config.yaml", "metrics.json", "log.jsonl")]
    if (run / "config.yaml").is_file():
        data = config.load(RunConfig, run / "config.yaml").data
        if data.dataset == "synthetic":
            synth = SynthData(dataset_root(data.synth))
            inputs += [synth.jsonl(s) for s in ("train", "val", "test")] + [synth.features]
        else:
            inputs += [Path(p) for p in (data.train, data.val, data.test, data.features, data.durations) if p]
    for path in inputs:
        if out.resolve() == path.resolve():
            raise InputError(f"{out} is one of the command's inputs: write the output elsewhere")


def synth(args: argparse.Namespace) -> int:
    """``tvgkit synth``: says where the dataset lives (before rendering it, which can take minutes), then its files."""
    from tvgkit import config
    from tvgkit.data.synthetic import SynthConfig, build, dataset_root

    cfg = config.load(SynthConfig, None, args.set or [])
    print(f"synthetic dataset: {dataset_root(cfg, args.cache_dir)} (a folder named by the hash of its config)")
    data = build(cfg, cache_dir=args.cache_dir, progress=not args.quiet)
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
    _refuse_overwriting(args.videos, {"--out": args.out, "--durations": args.durations})
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


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: equal once resolved, or the same inode (a hard link, a bind mount)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist yet
        return False


def _refuse_overwriting(inputs: list[str], outputs: dict[str, str | None]) -> None:
    """An output that is an input (``tvgkit extract a.mp4 --out a.mp4`` once overwrote the video) or another output
    is refused before anything is read or written."""
    named = [(flag, Path(path)) for flag, path in outputs.items() if path]
    for i, (flag, out) in enumerate(named):
        if out.is_dir():
            raise InputError(f"{flag} {out} is a folder; give a file name in it")
        for video in inputs:
            if _same_file(out, Path(video)):
                raise InputError(f"{flag} {out} is the input video {video}: it would be overwritten; write elsewhere")
        for other_flag, other in named[i + 1 :]:
            if _same_file(out, other):
                raise InputError(f"{flag} and {other_flag} are the same file {out}; give two different paths")


def predict(args: argparse.Namespace) -> int:
    """``tvgkit predict``: the ranked spans, under a line naming the checkpoint and backbone; query words the run
    never saw are listed on stderr."""
    from tvgkit.grounding.inference import QueryCutWarning, UnseenWordsWarning, predict_video

    with warning_lines("predict", UnseenWordsWarning, QueryCutWarning):
        result = predict_video(
            args.run_dir, args.video, args.query, args.top, args.fps, args.clip_seconds, vid=args.vid
        )
    if args.json:
        _json_line(result.as_json())
        return 0
    print(f'{result.video} ({result.duration:.1f} s), query "{result.query}":')
    print(f"checkpoint {result.checkpoint}, backbone {result.backbone or 'unknown (not recorded by the run)'}")
    print(f"{'rank':>4} {'start':>7} {'end':>7} {'score':>7}")
    for rank, (start, end, score) in enumerate(result.spans, 1):
        print(f"{rank:>4} {start:7.2f} {end:7.2f} {score:7.3f}")
    return 0


def export(args: argparse.Namespace) -> int:
    """``tvgkit export``: the config's dataset (after the clean-up and coverage checks a run would do) in the
    Moment-DETR / lighthouse layout, and the ``tvgkit train`` line that reads it back."""
    from tvgkit import config
    from tvgkit.data.export import export_moment_detr
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.splits import load_splits

    cfg = config.load(RunConfig, args.config, args.set or [])
    print(_data_line(cfg.data))
    out = Path(args.out)
    inputs = [Path(p).resolve() for p in (cfg.data.train, cfg.data.val, cfg.data.test, cfg.data.durations) if p]
    clash = [p for p in (out / f"{s}.jsonl" for s in ("train", "val", "test")) if p.resolve() in inputs]
    if clash:
        raise InputError(f"{clash[0]} is one of the export's inputs: export into another folder")
    splits = load_splits(cfg.data, progress=True)
    written = export_moment_detr(splits.records, splits.features, out)
    clip = splits.features.clip_seconds
    n_vids = len(list(written["features"].glob("*.npz")))
    print(f"wrote {written['features']} ({n_vids} videos, clip length {clip if clip else 'not recorded'} s)")
    for split in splits.records:
        print(f"wrote {written[split]} ({len(splits.records[split])} queries)")
    sets = [f"data.{s}={written[s]}" for s in ("train", "val", "test") if s in written]
    sets = ["data.dataset=files", f"data.features={written['features']}", *sets]
    sets += [f"data.clip_seconds={clip}"] if clip else []
    print("train on it: tvgkit train " + " ".join(f"--set {s}" for s in sets))
    return 0


def runs_table(runs_dir: str | Path = "runs"):
    """A pandas table of finished runs: the config keys that differ between them, and their test metrics.

    A run whose ``metrics.json`` or ``config.yaml`` cannot be read (damaged, edited, cut short by a full disk) is left
    out with a :class:`SkippedRunWarning` naming it and why: one bad folder must not hide the table of the others.
    A key a run's config ignores (the random BERT's sizes in a run with a pretrained encoder) is left out of that
    run's values: it shows as ``-``, and a column appears only where the runs that use the key differ.
    """
    import pandas as pd

    from tvgkit import config
    from tvgkit.grounding.text import ignored_keys

    rows, flats = [], []
    for run in sorted(Path(runs_dir).glob("*/metrics.json")):
        try:
            cfg, row = _run_row(run)
        except (InputError, config.ConfigError, OSError) as err:
            warnings.warn(f"skipped run {run.parent.name}: {err}", SkippedRunWarning, stacklevel=2)
            continue
        ignored = {f"text.{k}" for k in ignored_keys(cfg.get("text") or {})}
        flats.append({k: v for k, v in config.flatten(cfg).items() if k not in ignored})
        rows.append(row)
    keys = [k for k in config.differing_keys(flats) if len({repr(f[k]) for f in flats if k in f}) > 1]
    for row, flat in zip(rows, flats, strict=True):
        row.update({k: flat.get(k, "-") for k in keys})
    columns = ["run", *keys, "R1@0.5", "R1@0.7", "mIoU", "val mIoU", "train s"]
    return pd.DataFrame(rows, columns=columns)


def _run_row(metrics_file: Path) -> tuple[dict, dict]:
    """One run's config (without its name) and its row of the runs table."""
    from tvgkit import config

    cfg = config.read_yaml(metrics_file.parent / "config.yaml")
    cfg.pop("name", None)
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        test = metrics["test"]
        row = {
            "run": metrics_file.parent.name,
            "R1@0.5": round(test["R1@0.5"], 1),
            "R1@0.7": round(test["R1@0.7"], 1),
            "mIoU": round(test["mIoU"], 1),
            "val mIoU": round(metrics["val_best"]["mIoU"], 1),
            "train s": metrics["train_seconds"],
        }
    except (ValueError, KeyError, TypeError) as err:  # invalid JSON or UTF-8 are ValueErrors
        reason = f"no {err} entry" if isinstance(err, KeyError) else str(err).splitlines()[0]
        raise InputError(f"{metrics_file}: not the results of a finished run ({reason})") from None
    return cfg, row


def runs(args: argparse.Namespace) -> int:
    if Path(args.runs_dir).exists() and not Path(args.runs_dir).is_dir():
        raise InputError(f"{args.runs_dir}: not a folder (tvgkit runs reads the folder holding the run folders)")
    with warning_lines("runs", SkippedRunWarning):
        table = runs_table(args.runs_dir)
    if table.empty:
        print(f"no finished runs under {args.runs_dir}")
        return 0
    print(table.to_string(index=False))
    if args.json:
        _json_line({"runs": table.to_dict(orient="records")})
    return 0
