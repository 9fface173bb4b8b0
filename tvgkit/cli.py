"""The ``tvgkit`` command line: one sub-command per job, each a thin layer over a package function.

Handlers import their modules lazily, so ``tvgkit --help`` stays fast (peft and transformers cost seconds).
Errors a user can fix (a bad file, a missing key) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

DATASETS = ("synthetic", "charades-sta", "activitynet", "tacos")


class UserError(Exception):
    """An error caused by input the user can fix; printed as one line, exit status 2."""


def _add_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baselines", help="video-blind baselines (whole video, best fixed span, KDE prior)")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files (default: $TVGKIT_DATA)")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(handler=_lazy("tvgkit.baselines", "main"))


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
    for add in (_add_baselines,):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tvgkit.runtime import quiet_warnings

    quiet_warnings()
    try:
        code = args.handler(args)
    except (UserError, FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"tvgkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tvgkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
