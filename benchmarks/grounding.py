"""Benchmark the main job: ``tvgkit train``'s quick default on the synthetic set, next to the best blind baseline.

Prints time to render (cold cache, when ``--cold``), time to train, training samples per second, peak memory, test
R1@0.5 / R1@0.7 / mIoU, and every blind baseline (video-blind priors and the query-blind model); the last line is one
JSON object. ``--set key=value`` overrides the run config (for example ``train.threads=1`` on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cold", action="store_true", help="render into a fresh cache (times rendering too)")
    args = parser.parse_args(argv)
    if args.cold:
        os.environ["TVGKIT_CACHE"] = tempfile.mkdtemp(prefix="tvgkit-bench-")

    from tvgkit import config
    from tvgkit.grounding.baselines import blind_baselines
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.splits import load_splits
    from tvgkit.grounding.train import train

    cfg = config.load(RunConfig, None, ["name=bench", f"runs_dir={tempfile.mkdtemp(prefix='tvgkit-runs-')}", *args.set])
    start = time.perf_counter()
    splits = load_splits(cfg.data, progress=False)
    data_seconds = time.perf_counter() - start
    result = train(cfg, progress=False, splits=splits)
    main_seconds = time.perf_counter() - start
    blind = blind_baselines(cfg, splits=splits)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    test = result.metrics["test"]
    best_name = max(blind, key=lambda name: blind[name]["R1@0.5"])

    print(f"data ({'rendered' if args.cold else 'cache or render'}): {data_seconds:.1f} s")
    print(
        f"train: {result.train_seconds:.1f} s, {result.metrics['steps']} steps, {result.samples_per_second} samples/s"
    )
    print(f"render + train + test (the main job): {main_seconds:.1f} s; peak RSS {peak_rss_mb:.0f} MB")
    print(f"\n{'method':<20}{'R1@0.3':>8}{'R1@0.5':>8}{'R1@0.7':>8}{'mIoU':>8}")
    for name, m in [("trained model", test), *blind.items()]:
        print(f"{name:<20}{m['R1@0.3']:>8.1f}{m['R1@0.5']:>8.1f}{m['R1@0.7']:>8.1f}{m['mIoU']:>8.1f}")
    margin = test["R1@0.5"] - blind[best_name]["R1@0.5"]
    print(f"\nmargin over the best blind baseline ({best_name}): {margin:+.1f} points of R1@0.5")
    summary = {
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(result.train_seconds, 1),
        "main_job_seconds": round(main_seconds, 1),
        "samples_per_second": result.samples_per_second,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "R1@0.5": round(test["R1@0.5"], 2),
        "R1@0.7": round(test["R1@0.7"], 2),
        "mIoU": round(test["mIoU"], 2),
        "blind_best": best_name,
        "blind_best_R1@0.5": round(blind[best_name]["R1@0.5"], 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
