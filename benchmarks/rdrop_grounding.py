"""R-Drop on the grounding task, on the heads that learn: the span head and the pointer regression head, over seeds.

Every run trains notebook 05's size (``preset("notebook")``: 1,500 videos, 2-layer encoder, 560 steps) with
text-encoder dropout ``--dropout`` (default 0.1: R-Drop needs dropout, and the kit's default encoder has none), for
each head in two settings: ``off`` (that dropout, no consistency term: the fair comparison) and ``R-Drop`` (two
dropout passes of one batch and ``alpha`` times their symmetric KL divergence). Both heads give R-Drop the same
objective as in the paper's classification tasks: the KL between the two passes' start and end distributions over
clips (the span head's logits; the pointer head's pointers, ``train.rdrop_kind=kl``). ``--alpha`` defaults to 1, in
the range the R-Drop paper used for BERT fine-tuning on GLUE (0.1 to 1; 5 for translation). Evaluation uses the
first template (``model.prompt_ensemble=false``), so that train, validation and test are scored alike.

Each run records the chosen checkpoint's validation and test R1@0.5, R1@0.7 and mIoU, the same checkpoint on the first
``--train-queries`` training queries (``evaluate_run``), the train/validation gap (train minus validation), and the
seconds it took. Seeds change the initialisation, the batch order and the dropout masks; the data are the same.

    python benchmarks/rdrop_grounding.py                       # 2 heads x 2 settings x 3 seeds: about 30 minutes
    python benchmarks/rdrop_grounding.py --preset tiny --seeds 2 --jobs 1 --out /tmp/r.json   # smoke run

The table (mean ± standard error over seeds) is printed; the runs, summary, size, seeds and machine go to ``--out``
(default ``benchmarks/results/rdrop_grounding.json``, which notebook 04 reads).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from tvgkit import experiments

HEADS = ("span", "regression")
SETTINGS = ("off", "R-Drop")
FIGURES = ("val R1@0.5", "val mIoU", "test R1@0.5", "test R1@0.7", "test mIoU", "train mIoU", "gap mIoU", "seconds")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "rdrop_grounding.json"

_SPLITS = None  # the splits of this process (each worker loads them once, from the dataset cache)


def _load_splits(preset_name: str, extra: list[str]) -> None:
    global _SPLITS
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.splits import load_splits

    _SPLITS = load_splits(preset(preset_name, extra).data, progress=False)


def run_one(
    preset_name: str,
    head: str,
    setting: str,
    alpha: float,
    dropout: float,
    seed: int,
    extra: list[str],
    train_queries: int,
    runs_dir: str,
) -> dict:
    """Train one (head, setting, seed), then score its chosen checkpoint on the first training queries."""
    from tvgkit.grounding.evaluate import evaluate_run
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.train import train

    rdrop = ["train.rdrop_kind=kl", f"train.rdrop_alpha={alpha if setting == 'R-Drop' else 0}"]
    overrides = [*extra, f"model.head={head}", f"text.dropout={dropout}", "model.prompt_ensemble=false", *rdrop]
    name = f"name=rdrop_{head}_{setting.replace('-', '').lower()}_s{seed}"
    cfg = preset(preset_name, [*overrides, "train.threads=1", f"seed={seed}", f"runs_dir={runs_dir}", name])
    start = time.perf_counter()
    result = train(cfg, progress=False, splits=_SPLITS)
    subset = dataclasses.replace(
        _SPLITS, records={**_SPLITS.records, "train": _SPLITS.records["train"][:train_queries]}
    )
    train_split = evaluate_run(result.run_dir, "train", splits=subset)
    val, test = result.metrics["val_best"], result.metrics["test"]
    row = {
        "setting": f"{head}, {setting}",
        "head": head,
        "rdrop": setting,
        "alpha": alpha if setting == "R-Drop" else 0,
    }
    row.update({"dropout": dropout, "seed": seed, "steps": result.metrics["steps"], "best epoch": val["epoch"]})
    for split, metrics in (("val", val), ("test", test), ("train", train_split)):
        row.update({f"{split} {m}": metrics[m] for m in ("R1@0.5", "R1@0.7", "mIoU")})
    row["gap R1@0.5"] = train_split["R1@0.5"] - val["R1@0.5"]
    row["gap mIoU"] = train_split["mIoU"] - val["mIoU"]
    row["train seconds"] = result.train_seconds
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="notebook", help="a tvgkit.grounding.train preset (tiny for a smoke run)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the symmetric KL term")
    parser.add_argument("--dropout", type=float, default=0.1, help="text-encoder dropout of every run")
    parser.add_argument("--train-queries", type=int, default=600, help="training queries scored for the gap")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--runs-dir", default="runs/rdrop_grounding")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    start = time.perf_counter()
    _load_splits(args.preset, args.set)  # renders the dataset into the cache once, before any worker starts
    # Seed-major order: one seed's settings run side by side, so the load of the other process hits them alike.
    tasks = [
        (args.preset, h, s, args.alpha, args.dropout, seed, args.set, args.train_queries, args.runs_dir)
        for seed in range(args.seeds)
        for h in args.heads
        for s in SETTINGS
    ]
    rows = experiments.run_parallel(run_one, tasks, args.jobs, _load_splits, (args.preset, args.set))
    summary = experiments.summarise(rows, "setting", FIGURES)
    print(f"mean ± standard error over {args.seeds} seeds (percent; gap = train minus validation, chosen checkpoint)")
    print(experiments.summary_frame(summary, FIGURES).to_string())
    fields = {
        "preset": args.preset,
        "overrides": [*args.set, f"text.dropout={args.dropout}", "model.prompt_ensemble=false", "train.threads=1"],
        "n_train_queries": len(_SPLITS.records["train"]),
        "gap_train_queries": min(args.train_queries, len(_SPLITS.records["train"])),
        "steps": rows[0]["steps"],
        "seeds": args.seeds,
        "alpha": args.alpha,
        "summary": summary,
        "runs": rows,
    }
    experiments.write_report(args.out, "benchmarks/rdrop_grounding.py", start, fields)


if __name__ == "__main__":
    main()
