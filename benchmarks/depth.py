"""Theorem 1 of Xiong et al. 2020 (arXiv 2002.04745) measured: the last layer's W2 gradient norm against depth.

At initialisation, in the paper's simplified setting (uniform attention, Xavier, ReLU, d x d weights, Gaussian tokens),
the bound on ||dL/dW^{2,L}||_F is O(d sqrt(ln d)) for Post-LN (no depth dependence: log-log slope 0) and
O(d sqrt(ln d / L)) for Pre-LN (slope -0.5). Prints a table per depth and the fitted slopes (DeepNorm for reference);
last line one JSON object. ``--full-attention`` uses softmax attention instead of the simplified setting.

    PYTHONPATH=. python benchmarks/depth.py [--depths 6 12 24 48] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json

import torch

from tvgkit.lessons import depth

EXPECTED = {"post": 0.0, "pre": -0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[6, 12, 24, 48])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--full-attention", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: a second thread only adds sync cost
    config = depth.ProbeConfig(d_model=args.d_model, simplified=not args.full_attention)
    seeds = tuple(range(args.seeds))
    norms = {p: depth.last_w2_gradient_vs_depth(p, args.depths, config, seeds) for p in ("post", "pre", "deepnorm")}
    slopes = {p: depth.loglog_slope(args.depths, v) for p, v in norms.items()}
    setting = "softmax attention" if args.full_attention else "simplified setting (uniform attention)"
    print(f"last-layer W2 expected-gradient norm at init, d={args.d_model}, {len(seeds)} seeds, {setting}")
    print(f"{'depth':>6} {'Post-LN':>10} {'Pre-LN':>10} {'DeepNorm':>10}")
    for i, n in enumerate(args.depths):
        print(f"{n:>6} {norms['post'][i]:>10.4f} {norms['pre'][i]:>10.4f} {norms['deepnorm'][i]:>10.4f}")
    print(f"{'slope':>6} {slopes['post']:>10.3f} {slopes['pre']:>10.3f} {slopes['deepnorm']:>10.3f}")
    print(f"{'expect':>6} {EXPECTED['post']:>10.3f} {EXPECTED['pre']:>10.3f} {'-':>10}")
    print(
        json.dumps(
            {
                "post_ln_slope": round(slopes["post"], 4),
                "pre_ln_slope": round(slopes["pre"], 4),
                "deepnorm_slope": round(slopes["deepnorm"], 4),
                "expected": {"post_ln_slope": 0.0, "pre_ln_slope": -0.5},
                "depths": args.depths,
                "seeds": len(seeds),
                "d_model": args.d_model,
                "simplified": not args.full_attention,
            }
        )
    )


if __name__ == "__main__":
    main()
