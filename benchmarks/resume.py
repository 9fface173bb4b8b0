"""Resume equality: a run stopped by Ctrl-C and resumed ends exactly where the uninterrupted run ends.

Trains one config uninterrupted, then the same config stopped by a real SIGINT after step k (for each k given) and
continued with ``train(resume=RUN_DIR)``, all on CPU in this process. The table compares the test metrics and every
weight tensor of ``last.pt`` (the final weights) and ``best.pt`` (the selected ones). Last line: one JSON object.

    PYTHONPATH=. python benchmarks/resume.py [--preset tiny] [--epochs 4] [--stop-at 3 4] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
from pathlib import Path

import torch

from tvgkit.grounding.checkpoint import Interrupted
from tvgkit.grounding.presets import preset
from tvgkit.grounding.train import train


def weights(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / name, weights_only=True)
    return state.get("model", state)


def compare(a: Path, b: Path) -> dict[str, float | int]:
    """Tensors that differ and the largest absolute difference, over last.pt and best.pt."""
    differ, worst, total = 0, 0.0, 0
    for name in ("last.pt", "best.pt"):
        wa, wb = weights(a, name), weights(b, name)
        for key, ta in wa.items():
            total += 1
            if not torch.equal(ta, wb[key]):
                differ += 1
                worst = max(worst, (ta.double() - wb[key].double()).abs().max().item())
    return {"tensors": total, "tensors_differing": differ, "max_abs_diff": worst}


def run_all(args: argparse.Namespace, overrides: list[str]) -> tuple[object, list[dict]]:
    """The uninterrupted run, then one stopped-and-resumed run per ``--stop-at`` step, compared with it."""
    whole = train(preset(args.preset, [*overrides, "name=whole"]), progress=False)
    steps_per_epoch = whole.metrics["steps"] // args.epochs
    rows = []
    for step in args.stop_at:

        def ctrl_c(done: int, epoch: int, at: int = step) -> None:
            if done == at:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in a terminal sends

        try:
            train(preset(args.preset, [*overrides, f"name=stop-{step}"]), progress=False, on_step=ctrl_c)
            raise SystemExit(f"--stop-at {step}: the run has only {whole.metrics['steps']} steps")
        except Interrupted as stop:
            resumed = train(resume=stop.run_dir, progress=False)
        where = "end of epoch" if step % steps_per_epoch == 0 else "mid-epoch"
        same = resumed.metrics["test"] == whole.metrics["test"]
        row = {"stop_at": step, "where": where, "test_metrics_equal": same}
        rows.append({**row, **compare(whole.run_dir, resumed.run_dir)})
    return whole, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--stop-at", type=int, nargs="+", default=[3, 4], help="steps after which Ctrl-C arrives")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tvgkit-resume-") as runs:
        whole, rows = run_all(args, [f"runs_dir={runs}", f"train.epochs={args.epochs}", *args.set])
    steps_per_epoch = whole.metrics["steps"] // args.epochs
    miou = whole.metrics["test"]["mIoU"]
    print(f"preset {args.preset}, {args.epochs} epochs of {steps_per_epoch} steps; uninterrupted test mIoU {miou:.4f}")
    print(f"{'stop at':>8} {'where':>13} {'test metrics':>13} {'tensors':>8} {'differing':>10} {'max |diff|':>11}")
    for r in rows:
        equal = "equal" if r["test_metrics_equal"] else "DIFFER"
        print(
            f"{r['stop_at']:>8} {r['where']:>13} {equal:>13} {r['tensors']:>8} {r['tensors_differing']:>10} "
            f"{r['max_abs_diff']:>11.3g}"
        )
    exact = all(r["test_metrics_equal"] and r["tensors_differing"] == 0 for r in rows)
    print("resume is exact" if exact else "resume is NOT exact")
    print(json.dumps({"preset": args.preset, "epochs": args.epochs, "exact": exact, "runs": rows}))


if __name__ == "__main__":
    main()
