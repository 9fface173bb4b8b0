"""Training-step throughput, side by side: steps/s and samples/s of the trainer's own loop under switches.

What a step costs besides the model's arithmetic (the guard, moving batches, logging, Python per step) is what
keeps a GPU waiting. On a CPU the same host overhead shows in a model so small that its compute is negligible: the
*proxy* (one encoder layer of width 16); its steps/s is host overhead. The quick default model (3 layers of 128)
is compute-bound on a CPU and shows what a real run gains there.

Every variant trains on the quick default's data (rendered once, then cached) through ``tvgkit.grounding.train``,
exactly as ``tvgkit train`` does, in a fresh process: ``--warmup`` steps, then ``--steps`` timed steps (the clock
stops after a device synchronisation), then the run is abandoned. With ``--against DIR`` (another checkout of the
kit, e.g. ``git worktree add /tmp/before HEAD~3``) every variant also runs with that tree's code, interleaved with
this one's ``--repeats`` times, so that load from other processes falls on both alike; the ratio is after/before.
Two clocks: wall time (what a user waits) and the process's CPU time (``time.process_time``: on a machine shared
with other jobs, the proxy's host work without the time it waited for a core; the proxy runs one thread, so CPU time
is its work). Prints a table, then one JSON object as the last line.

    PYTHONPATH=. python benchmarks/throughput.py [--steps 150] [--against DIR] [--variants proxy-guard ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A model whose arithmetic is negligible: what its step costs is the loop's host overhead (one thread: tiny
#: operations gain nothing from more, and on a busy machine their thread pool only waits).
PROXY = ["text.layers=1", "text.hidden=16", "text.heads=1", "text.intermediate=32", "train.threads=1"]
VARIANTS: dict[str, list[str]] = {
    "proxy-guard": PROXY,
    "proxy-noguard": [*PROXY, "train.guard=false"],
    "proxy-b256": [*PROXY, "train.batch_size=256"],
    "quick-guard": [],
    "quick-noguard": ["train.guard=false"],
}


CLOCKS = ("steps_per_s", "steps_per_cpu_s")


class _Done(Exception):
    """Raised from the step callback once the timed steps are done: the run is abandoned there."""


def measure(overrides: list[str], steps: int, warmup: int) -> dict:
    """Train the quick default with ``overrides`` for ``warmup + steps`` steps; the timed steps' rates."""
    import torch

    from tvgkit import config
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.train import train

    with tempfile.TemporaryDirectory(prefix="tvgkit-throughput-") as tmp:
        cfg = config.load(RunConfig, None, [f"runs_dir={tmp}", "name=throughput", *overrides])
        clock: dict[str, float] = {}

        def on_step(step: int, epoch: int) -> None:
            if step in (warmup, warmup + steps):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock[f"wall{step}"], clock[f"cpu{step}"] = time.perf_counter(), time.process_time()
            if step == warmup + steps:
                raise _Done

        try:
            train(cfg, progress=False, on_step=on_step)
        except _Done:
            pass
        else:
            raise SystemExit(f"the run ended before {warmup + steps} steps: ask for fewer (--steps, --warmup)")
    seconds = clock[f"wall{warmup + steps}"] - clock[f"wall{warmup}"]
    cpu_seconds = clock[f"cpu{warmup + steps}"] - clock[f"cpu{warmup}"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "steps_per_s": round(steps / seconds, 2),
        "samples_per_s": round(steps * cfg.train.batch_size / seconds, 1),
        "steps_per_cpu_s": round(steps / cpu_seconds, 2),
        "batch_size": cfg.train.batch_size,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def run_variant(source: Path, name: str, steps: int, warmup: int) -> dict:
    """One variant in a fresh process importing the kit from ``source``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--steps", str(steps), "--warmup", str(warmup)]
    env = {**os.environ, "PYTHONPATH": str(source), "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=source)
    if done.returncode != 0:
        raise SystemExit(f"{name} with {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=150, help="timed steps per variant (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per variant and tree; the median counts")
    parser.add_argument("--against", type=Path, help="another checkout of the kit: its code runs the same variants")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one variant in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(VARIANTS[args.one], args.steps, args.warmup)))
        return

    trees = {"after": ROOT} if args.against is None else {"before": args.against.resolve(), "after": ROOT}
    rows = []
    for name in args.variants:
        runs: dict[str, list[dict]] = {tree: [] for tree in trees}
        for _ in range(args.repeats):
            for tree, source in trees.items():
                runs[tree].append(run_variant(source, name, args.steps, args.warmup))
        row = {"variant": name, "overrides": VARIANTS[name]}
        for tree, measured in runs.items():
            row[tree] = {**measured[0], **{k: statistics.median(m[k] for m in measured) for k in CLOCKS}}
            row[tree]["samples_per_s"] = round(row[tree]["steps_per_s"] * measured[0]["batch_size"], 1)
        if "before" in row:
            row["ratio"] = {k: round(row["after"][k] / row["before"][k], 2) for k in CLOCKS}
        rows.append(row)
        cells = "  ".join(
            f"{tree} {row[tree]['steps_per_s']:6.2f} steps/s ({row[tree]['steps_per_cpu_s']:6.2f}/cpu-s) "
            f"{row[tree]['samples_per_s']:7.1f} samples/s"
            for tree in trees
        )
        ratio = row.get("ratio")
        print(
            f"{name:14s} {cells}"
            + (f"  after/before {ratio['steps_per_s']:.2f}x ({ratio['steps_per_cpu_s']:.2f}x)" if ratio else ""),
            flush=True,
        )
    print(json.dumps({"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "rows": rows}))


if __name__ == "__main__":
    main()
