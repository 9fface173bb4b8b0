"""Why the pretrained MiniLM grounds worse than notebook 05's small random BERT: the measurements a CPU affords.

At the PEFT benchmark's gpu size (``peft_grounding_gpu.json``: notebook 05's data, 560 steps of batch 32, first
template) the joint model with all-MiniLM-L6-v2 fully fine-tuned reaches test R1@0.5 42.2 ± 2.3, the 2-layer random
BERT 65.9 ± 0.7 (``prompts.json``, same setting). Each variant here trains notebook 05's model at that same size
(``preset("notebook")``, ``model.prompt_ensemble=false``, three seeds, one thread per run) and changes one thing:

- ``random BERT``: notebook 05's model itself (the reference);
- ``random BERT, encoder lr 1e-4`` / ``5e-4``: its encoder at MiniLM's fine-tuning rate and in between, the new
  parts (video side, gate, head) still at 2e-3: how much of the gap is the encoder's small learning rate?
- ``two-stream MiniLM``: the field's usual way of using a pretrained text encoder (``text.two_stream``): MiniLM's
  prompt features computed once, frozen, projected into the same 2-layer random BERT that fuses them with the clips.

The ``gpu`` size adds what a 2-core CPU cannot afford (a MiniLM step of batch 32: 1.9 s here, 18 minutes a run):
the joint MiniLM at 2e-3 and a randomly initialised twin of its architecture (``text.init=random``) at 1e-4 and 2e-3.

Per variant: test R1@0.5 / R1@0.7 / mIoU per seed and as mean ± standard error, the runs' seconds per step, and
seconds per step measured side by side in one process after the runs (``cost``, as in ``peft_grounding.py``; the
joint fully fine-tuned MiniLM is timed there too, so the two-stream model can be compared at equal training time).
The synthetic queries' vocabulary is counted, how MiniLM's WordPiece vocabulary splits it, and how close MiniLM's
features put two queries that name different objects (:func:`swap_similarity`).

    python benchmarks/minilm_gap.py                          # cpu size: 4 variants x 3 seeds, 2 processes
    python benchmarks/minilm_gap.py --size gpu --jobs 6      # on a GPU: the MiniLM-sized variants too
    python benchmarks/minilm_gap.py --variants "two-stream MiniLM" --seeds 0 --steps-cost 1 --out /tmp/g.json

Results go to ``--out`` (default ``benchmarks/results/minilm_gap.json``, read by notebook 03). Measured (cpu size,
3 seeds, test R1@0.5): random BERT 65.9 ± 0.7; its encoder at 1e-4 57.4 ± 0.4, at 5e-4 59.2 ± 0.6; two-stream
MiniLM 57.8 ± 1.6 at 0.11 s per step side by side, the joint fully fine-tuned MiniLM 1.9 s.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from tvgkit import experiments

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "minilm_gap.json"
BASE = ["model.prompt_ensemble=false", "train.threads=1"]
#: variant -> overrides of the notebook preset
VARIANTS: dict[str, list[str]] = {
    "random BERT": [],
    "random BERT, encoder lr 1e-4": ["train.encoder_lr=1e-4"],
    "random BERT, encoder lr 5e-4": ["train.encoder_lr=5e-4"],
    "two-stream MiniLM": ["text.encoder=minilm", "text.two_stream=true"],
    "MiniLM joint, encoder lr 2e-3": ["text.encoder=minilm"],
    "MiniLM-shaped random, encoder lr 1e-4": ["text.encoder=minilm", "text.init=random", "train.encoder_lr=1e-4"],
    "MiniLM-shaped random, encoder lr 2e-3": ["text.encoder=minilm", "text.init=random"],
}
SIZES = {
    "cpu": ["random BERT", "random BERT, encoder lr 1e-4", "random BERT, encoder lr 5e-4", "two-stream MiniLM"],
    "gpu": list(VARIANTS),
}
#: timed side by side only: the joint model with MiniLM fully fine-tuned (peft_grounding.py's "full")
COST_ONLY = {"MiniLM joint, encoder lr 1e-4": ["text.encoder=minilm", "train.encoder_lr=1e-4"]}
METRICS = ("R1@0.5", "R1@0.7", "mIoU")
_SPLITS = None


def _load_splits() -> None:
    global _SPLITS
    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.splits import load_splits

    _SPLITS = load_splits(preset("notebook", BASE).data, progress=False)


def _config(overrides: list[str], seed: int, runs_dir: str):
    from tvgkit.grounding.presets import preset

    name = re.sub(r"[^a-z0-9]+", "_", " ".join(overrides).lower()).strip("_") or "reference"
    return preset("notebook", [*BASE, *overrides, f"seed={seed}", f"runs_dir={runs_dir}", f"name={name}_s{seed}"])


def run_one(variant: str, seed: int, runs_dir: str) -> dict:
    """Train one (variant, seed): test metrics of the validation-chosen checkpoint and seconds per step."""
    from tvgkit.grounding.train import train

    result = train(_config(VARIANTS[variant], seed, runs_dir), progress=False, splits=_SPLITS)
    test, steps = result.metrics["test"], result.metrics["steps"]
    print(f"{variant} seed {seed}: R1@0.5 {test['R1@0.5']:.1f} mIoU {test['mIoU']:.1f}", flush=True)
    return {
        "variant": variant,
        "seed": seed,
        **{m: test[m] for m in METRICS},
        "steps": steps,
        "s_per_step": result.train_seconds / steps,
    }


def cost(variants: dict[str, list[str]], steps: int, runs_dir: str) -> dict[str, float]:
    """Seconds per optimiser step of each variant, side by side in this process: one warm-up step, then the median
    of ``steps`` single steps each, round-robin on each variant's first training batch (slow phases of a shared
    machine hit every variant alike)."""
    from tvgkit.grounding.build import build_run
    from tvgkit.grounding.train import train_step

    runs = {v: build_run(_config(o, 0, runs_dir), False, _SPLITS, None, None) for v, o in variants.items()}
    batches = {v: next(iter(run.train_loader)) for v, run in runs.items()}
    times: dict[str, list[float]] = {v: [] for v in runs}
    for v, run in runs.items():
        train_step(run, batches[v])
    for _ in range(steps):
        for v, run in runs.items():
            tick = time.perf_counter()
            train_step(run, batches[v])
            times[v].append(time.perf_counter() - tick)
    for run in runs.values():
        run.log.close()
    return {v: statistics.median(t) for v, t in times.items()}


def vocabulary(records) -> dict:
    """The queries' word vocabulary, and how MiniLM's WordPiece vocabulary (when installed) splits those words."""
    words = Counter(w for r in records for w in re.findall(r"[a-z]+", r.query.lower()))
    out = {"queries": len(records), "distinct_queries": len({r.query for r in records}), "words": sorted(words)}
    try:
        from transformers import AutoTokenizer

        from tvgkit.grounding.text import minilm_folder

        tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    except ImportError:
        return out
    out["minilm_vocab"] = len(tokenizer)
    out["minilm_single_token_words"] = [w for w in sorted(words) if len(tokenizer.tokenize(w)) == 1]
    out["minilm_similarity"] = swap_similarity(tokenizer, sorted({r.query for r in records}))
    return out


def swap_similarity(tokenizer, queries: list[str]) -> dict[str, dict[str, float]]:
    """How far apart MiniLM's features put two queries that differ in one word: cosine of the mean-pooled last
    hidden states, over every distinct query with a colour word, for its colour swapped for another (a different
    object: the grounding must tell them apart) and its noun swapped for a synonym (the same object).

    Precomputed frozen features help only if the words that decide the answer move the features far.
    """
    import torch

    from tvgkit.data.synthetic import BGR, NOUNS
    from tvgkit.grounding.text import load_pretrained_encoder, minilm_folder

    encoder = load_pretrained_encoder(minilm_folder()).eval()
    synonyms = {w: [o for o in group if o != w] for group in NOUNS.values() for w in group}
    pairs: dict[str, list[tuple[str, str]]] = {"colour swapped": [], "noun synonym": []}
    for q in queries:
        words = q.split()
        for i, w in enumerate(words):
            others = [c for c in BGR if c != w] if w in BGR else synonyms.get(w, [])
            kind = "colour swapped" if w in BGR else "noun synonym"
            pairs[kind] += [(q, " ".join([*words[:i], o, *words[i + 1 :]])) for o in others]

    def embed(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    out = {}
    for kind, found in pairs.items():
        cos = (embed([a for a, _ in found]) * embed([b for _, b in found])).sum(-1)
        out[kind] = {"pairs": len(found), **experiments.mean_se(cos.tolist())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: the size's variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--steps-cost", type=int, default=3, help="timed steps per variant side by side")
    parser.add_argument("--runs-dir", default="runs/minilm_gap")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--from-rows", type=Path, help="summarise the rows.jsonl of an earlier (stopped) invocation")
    args = parser.parse_args()
    variants = args.variants or SIZES[args.size]

    start = time.perf_counter()
    _load_splits()
    if args.from_rows:
        rows = [json.loads(line) for line in args.from_rows.read_text().splitlines()]
    else:
        rows_file = Path(args.runs_dir) / "rows.jsonl"
        rows_file.parent.mkdir(parents=True, exist_ok=True)
        tasks = [(v, seed, args.runs_dir) for seed in args.seeds for v in variants]
        rows = experiments.run_parallel(run_one, tasks, args.jobs, _load_splits, (), rows_file)
    found = experiments.summarise(rows, "variant", [*METRICS, "s_per_step"])
    summary = {v: found[v] for v in VARIANTS if v in found}  # the reference first, whatever finished first
    timed = {v: VARIANTS[v] for v in summary} | COST_ONLY
    seconds = cost(timed, args.steps_cost, args.runs_dir)
    seeds = len({r["seed"] for r in rows})
    print(f"test, mean ± standard error over {seeds} seeds; {rows[0]['steps']} steps each")
    table = experiments.summary_frame(summary, METRICS)
    table["s/step side by side"] = [round(seconds[v], 3) for v in summary]
    print(table.to_string())
    print("side by side, s/step:", {v: round(s, 3) for v, s in seconds.items()})
    fields = {
        "size": args.size,
        "preset": "notebook",
        "overrides": BASE,
        "steps": rows[0]["steps"],
        "seeds": seeds,
        "jobs": args.jobs,
        "variants": {v: VARIANTS[v] for v in summary},
        "summary": summary,
        "per_seed": {
            v: {str(r["seed"]): {m: r[m] for m in (*METRICS, "s_per_step")} for r in rows if r["variant"] == v}
            for v in summary
        },
        "cost": {"steps": args.steps_cost, "s_per_step": seconds, "overrides": timed},
        "vocabulary": vocabulary(_SPLITS.records["train"]),
    }
    experiments.write_report(args.out, "benchmarks/minilm_gap.py", start, fields)


if __name__ == "__main__":
    main()
