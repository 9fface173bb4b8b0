"""Inference throughput: a LayerNorm ViT vs the same ViT with BatchNorm folded into its linear layers.

The seed claimed about 12% faster inference after folding; Yao et al. 2021 claim about 20%. Both models have the
same size and the same weights' shapes; the folded one simply has no norm operations left in its blocks. The two
are timed side by side (alternating, several repetitions) and the median of the per-repetition ratios is reported.

    python benchmarks/bn_fold.py [--reps 9] [--batch 64] [--d-model 192] [--depth 6] [--device cpu]

Prints a table, then as its last line one JSON object:
``{"ln_images_per_s", "bn_folded_images_per_s", "speedup", "max_abs_diff", "device", ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tvgkit.runtime import pick_device, seed_everything
from tvgkit.vit import ViT, fold_bn


def images_per_s(model: torch.nn.Module, x: torch.Tensor, iters: int) -> float:
    """Images per second over ``iters`` forward passes (synchronising CUDA so the clock sees the work)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model(x)
    sync()
    return iters * x.shape[0] / (time.perf_counter() - start)


@torch.inference_mode()
def measure(
    reps: int, batch: int, d_model: int, depth: int, iters: int, device: torch.device, image_size: int = 32
) -> dict:
    """Build both models, check the folded model against the unfolded one, time them alternately."""
    seed_everything(0)
    size = {"image_size": image_size, "patch_size": 4, "d_model": d_model, "depth": depth}
    size |= {"n_heads": max(1, d_model // 64), "d_ff": 4 * d_model}
    ln = ViT("ln", **size).to(device).eval()
    bn = ViT("bn", **size).to(device).train()
    x = torch.rand(batch, 3, image_size, image_size, device=device)
    for _ in range(3):  # running statistics that are not the identity
        bn(x * 2 - 0.5)
    bn.eval()
    folded = fold_bn(bn)
    max_abs_diff = float((folded(x) - bn(x)).abs().max())
    for model in (ln, folded):  # warm-up
        images_per_s(model, x, 2)
    ln_rates, bn_rates = [], []
    for rep in range(reps):
        order = [(ln, ln_rates), (folded, bn_rates)]
        for model, rates in order if rep % 2 == 0 else order[::-1]:
            rates.append(images_per_s(model, x, iters))
    ratios = [b / a for a, b in zip(ln_rates, bn_rates, strict=True)]
    return {
        "ln_images_per_s": round(statistics.median(ln_rates), 1),
        "bn_folded_images_per_s": round(statistics.median(bn_rates), 1),
        "speedup": round(statistics.median(ratios), 4),
        "speedup_min": round(min(ratios), 4),
        "speedup_max": round(max(ratios), 4),
        "max_abs_diff": max_abs_diff,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "batch": batch,
        "d_model": d_model,
        "depth": depth,
        "tokens": (image_size // 4) ** 2 + 1,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--iters", type=int, default=5, help="forward passes per timing")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=192, help="192 is DeiT-Ti's width")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    args = parser.parse_args(argv)
    result = measure(args.reps, args.batch, args.d_model, args.depth, args.iters, pick_device(args.device))
    print(
        f"ViT d={result['d_model']} depth={result['depth']} tokens={result['tokens']} batch={result['batch']} "
        f"on {result['device']} ({result['threads']} threads), {result['reps']} alternating repetitions"
    )
    print(f"{'model':<22}{'images/s (median)':>20}")
    print(f"{'LayerNorm':<22}{result['ln_images_per_s']:>20.1f}")
    print(f"{'BatchNorm, folded':<22}{result['bn_folded_images_per_s']:>20.1f}")
    print(
        f"speed-up (median of ratios) {result['speedup']:.3f}  [min {result['speedup_min']:.3f}, "
        f"max {result['speedup_max']:.3f}]; max |folded - unfolded| = {result['max_abs_diff']:.2e}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
