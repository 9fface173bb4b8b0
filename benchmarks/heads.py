"""Grounding heads side by side: the span head, the attention regression head and the seeds' MLP regression head.

Each head trains at the same size and budget (``tvgkit train``'s quick default unless ``--set`` says otherwise), on
the same rendered data, and the run's logged learning curves are kept: the loss terms, the spread of the predicted
span centres against the targets', and the gradient norms reaching each part of the model and the ``[MASK]`` slots
(see ``tvgkit.grounding.objective.step_probe``). ``--blind`` adds the blind baselines (video-blind priors and the
query-blind model).

    python benchmarks/heads.py                                   # quick default, seed 0, all three heads, blind bars
    python benchmarks/heads.py --from-run runs/quick                # add a finished run of the same size instead
    python benchmarks/heads.py --heads regression-mlp --tag seeds --set model.query_gate=false \
        --set model.highlight_weight=0                           # the seeds' head in the seeds' setting

Merges into ``--out`` (default ``benchmarks/results/heads.json``, read by notebook 05): runs of other heads or tags
stay, so heads can be run one at a time or in parallel processes (the file is locked while it is rewritten). The
last line printed is one JSON object with this invocation's test metrics.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
from pathlib import Path

from tvgkit import experiments

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "heads.json"
CURVE_KEYS = ("step", "epoch", "loss", "batch_mIoU", "pred_centre_std", "target_centre_std", "pred_width_mean")


def _curve(history: list[dict]) -> list[dict]:
    """The logged training steps (every key the trainer's probe wrote) and the validation points."""
    keep = []
    for h in history:
        if h.get("split") == "val":
            keep.append({k: h[k] for k in ("step", "epoch", "split", "R1@0.5", "R1@0.7", "mIoU")})
        elif "loss" in h:
            keep.append({k: v for k, v in h.items() if k in CURVE_KEYS or k.startswith(("loss_", "grad_"))})
    return keep


def _setting(overrides: list[str]) -> set[str]:
    """The overrides that change what is trained (the thread count changes only the speed)."""
    return {o for o in overrides if not o.startswith("train.threads=")}


def _merge(path: Path, runs: dict[str, dict], blind: dict | None) -> None:
    """Add these runs (and blind baselines) to the JSON at ``path``, under an exclusive lock; seeds accumulate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "tvgkit-heads.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = json.loads(path.read_text()) if path.exists() else {"runs": {}}
        for key, entry in runs.items():
            old = report["runs"].get(key)
            if old is not None and _setting(old["overrides"]) != _setting(entry["overrides"]):
                raise SystemExit(f"{path}: {key!r} ran with {old['overrides']}, not {entry['overrides']}: use --tag")
            seeds = {**(old or {}).get("seeds", {}), **entry["seeds"]}
            report["runs"][key] = {**entry, "seeds": dict(sorted(seeds.items(), key=lambda s: int(s[0])))}
        if blind is not None:
            report["blind"] = blind
        path.write_text(json.dumps(report, indent=1) + "\n")


def _from_run(run_dir: Path, tag: str) -> dict[str, dict]:
    """A finished ``tvgkit train`` run folder as one entry: its head, overrides of the defaults, metrics, curves."""
    from tvgkit import config
    from tvgkit.grounding.presets import RunConfig

    cfg = config.load(RunConfig, run_dir / "config.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    defaults = config.load(RunConfig, None, [])
    default = config.flatten(config.to_dict(defaults))
    overrides = [
        f"{k}={v}"
        for k, v in config.flatten(config.to_dict(cfg)).items()
        if default.get(k) != v and k not in ("name", "runs_dir")
    ]
    key = f"{cfg.model.head} ({tag})" if tag else cfg.model.head
    run = {
        "test": {k: round(v, 2) for k, v in metrics["test"].items()},
        "train_seconds": metrics["train_seconds"],
        "steps": metrics["steps"],
        "curve": _curve(history),
        "machine": experiments.machine(),
    }
    return {
        key: {
            "overrides": overrides,
            "n_train_queries": metrics["n_train"],
            "from_run": str(run_dir),
            "seeds": {str(cfg.seed): run},
        }
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="*", default=["span", "regression", "regression-mlp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--blind", action="store_true", help="also the blind baselines (trains a query-blind model)")
    parser.add_argument("--from-run", type=Path, help="take this finished run folder's curves instead of training")
    parser.add_argument("--tag", default="", help="a suffix for the run's key, for a head run in another setting")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from tvgkit import config
    from tvgkit.grounding.baselines import blind_baselines
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.splits import load_splits
    from tvgkit.grounding.train import train

    runs_dir = f"runs_dir={tempfile.mkdtemp(prefix='tvgkit-heads-')}"
    base = config.load(RunConfig, None, ["name=heads", runs_dir, *args.set])
    splits = load_splits(base.data, progress=False)
    runs: dict[str, dict[str, dict]] = {}
    if args.from_run:
        _merge(args.out, _from_run(args.from_run, args.tag), None)
        return
    for head in args.heads:
        for seed in args.seeds:
            cfg = config.load(
                RunConfig, None, [f"name={head}", runs_dir, *args.set, f"model.head={head}", f"seed={seed}"]
            )
            result = train(cfg, progress=False, splits=splits)
            m = result.metrics
            runs.setdefault(f"{head} ({args.tag})" if args.tag else head, {})[str(seed)] = {
                "test": {k: round(v, 2) for k, v in m["test"].items()},
                "train_seconds": m["train_seconds"],
                "steps": m["steps"],
                "curve": _curve(result.history),
                "machine": experiments.machine(),
            }
            test = m["test"]
            print(
                f"{head:<16} seed {seed}: R1@0.5 {test['R1@0.5']:.1f} R1@0.7 {test['R1@0.7']:.1f} "
                f"mIoU {test['mIoU']:.1f} ({m['steps']} steps, {m['train_seconds']:.0f} s)"
            )
    entry = {"overrides": args.set, "n_train_queries": len(splits.records["train"])}
    entry["command"] = "python benchmarks/heads.py " + " ".join(argv if argv is not None else sys.argv[1:])
    entry["machine"] = experiments.machine()
    blind = None
    if args.blind:
        blind = {n: {k: round(v, 2) for k, v in m.items()} for n, m in blind_baselines(base, splits=splits).items()}
        for name, m in blind.items():
            print(f"{name:<16} blind: R1@0.5 {m['R1@0.5']:.1f} R1@0.7 {m['R1@0.7']:.1f} mIoU {m['mIoU']:.1f}")
    _merge(args.out, {key: {**entry, "seeds": seeds} for key, seeds in runs.items()}, blind)
    print(json.dumps({head: {s: r["test"] for s, r in seeds.items()} for head, seeds in runs.items()}))


if __name__ == "__main__":
    main()
