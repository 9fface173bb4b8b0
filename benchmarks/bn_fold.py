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

from tvgkit.lessons.vit import measure_fold_speedup
from tvgkit.runtime import pick_device


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--iters", type=int, default=5, help="forward passes per timing")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=192, help="192 is DeiT-Ti's width")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    args = parser.parse_args(argv)
    result = measure_fold_speedup(args.reps, args.batch, args.d_model, args.depth, args.iters, pick_device(args.device))
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
