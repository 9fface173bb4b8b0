"""Time per training step: no R-Drop vs R-Drop by the doubled batch (one call) vs R-Drop by two separate calls.

The three variants run interleaved (round-robin) in one process, so load from other processes hits them alike; each
repetition times a block of steps, and the table reports medians over repetitions. Same model, data and optimiser
for all three. Last line: one JSON object with the three times (ms/step) and the ratios.

    PYTHONPATH=. python benchmarks/rdrop.py [--reps 7] [--steps 10] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tvgkit.lessons.sentiment_task import SentimentSpec, TinyTransformerClassifier, make_sentiment_data, rdrop_step
from tvgkit.runtime import seed_everything

VARIANTS = {"none": (0.0, "doubled"), "doubled": (1.0, "doubled"), "two_pass": (1.0, "two_pass")}


def time_steps(model, opt, x, y, alpha: float, mode: str, steps: int) -> float:
    """Seconds per optimiser step (forward, backward, update) averaged over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = rdrop_step(model, x, y, alpha, mode)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(0)
    spec = SentimentSpec()
    x, y = make_sentiment_data(args.batch_size, seed=0, spec=spec)
    model = TinyTransformerClassifier(
        spec.vocab_size, spec.length, d_model=args.d_model, n_layers=args.layers, d_ff=2 * args.d_model
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for alpha, mode in VARIANTS.values():  # warm-up: allocator, kernels
        time_steps(model, opt, x, y, alpha, mode, 2)
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.reps):
        for name, (alpha, mode) in VARIANTS.items():
            samples[name].append(time_steps(model, opt, x, y, alpha, mode, args.steps))
    ms = {name: 1000 * statistics.median(v) for name, v in samples.items()}
    spread = {name: 1000 * (max(v) - min(v)) for name, v in samples.items()}

    print(
        f"R-Drop step time | batch {args.batch_size} x {spec.length} tokens, d_model {args.d_model}, "
        f"{args.layers} layers, {args.threads} threads, median of {args.reps} x {args.steps} steps"
    )
    print(f"{'variant':<12} {'ms/step':>9} {'range':>9} {'x no R-Drop':>12}")
    for name in VARIANTS:
        print(f"{name:<12} {ms[name]:>9.2f} {spread[name]:>9.2f} {ms[name] / ms['none']:>12.2f}")
    print(
        json.dumps(
            {
                "none_ms": round(ms["none"], 3),
                "doubled_ms": round(ms["doubled"], 3),
                "two_pass_ms": round(ms["two_pass"], 3),
                "doubled_over_none": round(ms["doubled"] / ms["none"], 3),
                "two_pass_over_none": round(ms["two_pass"] / ms["none"], 3),
                "two_pass_over_doubled": round(ms["two_pass"] / ms["doubled"], 3),
                "batch_size": args.batch_size,
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
