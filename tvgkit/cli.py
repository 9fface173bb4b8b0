"""The ``tvgkit`` command line: one sub-command per job, each a thin layer over a package function.

Handlers import their modules lazily, so ``tvgkit --help`` stays fast (peft and transformers cost seconds).
Errors a user can fix (a bad file, a missing key: :class:`tvgkit.errors.InputError`, ``ConfigError``, a missing or
unreadable path) print one ``error:`` line and exit with status 2, never a traceback; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

DATASETS = ("synthetic", "charades-sta", "activitynet", "tacos")
SPLITS = ("train", "val", "test")
#: Path errors a user can fix; their messages name the path.
PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def _add_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baselines",
        help="blind baselines (whole video, best fixed span, KDE prior; on synthetic also a query-blind model)",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        required=True,
        help="synthetic: the kit's rendered set (also trains the query-blind model: minutes, see --no-model); "
        "the others read real annotations (choices: %(choices)s)",
    )
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files (default: $TVGKIT_DATA)")
    p.add_argument(
        "--split",
        default="test",
        choices=SPLITS,
        help="split the baselines are scored on: %(choices)s (default: %(default)s; synthetic: test only)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random prior and the query-blind model (default: %(default)s)"
    )
    p.add_argument(
        "--no-model",
        action="store_true",
        help="synthetic: skip the query-blind model (the quick default trained with emptied queries, about 4.5 min "
        "on a 2-core CPU, written to runs/baselines-query-blind/)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "baselines"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a grounding model (no arguments: the synthetic videos, sized for the device)",
        epilog="Ctrl-C saves RUN_DIR/last.pt and exits (status 130); --resume RUN_DIR continues. Several processes: "
        "torchrun --nproc_per_node N -m tvgkit train ...",
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="YAML config (default: with nothing else given, preset 'gpu' where CUDA is present, else 'quick')",
    )
    p.add_argument(
        "--preset",
        metavar="NAME",
        help="start from a named preset instead of a config file: quick (CPU-sized), gpu (batch 256), full, notebook "
        "or tiny (tvgkit/grounding/presets.py)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. train.lr=3e-4")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last.pt and config.yaml")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "train"))


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run's best checkpoint (R1@m, mIoU, R5@m, mAP@m); optionally write its predictions",
        epilog="The predictions file is what Moment-DETR's and lighthouse's evaluators read: one JSON object per "
        "query, {qid, query, vid, pred_relevant_windows: [[start s, end s, score], ...]}, best score first.",
    )
    p.add_argument("run_dir", help="a run folder written by tvgkit train (runs/<name>)")
    p.add_argument(
        "--split", default="test", choices=SPLITS, help="split to score on: %(choices)s (default: %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--predictions", metavar="OUT.jsonl", help="also write each query's ranked spans to this file")
    p.add_argument(
        "--top", type=int, default=10, help="spans per query in --predictions (default 10; the metrics use 10)"
    )
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "evaluate"))


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="render the synthetic dataset (cached by its config hash)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a SynthConfig key, e.g. n_train=500")
    p.add_argument("--cache-dir", default=None, help="default: $TVGKIT_CACHE or ~/.cache/tvgkit")
    p.add_argument("--video", default=None, metavar="FILE.mp4", help="also write one test video as an mp4")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "synth"))


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="per-clip features of video files into one HDF5 file")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files; each becomes video <file stem>")
    p.add_argument("--out", required=True, metavar="FILE.hdf5", help="the HDF5 file to write: f[vid] = [clips, dim]")
    p.add_argument(
        "--backbone",
        default="blobs",
        help="blobs: colour-blob statistics for the kit's rendered videos (default); efficientnet-lite0: ImageNet "
        "features for real footage (needs tvgkit[vision]; CUDA when present)",
    )
    p.add_argument(
        "--fps", type=float, default=4.0, help="frames per second read from each video (default: %(default)s)"
    )
    p.add_argument(
        "--clip-seconds", type=float, default=1.0, help="length of one clip, one feature row (default: %(default)s)"
    )
    p.add_argument(
        "--durations",
        default=None,
        metavar="FILE.json",
        help="also write {vid: {duration}} (Charades-STA text needs it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "extract"))


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top spans of a query in a video file, with a trained run")
    p.add_argument("run_dir", help="a run folder written by tvgkit train (runs/<name>)")
    p.add_argument("--video", required=True, help="a video file, or an HDF5 file written by tvgkit extract")
    p.add_argument("--vid", default=None, help="which video of an HDF5 file holding several")
    p.add_argument("--query", required=True, help="the sentence to ground, in quotes")
    p.add_argument("--top", type=int, default=5, help="how many ranked spans to print (default: %(default)s)")
    p.add_argument(
        "--fps", type=float, default=None, help="frames per second to sample (default: the run's data.synth.fps)"
    )
    p.add_argument(
        "--clip-seconds", type=float, default=None, help="clip length (default: the run's data.synth.clip_seconds)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object as the last line: vid, query, duration, pred_relevant_windows [[start, end, "
        "score], ...] as in a Moment-DETR predictions file, checkpoint, backbone, unseen_words",
    )
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "predict"))


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a run config's dataset (synthetic or data.dataset=files) in Moment-DETR / lighthouse's layout",
        epilog="OUT/features/<vid>.npz (key 'features', [clips, dim]) and OUT/<split>.jsonl with qid, query, vid, "
        "duration, relevant_windows, relevant_clip_ids (the clips a window overlaps; clip i covers [i*c, (i+1)*c) "
        "seconds) and saliency_scores: the sources have none, so each relevant clip gets 3 equal scores "
        "max(1, floor(4*f + 0.5)), f the fraction of the clip the moment covers.",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML run config (default: the quick synthetic set)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. data.max_clips=128")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "export"))


def _add_runs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="table of runs: config keys that differ, and test metrics")
    p.add_argument("runs_dir", nargs="?", default="runs", help="folder holding the run folders (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(handler=_lazy("tvgkit.grounding.commands", "runs"))


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int | None]:
    def run(args: argparse.Namespace) -> int | None:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    from tvgkit import __version__

    parser = argparse.ArgumentParser(prog="tvgkit", description="tvgkit: train, evaluate and inspect grounding runs.")
    parser.add_argument("--version", action="version", version=f"tvgkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    adders = (_add_train, _add_eval, _add_baselines, _add_synth, _add_extract, _add_predict, _add_export, _add_runs)
    for add in adders:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tvgkit.runtime import quiet_warnings

    quiet_warnings()
    from tvgkit.config import ConfigError
    from tvgkit.errors import InputError

    try:
        code = args.handler(args)
    except (InputError, ConfigError, *PATH_ERRORS) as err:
        message = " | ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"tvgkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tvgkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
