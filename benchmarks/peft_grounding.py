"""PEFT methods on the grounding task with a pretrained text encoder: what each one trains, learns and costs.

Each method (``tvgkit.lessons.peft``) is applied to the packaged pretrained all-MiniLM-L6-v2 (6 layers, hidden 384;
the ``encoder`` field says which encoder ran) inside the grounding model; the video projection, query gate, position
embeddings and heads always train, at ``train.lr`` (notebook preset: 2e-3), the encoder's trainable parameters at the
method's own rate (``ENCODER_LR``). All sizes use notebook 05's rendered data (1,500 videos), choose the checkpoint on
validation (298 queries, mIoU), score it on the test split (593 queries) with the first template
(``model.prompt_ensemble=false``), and run two processes side by side with one thread each:

- ``cpu`` (default): the first 1,000 training queries, batch 4, 2 epochs = 500 optimiser steps. What a 2-core CPU
  affords for nine methods (a MiniLM step costs about 20 random-BERT steps): about 30 minutes per seed. Measured:
  at 2,000 training samples no method, full fine-tuning included, leaves the video-blind level, so this size
  measures cost (parameters, seconds per step, memory), not which method learns best.
- ``gpu``: all 4,453 training queries, batch 32, 4 epochs = 560 steps, the size at which the kit's random BERT
  reaches R1@0.5 66 in notebook 05: the size that separates methods, for a CUDA GPU.
- ``smoke``: 16 queries per split, a minute: plumbing only.

Per method: trainable parameters of the encoder and of the whole model, test R1@0.5 / R1@0.7 / mIoU per seed and as
mean and standard error, seconds per optimiser step and peak memory (CUDA: peak allocated; CPU: growth of the
process's peak resident set during the run, read from ``/proc/self/status`` after resetting it through
``/proc/self/clear_refs``). Seconds per step come twice: from the training runs (which share the machine with
each other and with whatever else runs), and measured side by side in one process after them (``cost``: every
method on the same batch, round-robin), whose ratio to full fine-tuning is the comparable figure.

    python benchmarks/peft_grounding.py                       # 9 methods x 3 seeds at the cpu size
    python benchmarks/peft_grounding.py --size gpu --jobs 1   # on a GPU
    python benchmarks/peft_grounding.py --size smoke --seeds 0 --out /tmp/p.json
    python benchmarks/peft_grounding.py --from-rows runs/peft_grounding/rows.jsonl   # runs of a stopped invocation

Results go to ``--out``; by default the cpu size to ``benchmarks/results/peft_grounding.json`` and the gpu size to
``benchmarks/results/peft_grounding_gpu.json`` (its record: one H200, 2026-12-04, see its ``note``); notebook 03
reads both. The smoke size needs ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

from tvgkit import experiments
from tvgkit.lessons import peft

#: method name -> (tvgkit.lessons.peft method, options). AdaLoRA's schedule options are filled in from the run length.
METHODS: dict[str, tuple[str, dict]] = {
    "full": ("full", {}),
    "frozen": ("frozen", {}),
    "lora_qv": ("lora", {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]}),
    "lora_all": ("lora", {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"}),
    "adalora": ("adalora", {"init_r": 12, "target_r": 4, "lora_alpha": 16, "target_modules": ["query", "value"]}),
    "bitfit": ("bitfit", {}),
    "adapter": ("adapter", {"bottleneck": 32}),
    "ptuning_v2": ("prefix", {"num_virtual_tokens": 16}),
    "prompt_tuning": ("prompt", {"num_virtual_tokens": 16}),
}
#: The encoder's learning rate per method. A pretrained encoder fine-tunes at a small rate; PEFT parameters start at
#: (near) zero updates and conventionally get a larger one (LoRA paper: 4e-4 to 5e-4 for RoBERTa-base; BitFit: 1e-4
#: to 1e-3; P-Tuning v2: 5e-3 to 1e-2; prompt tuning: larger still, 0.3 with Adafactor in Lester et al.).
ENCODER_LR = {"full": 1e-4, "ptuning_v2": 5e-3, "prompt_tuning": 1e-2}
DEFAULT_ENCODER_LR = 1e-3
SIZES = {
    "cpu": {"overrides": ["train.batch_size=4", "train.epochs=2"], "train_queries": 1000},
    "gpu": {"overrides": ["train.batch_size=32", "train.epochs=4"], "train_queries": None},
    "smoke": {"overrides": ["train.batch_size=4", "train.epochs=1"], "train_queries": 16, "eval_queries": 16},
}
METRICS = ("R1@0.5", "R1@0.7", "mIoU")
COST_STEPS, COST_ROUNDS = 5, 3
RESULTS = Path(__file__).resolve().parent / "results"
#: Where each size's record goes unless ``--out`` says otherwise; notebook 03 reads the cpu and gpu records.
DEFAULT_OUT = {"cpu": RESULTS / "peft_grounding.json", "gpu": RESULTS / "peft_grounding_gpu.json"}
_SPLITS = None


def _rss_kib(field: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak(device: torch.device) -> int | None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return 0
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    except OSError:
        return None
    return _rss_kib("VmRSS")


def _peak_mb(device: torch.device, baseline: int | None) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _rss_kib("VmHWM")
    return None if baseline is None or peak is None else (peak - baseline) / 1024


def _load_splits(base: list[str], size: dict) -> None:
    """This process's splits: the preset's data, each split cut to its first queries as ``size`` says."""
    global _SPLITS
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.splits import load_splits

    splits = load_splits(preset("notebook", base).data, progress=False)
    cut = {"train": size["train_queries"], "val": size.get("eval_queries"), "test": size.get("eval_queries")}
    _SPLITS = dataclasses.replace(splits, records={k: v[: cut.get(k)] for k, v in splits.records.items()})


def _config(name: str, seed: int, base: list[str]):
    """The notebook preset with method ``name``: its PEFT options (AdaLoRA's schedule from the run length) and rate."""
    from tvgkit.grounding.presets import preset

    method, options = METHODS[name]
    cfg = preset("notebook", [*base, f"name=peft_{name}_s{seed}", f"seed={seed}", f"text.peft={method}"])
    cfg.train.encoder_lr = ENCODER_LR.get(name, DEFAULT_ENCODER_LR)
    options = dict(options)
    if method == "adalora":
        steps = cfg.train.epochs * -(-len(_SPLITS.records["train"]) // cfg.train.batch_size)
        options.update(total_step=steps, tinit=steps // 10, tfinal=steps // 5, deltaT=max(1, steps // 20))
    cfg.text.peft_options = options
    return cfg


def run_one(name: str, seed: int, base: list[str]) -> dict:
    """Train one (method, seed); its test metrics, parameter counts, seconds per step and peak memory."""
    from tvgkit.grounding.build import build_model
    from tvgkit.grounding.train import train

    cfg = _config(name, seed, base)
    model, _ = build_model(cfg, _SPLITS.records["train"], _SPLITS.features.dim)
    trainable, total = peft.count_parameters(model)
    encoder_trainable = peft.count_parameters(model.encoder)[0]
    del model
    device = torch.device(cfg.train.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    baseline = _reset_peak(device)
    result = train(cfg, progress=False, splits=_SPLITS)
    test = result.metrics["test"]
    print(f"{name} seed {seed}: R1@0.5 {test['R1@0.5']:.1f} mIoU {test['mIoU']:.1f}", flush=True)
    return {
        "method": name,
        "seed": seed,
        "peft": cfg.text.peft,
        "options": cfg.text.peft_options,
        "encoder_lr": cfg.train.encoder_lr,
        "encoder_trainable": encoder_trainable,
        "trainable": trainable,
        "total": total,
        **{m: test[m] for m in METRICS},
        "val mIoU": result.metrics["val_best"]["mIoU"],
        "best epoch": result.metrics["val_best"]["epoch"],
        "steps": result.metrics["steps"],
        "s_per_step": result.train_seconds / result.metrics["steps"],
        "peak_mb": _peak_mb(device, baseline),
        "device": device.type,
    }


def cost(names: list[str], base: list[str]) -> dict[str, float]:
    """Seconds per optimiser step of each method, measured side by side in this one process.

    The training runs' own timings share the machine with whatever else runs, so they compare badly. Here every
    method is built as for training (seed 0), takes one warm-up step, then ``COST_ROUNDS`` round-robin rounds of
    ``COST_STEPS`` steps on its first training batch; the median round per method. Slow phases of the machine hit
    every method alike, so the ratios hold even where the absolute seconds do not.
    """
    from tvgkit.grounding.build import build_run
    from tvgkit.grounding.train import train_step

    runs = {n: build_run(_config(n, 0, base), False, _SPLITS, None, None) for n in names}
    batches = {n: next(iter(run.train_loader)) for n, run in runs.items()}
    rounds: dict[str, list[float]] = {n: [] for n in names}
    for n, run in runs.items():
        train_step(run, batches[n])
    for _ in range(COST_ROUNDS):
        for n, run in runs.items():
            tick = time.perf_counter()
            for _ in range(COST_STEPS):
                train_step(run, batches[n])
            rounds[n].append((time.perf_counter() - tick) / COST_STEPS)
    for run in runs.values():
        run.log.close()
    return {n: statistics.median(r) for n, r in rounds.items()}


def collect(rows: list[dict], encoder: str) -> dict[str, dict]:
    """method -> its settings, counts, per-seed metrics and their summary (mean and standard error)."""
    methods: dict[str, dict] = {}
    for name, figures in experiments.summarise(rows, "method", [*METRICS, "s_per_step"]).items():
        mine = [r for r in rows if r["method"] == name]
        first = mine[0]
        keep = ("peft", "options", "encoder_lr", "encoder_trainable", "trainable", "total", "steps", "device")
        peaks = [r["peak_mb"] for r in mine if r["peak_mb"] is not None]
        methods[name] = {
            "encoder": encoder,
            **{k: first[k] for k in keep},
            "peak_mb": max(peaks) if peaks else None,
            "summary": figures,
            "seeds": {
                str(r["seed"]): {k: r[k] for k in (*METRICS, "val mIoU", "best epoch", "s_per_step")} for r in mine
            },
        }
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        "--encoder", default=None, help="minilm (default when installed) or random-bert, or a local model folder"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--runs-dir", default="runs/peft_grounding")
    parser.add_argument("--out", type=Path, help="default: results/peft_grounding.json, gpu size: ..._gpu.json")
    parser.add_argument("--from-rows", type=Path, help="summarise the rows.jsonl of an earlier (stopped) invocation")
    args = parser.parse_args()
    out = args.out or DEFAULT_OUT.get(args.size)
    if out is None:
        parser.error(f"--size {args.size} has no default results file: pass --out")
    encoder = args.encoder or ("minilm" if importlib.util.find_spec("all_minilm_l6_v2") else "random-bert")
    size = SIZES[args.size]
    base = [*size["overrides"], "model.prompt_ensemble=false", f"text.encoder={encoder}", "train.threads=1"]
    base += [f"runs_dir={args.runs_dir}", *args.set]

    start = time.perf_counter()
    _load_splits(base, size)
    # Seed-major order: each seed's methods finish before the next seed starts, so a stopped run still has whole seeds.
    tasks = [(name, seed, base) for seed in args.seeds for name in args.methods]
    if args.from_rows:
        rows = [json.loads(line) for line in args.from_rows.read_text().splitlines()]
    else:
        rows_file = Path(args.runs_dir) / "rows.jsonl"
        rows_file.parent.mkdir(parents=True, exist_ok=True)
        rows = experiments.run_parallel(run_one, tasks, args.jobs, _load_splits, (base, size), rows_file)
    methods = collect(rows, encoder)
    seconds = cost(list(methods), base)
    for name, method in methods.items():
        method["cost"] = {"s_per_step": seconds[name], "vs_full": seconds[name] / seconds.get("full", float("nan"))}
    seeds = len({r["seed"] for r in rows})
    print(f"test, mean ± standard error over {seeds} seeds; {rows[0]['steps']} steps each")
    table = experiments.summary_frame({m: r["summary"] for m, r in methods.items()}, METRICS, digits=2)
    table.insert(0, "trainable", [r["trainable"] for r in methods.values()])
    table["s/step side by side"] = [round(r["cost"]["s_per_step"], 3) for r in methods.values()]
    table["time vs full"] = [round(r["cost"]["vs_full"], 2) for r in methods.values()]
    print(table.to_string())
    fields = {
        "size": args.size,
        "overrides": [o for o in base if not o.startswith("runs_dir=")],
        "train_queries": len(_SPLITS.records["train"]),
        "val_queries": len(_SPLITS.records["val"]),
        "test_queries": len(_SPLITS.records["test"]),
        "steps": rows[0]["steps"],
        "seeds": seeds,
        "encoder": encoder,
        "jobs": args.jobs,
        "cost_steps": {"steps": COST_STEPS, "rounds": COST_ROUNDS},
        "methods": methods,
    }
    experiments.write_report(out, "benchmarks/peft_grounding.py", start, fields)


if __name__ == "__main__":
    main()
