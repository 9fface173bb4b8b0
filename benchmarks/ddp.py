"""Step time of one process vs two (``torchrun``, DistributedDataParallel, gloo) on the CPU, side by side.

For the record only: the CPU is not where DDP pays. Two processes on a few cores split the same cores that one
process would use with more threads, and every step adds a gradient all-reduce through gloo; DDP's speed-up comes
from one GPU per process with NCCL. ``train.batch_size`` is per process, so a two-process step trains twice the
samples: compare samples per second, not only time per step.

Each variant is a fresh ``tvgkit train`` (or ``torchrun --nproc_per_node 2 -m tvgkit train``) of the same config in
a temporary folder; the times are the trainer's own (``metrics.json``: training only, no start-up, no evaluation).
The variants run one after another, so load from other processes can favour either. Last line: one JSON object.

    PYTHONPATH=. python benchmarks/ddp.py [--preset tiny] [--epochs 4] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tvgkit import config
from tvgkit.grounding.presets import preset

ROOT = Path(__file__).resolve().parents[1]
#: The tiny preset's 12 training videos make one step per epoch per process; more videos make the times readable.
DEFAULT_SETS = ["data.synth.n_train=128"]


def run(folder: Path, name: str, processes: int, threads: int, preset_name: str, overrides: list[str]) -> dict:
    """Train once with ``processes`` processes of ``threads`` threads each; the run's metrics.json."""
    cfg = preset(preset_name, [f"runs_dir={folder}", f"name={name}", f"train.threads={threads}", *overrides])
    config.save(cfg, folder / f"{name}.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = [*launcher, "-m", "tvgkit", "train", str(folder / f"{name}.yaml"), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads((folder / name / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    overrides = [*DEFAULT_SETS, f"train.epochs={args.epochs}", *args.set]
    variants = [("1 process", 1, 1), (f"1 process x {cores} threads", 1, cores)]
    variants.append((f"2 processes x {max(1, cores // 2)} threads", 2, max(1, cores // 2)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tvgkit-ddp-") as tmp:
        for i, (label, processes, threads) in enumerate(variants):
            m = run(Path(tmp), f"v{i}", processes, threads, args.preset, overrides)
            ms = 1000 * m["train_seconds"] / m["steps"]
            rows.append(
                {
                    "variant": label,
                    "processes": processes,
                    "threads_per_process": threads,
                    "steps": m["steps"],
                    "ms_per_step": round(ms, 1),
                    "samples_per_second": m["samples_per_second"],
                    "test_mIoU": round(m["test"]["mIoU"], 2),
                }
            )
    print(f"preset {args.preset}, {args.epochs} epochs, {cores} usable cores; batch size is per process")
    print(f"{'variant':<26} {'steps':>6} {'ms/step':>8} {'samples/s':>10} {'test mIoU':>10}")
    for r in rows:
        print(
            f"{r['variant']:<26} {r['steps']:>6} {r['ms_per_step']:>8.1f} {r['samples_per_second']:>10.1f} "
            f"{r['test_mIoU']:>10.2f}"
        )
    print(json.dumps({"preset": args.preset, "epochs": args.epochs, "cores": cores, "runs": rows}))


if __name__ == "__main__":
    main()
