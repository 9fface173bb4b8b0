"""PEFT methods on the synthetic grounding task: which part of the text encoder to train, and what it costs.

Each row trains the grounding model (``tvgkit.train``) with one method applied to its text encoder (the packaged
pretrained all-MiniLM-L6-v2 when installed, else the kit's small random BERT: the ``encoder`` column says which);
the video projection, position embeddings and heads always train. Columns: trainable parameters of the encoder and of
the whole model, test R1@0.5, R1@0.7 and mIoU (the checkpoint chosen on validation), seconds per optimiser step, and
peak memory (CUDA: peak allocated; CPU: growth of the process's peak resident set during the run, read from
``/proc/self/status`` after resetting it through ``/proc/self/clear_refs``).

    python benchmarks/peft_grounding.py                 # quick: a smoke-size run (16 training videos, 1 epoch)
    python benchmarks/peft_grounding.py --size full     # 800 videos, 10 epochs: for a GPU or a free machine

At quick size the accuracy columns say little (a few optimiser steps); the parameter counts, seconds per step and
memory are the informative columns there.
    python benchmarks/peft_grounding.py --methods full lora_qv --out runs/peft_grounding.json

The last line printed is one JSON object keyed by method; the same object is written to ``--out`` (default
``benchmarks/results/peft_grounding.json``) for notebook 03 to read.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

from tvgkit.grounding.build import build_model
from tvgkit.grounding.presets import preset
from tvgkit.grounding.splits import load_splits
from tvgkit.grounding.train import train
from tvgkit.lessons import peft

#: method name -> (tvgkit.peft method, options). AdaLoRA's schedule options are filled in from the run length.
METHODS: dict[str, tuple[str, dict]] = {
    "full": ("full", {}),
    "frozen": ("frozen", {}),
    "lora_qv": ("lora", {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]}),
    "lora_all": ("lora", {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"}),
    "adalora": ("adalora", {"init_r": 12, "target_r": 4, "lora_alpha": 16, "target_modules": ["query", "value"]}),
    "bitfit": ("bitfit", {}),
    "adapter": ("adapter", {"bottleneck": 32}),
    "ptuning_v2": ("prefix", {"num_virtual_tokens": 16}),
}
#: The full-fine-tuning learning rate suits a pretrained encoder; PEFT parameters start at (near) zero updates and
#: conventionally get a larger one (LoRA paper: 4e-4 to 5e-4 for RoBERTa-base; P-Tuning v2: 5e-3 to 1e-2).
LEARNING_RATES = {"full": 1e-4, "frozen": 1e-3, "ptuning_v2": 5e-3}
DEFAULT_LR = 1e-3
SIZES = {
    "quick": [
        "data.synth.n_train=16",
        "data.synth.n_val=8",
        "data.synth.n_test=16",
        "data.max_clips=16",
        "model.prompt_ensemble=false",
        "train.epochs=1",
        "train.batch_size=8",
        "train.log_every=2",
    ],
    "full": [
        "data.synth.n_train=800",
        "data.synth.n_val=100",
        "data.synth.n_test=300",
        "train.epochs=10",
        "train.batch_size=32",
    ],
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "peft_grounding.json"


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


def run(size: str, methods: list[str], encoder: str, seed: int, runs_dir: str, threads: int | None) -> dict[str, dict]:
    base = [*SIZES[size], f"text.encoder={encoder}", f"runs_dir={runs_dir}", f"seed={seed}"]
    if threads:
        base.append(f"train.threads={threads}")
    first = preset("notebook", base)
    splits = load_splits(first.data, progress=False)
    results: dict[str, dict] = {}
    for name in methods:
        method, options = METHODS[name]
        lr = LEARNING_RATES.get(name, DEFAULT_LR)
        cfg = preset("notebook", [*base, f"name=peft_{name}", f"text.peft={method}", f"train.lr={lr}"])
        options = dict(options)
        if method == "adalora":
            steps = cfg.train.epochs * -(-len(splits.records["train"]) // cfg.train.batch_size)
            tinit, tfinal = steps // 10, steps // 5
            options.update(total_step=steps, tinit=tinit, tfinal=tfinal, deltaT=max(1, steps // 20))
        cfg.text.peft_options = options
        torch.manual_seed(seed)
        model, _ = build_model(cfg, splits.records["train"], splits.features.dim)
        trainable, total = peft.count_parameters(model)
        encoder_trainable = peft.count_parameters(model.encoder)[0]
        del model
        device = torch.device(cfg.train.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        baseline = _reset_peak(device)
        start = time.perf_counter()
        result = train(cfg, progress=False, splits=splits)
        wall = time.perf_counter() - start
        test = result.metrics["test"]
        results[name] = {
            "encoder": encoder,
            "peft": method,
            "options": options,
            "lr": lr,
            "encoder_trainable": encoder_trainable,
            "trainable": trainable,
            "total": total,
            "R1@0.5": test["R1@0.5"],
            "R1@0.7": test["R1@0.7"],
            "mIoU": test["mIoU"],
            "s_per_step": result.train_seconds / result.metrics["steps"],
            "steps": result.metrics["steps"],
            "peak_mb": _peak_mb(device, baseline),
            "wall_s": wall,
            "device": device.type,
        }
        print(f"done {name}: mIoU {test['mIoU']:.1f} in {wall:.0f} s", flush=True)
    return results


def table(results: dict[str, dict]) -> str:
    head = f"{'method':<11} {'encoder':<12} {'enc. train':>10} {'all train':>10} {'R1@0.5':>7} {'R1@0.7':>7}"
    head += f" {'mIoU':>6} {'s/step':>7} {'peak MB':>8}"
    lines = [head]
    for name, r in results.items():
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "n/a"
        lines.append(
            f"{name:<11} {r['encoder']:<12} {r['encoder_trainable']:>10,} {r['trainable']:>10,} {r['R1@0.5']:>7.1f}"
            f" {r['R1@0.7']:>7.1f} {r['mIoU']:>6.1f} {r['s_per_step']:>7.3f} {peak:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        "--encoder", default=None, help="minilm (default when installed) or random-bert, or a local model folder"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs-dir", default="runs/peft_grounding")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    encoder = args.encoder or ("minilm" if importlib.util.find_spec("all_minilm_l6_v2") else "random-bert")
    results = run(args.size, args.methods, encoder, args.seed, args.runs_dir, args.threads)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": args.size, "methods": results}, indent=1))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
