"""Prompt templates and the prompt ensemble on the grounding task, over seeds.

Three trainings per seed, notebook 05's size (``preset("notebook")``: 1,500 videos, 2-layer encoder, 560 steps, the
span head), differing only in ``model.templates``:

- ``3 templates``: the kit's three ``[MASK]`` templates; each training sample gets one of them at random
  (``tvgkit.grounding.dataset.Collate``), and the chosen checkpoint is scored twice: with the prompt ensemble (the
  heads' outputs averaged over the three prompts) and on the first template alone;
- ``1 template``: the first template only, in training and evaluation;
- ``no [MASK]``: the bare query, no template words and no ``[MASK]`` slots (the span head reads the clip tokens, so
  it needs none): does the prompt's wording help at all?

Every row is the checkpoint chosen on validation (mIoU), scored on the test split. Runs go to ``--jobs`` processes
with one thread each.

    python benchmarks/prompts.py                    # 3 seeds, 2 processes (about 10 minutes on a free 2-core CPU)
    python benchmarks/prompts.py --preset tiny --seeds 2 --out /tmp/p.json    # smoke run

The table is printed and written with per-seed metrics, size, seeds and machine to ``--out`` (default
``benchmarks/results/prompts.json``, read by notebook 05).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tvgkit import experiments
from tvgkit.grounding.model import TEMPLATES

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "prompts.json"
#: training setting -> the templates it trains with
SETTINGS: dict[str, list[str]] = {
    "3 templates": list(TEMPLATES),
    "1 template": TEMPLATES[:1],
    "no [MASK]": ["{query}"],
}
METRICS = ("R1@0.5", "R1@0.7", "mIoU")
_SPLITS = None


def _load_splits(preset_name: str, extra: list[str]) -> None:
    global _SPLITS
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.splits import load_splits

    _SPLITS = load_splits(preset(preset_name, extra).data, progress=False)


def run_one(preset_name: str, setting: str, seed: int, extra: list[str], runs_dir: str) -> list[dict]:
    """Train one (setting, seed); rows for its chosen checkpoint (two for the ensemble setting: on and off)."""
    from tvgkit.grounding.evaluate import evaluate_run
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.train import train

    name = setting.replace(" ", "_").replace("[", "").replace("]", "")
    cfg = preset(preset_name, [*extra, "train.threads=1", f"seed={seed}", f"runs_dir={runs_dir}", f"name={name}"])
    cfg.model.templates = list(SETTINGS[setting])
    cfg.model.prompt_ensemble = len(cfg.model.templates) > 1
    result = train(cfg, progress=False, splits=_SPLITS)
    base = {"seed": seed, "steps": result.metrics["steps"], "train_seconds": result.train_seconds}
    evaluated = {setting + (" + ensemble" if cfg.model.prompt_ensemble else ""): result.metrics["test"]}
    if cfg.model.prompt_ensemble:
        evaluated[setting + ", first only"] = evaluate_run(result.run_dir, "test", ensemble=False, splits=_SPLITS)
    return [{"setting": s, **base, **{m: metrics[m] for m in METRICS}} for s, metrics in evaluated.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="notebook", help="a tvgkit.grounding.train preset (tiny for a smoke run)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--runs-dir", default="runs/prompts")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    start = time.perf_counter()
    _load_splits(args.preset, args.set)  # renders the dataset into the cache once, before any worker starts
    tasks = [(args.preset, s, seed, args.set, args.runs_dir) for seed in range(args.seeds) for s in SETTINGS]
    rows = [
        row
        for rows in experiments.run_parallel(run_one, tasks, args.jobs, _load_splits, (args.preset, args.set))
        for row in rows
    ]
    summary = experiments.summarise(rows, "setting", METRICS)
    print(f"test, mean ± standard error over {args.seeds} seeds")
    print(experiments.summary_frame(summary, METRICS).to_string())
    fields = {
        "preset": args.preset,
        "overrides": [*args.set, "train.threads=1"],
        "n_train_queries": len(_SPLITS.records["train"]),
        "n_test_queries": len(_SPLITS.records["test"]),
        "steps": rows[0]["steps"],
        "seeds": args.seeds,
        "templates": SETTINGS,
        "summary": summary,
        "runs": rows,
    }
    experiments.write_report(args.out, "benchmarks/prompts.py", start, fields)


if __name__ == "__main__":
    main()
