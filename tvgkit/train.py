"""The trainer used by ``tvgkit train``, the notebooks and the benchmark alike.

AdamW, linear warmup then cosine decay (transformers' scheduler), gradient clipping, AMP on CUDA, a tqdm bar,
TensorBoard and JSONL logs, the best checkpoint chosen on the VALIDATION split (never on test), then one final test
evaluation of that checkpoint. Each run writes ``runs/<name>/``: ``config.yaml``, ``metrics.json``, ``best.pt``
(a ``state_dict``; load with ``weights_only=True``), ``tokenizer/``, ``log.jsonl`` and ``events.*``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tvgkit import config as configs
from tvgkit.data.dataset import GroundingDataset, feature_stats, fill_template, loader, split_by_video
from tvgkit.data.records import Record
from tvgkit.data.synthetic import SynthConfig
from tvgkit.diagnostics import NonFiniteError, NonFiniteGuard, audit_eval_loader, audit_optimizers
from tvgkit.model import GroundingModel, ModelConfig, decode_spans, grounding_loss, span_probs
from tvgkit.text import TextConfig


@dataclass
class DataConfig:
    """``synthetic`` renders (or reuses) the kit's dataset; ``files`` reads JSONL annotations + a feature store."""

    dataset: str = "synthetic"
    synth: SynthConfig = field(default_factory=SynthConfig)
    train: str | None = None
    val: str | None = None
    test: str | None = None
    features: str | None = None
    max_clips: int = 64


@dataclass
class OptimConfig:
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    clip_grad: float = 1.0
    select_metric: str = "mIoU"
    query_blind: bool = False
    rdrop_alpha: float = 0.0
    rdrop_kind: str = "mse"
    device: str | None = None
    threads: int | None = None
    log_every: int = 10
    guard: bool = True  # stop at the first NaN/Inf loss or gradient, naming the module (tvgkit.diagnostics)
    audit: bool = True  # before training: optimiser audit (warns) and evaluation-loader audit (refuses)


@dataclass
class RunConfig:
    name: str = "quick"
    seed: int = 0
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)


#: Named override lists: ``tiny`` for tests; ``notebook`` for notebook 05 (a smaller set and shorter training, so the
#: notebook runs in about a minute with rendering included; one thread, so its printed metrics repeat on any
#: machine of the kind); ``full`` for a GPU or a long CPU run. No preset is the ``tvgkit train`` quick default.
PRESETS: dict[str, list[str]] = {
    "tiny": [
        "data.synth.n_train=12",
        "data.synth.n_val=4",
        "data.synth.n_test=4",
        "data.synth.duration_min=10",
        "data.synth.duration_max=12",
        "data.synth.moment_max=5",
        "text.layers=1",
        "text.hidden=32",
        "text.heads=2",
        "text.intermediate=64",
        "train.epochs=2",
        "train.batch_size=16",
        "train.log_every=1",
        "train.threads=1",
    ],
    "notebook": [
        "data.synth.n_train=400",
        "data.synth.n_val=60",
        "data.synth.n_test=150",
        "text.layers=2",
        "train.epochs=8",
        "train.batch_size=16",
        "train.log_every=5",
        "train.threads=1",
    ],
    "full": [
        "data.synth.n_train=4000",
        "data.synth.n_val=300",
        "data.synth.n_test=600",
        "train.epochs=30",
    ],
}


def preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The config of a named preset (see :data:`PRESETS`), with further ``key=value`` overrides."""
    return configs.load(RunConfig, None, [*PRESETS[name], *overrides])


@dataclass
class Splits:
    records: dict[str, list[Record]]
    features: object  # a FeatureStore (vid -> float32 [clips, dim])


@dataclass
class Result:
    run_dir: Path
    metrics: dict
    history: list[dict]
    train_seconds: float
    samples_per_second: float


def load_splits(cfg: DataConfig, progress: bool = True) -> Splits:
    """Records of train/val/test and the feature store; a missing validation split is cut from train by video."""
    from tvgkit.data.features import open_features
    from tvgkit.data.formats import read_jsonl

    if cfg.dataset == "synthetic":
        from tvgkit.data.synthetic import build

        data = build(cfg.synth, progress=progress)
        paths = {s: data.jsonl(s) for s in ("train", "val", "test")}
        features = data.features
    elif cfg.dataset == "files":
        if not (cfg.train and cfg.test and cfg.features):
            raise ValueError("data.dataset=files needs data.train, data.test and data.features (data.val optional)")
        paths = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
        features = cfg.features
    else:
        raise ValueError(f"data.dataset must be 'synthetic' or 'files', got {cfg.dataset!r}")
    records = {s: read_jsonl(p)[0] for s, p in paths.items() if p}
    if "val" not in records:
        records["train"], records["val"] = split_by_video(records["train"], [0.9, 0.1])
    return Splits(records, open_features(features))


def build_model(cfg: RunConfig, train_records: list[Record], feature_dim: int, tokenizer_dir: Path | None = None):
    """(model, tokenizer): the text encoder (PEFT-wrapped as configured) inside the grounding model."""
    from tvgkit.text import load_text_encoder

    sentences = [r.query for r in train_records] + [fill_template(t, "") for t in cfg.model.templates]
    tokenizer, encoder = load_text_encoder(cfg.text, sentences, tokenizer_dir)
    if cfg.text.peft != "full":
        from tvgkit import peft  # the peft library itself is imported only by the methods that need it

        encoder = peft.apply(encoder, cfg.text.peft, **cfg.text.peft_options)
    model = GroundingModel(cfg.model, encoder, feature_dim, tokenizer.mask_token_id, cfg.data.max_clips)
    return model, tokenizer


def _forward(model: GroundingModel, batch: dict, template: int) -> dict[str, torch.Tensor]:
    return model(
        batch["video"], batch["video_mask"], batch["input_ids"][:, template], batch["attention_mask"][:, template]
    )


@torch.no_grad()
def predict(model: GroundingModel, data_loader, device: torch.device, ensemble: bool, autocast=None) -> np.ndarray:
    """Normalised top-1 spans [N, 2] in loader order; with ``ensemble`` the templates' outputs are averaged."""
    model.eval()
    out_spans = []
    for batch in data_loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        templates = range(batch["input_ids"].shape[1]) if ensemble else [0]
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            outs = [_forward(model, batch, t) for t in templates]
        if model.cfg.head == "span":
            probs = [span_probs(o) for o in outs]
            ps = torch.stack([p[0] for p in probs]).mean(0)
            pe = torch.stack([p[1] for p in probs]).mean(0)
            spans = decode_spans(ps, pe, batch["video_mask"].sum(1))[0][:, 0]
        else:
            spans = torch.stack([o["span"] for o in outs]).mean(0)
        out_spans.append(spans.float().cpu())
    return torch.cat(out_spans).numpy()


def evaluate_records(spans: np.ndarray, records: list[Record]) -> dict[str, float]:
    """Metrics of normalised spans against the records' windows (in seconds)."""
    from tvgkit.metrics import evaluate

    durations = np.array([r.duration for r in records])
    return evaluate(spans * durations[:, None], [list(r.windows) for r in records])


def _unique_dir(root: Path, name: str) -> Path:
    path, k = root / name, 2
    while path.exists():
        path, k = root / f"{name}-{k}", k + 1
    return path


def train(cfg: RunConfig, progress: bool = True, splits: Splits | None = None) -> Result:
    """Train, select on validation, test once; returns the run folder, test metrics and the logged history."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from tvgkit.runtime import setup

    session = setup(seed=cfg.seed, threads=cfg.train.threads, device=cfg.train.device, verbose=False)
    device = session.device
    splits = splits or load_splits(cfg.data, progress=progress)
    opt = cfg.train
    model, tokenizer = build_model(cfg, splits.records["train"], splits.features.dim)
    datasets = {
        s: GroundingDataset(
            recs, splits.features, tokenizer, cfg.model.templates, cfg.data.max_clips, query_blind=opt.query_blind
        )
        for s, recs in splits.records.items()
    }
    model.set_feature_stats(*feature_stats(datasets["train"]))
    model.to(device)
    pad = tokenizer.pad_token_id
    train_loader = loader(datasets["train"], opt.batch_size, train=True, pad_id=pad, seed=cfg.seed)
    eval_loaders = {s: loader(d, 256, train=False, pad_id=pad) for s, d in datasets.items() if s != "train"}

    run_dir = _unique_dir(Path(cfg.runs_dir), cfg.name)
    run_dir.mkdir(parents=True)
    cfg.name = run_dir.name
    configs.save(cfg, run_dir / "config.yaml")
    tokenizer.save_pretrained(str(run_dir / "tokenizer"))

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=opt.lr
    )
    total = opt.epochs * len(train_loader)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(opt.warmup_ratio * total), total)
    scaler = torch.amp.GradScaler("cuda", enabled=session.amp and not torch.cuda.is_bf16_supported())

    writer = SummaryWriter(str(run_dir))
    history: list[dict] = []
    log = (run_dir / "log.jsonl").open("w")

    def record(entry: dict) -> None:
        history.append(entry)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        for key, value in entry.items():
            if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                writer.add_scalar(f"{entry.get('split', 'train')}/{key}", value, entry["step"])

    # --- diagnostics (issue 8): audits before the first step; a guard that keeps the last good weights ---
    if opt.audit:
        audit_optimizers(model, [optimizer])
        for eval_loader in eval_loaders.values():
            audit_eval_loader(eval_loader)

    def stop_on_non_finite(error: NonFiniteError) -> None:
        torch.save(model.state_dict(), run_dir / "last_good.pt")  # the guard raises before the optimiser step
        record({"step": step, "split": "stopped", "error": f"{error} Last good weights: {run_dir / 'last_good.pt'}"})
        writer.close()
        log.close()

    guard = NonFiniteGuard(model, on_error=stop_on_non_finite) if opt.guard else None
    # --- end diagnostics ---

    best, step, seen, train_time = -1.0, 0, 0, 0.0
    bar = tqdm(total=total, desc=f"train {cfg.name}", unit="step", disable=not progress)
    for epoch in range(opt.epochs):
        model.train()
        start = time.perf_counter()
        for batch in train_loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            if guard:
                guard.start(step)
            with session.autocast():
                loss, term = _loss(model, batch, opt)
            if guard:
                guard.check_loss(loss)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if guard:
                if not scaler.is_enabled():  # fp16 loss scaling makes and skips inf gradients on purpose
                    guard.check_gradients()
                guard.stop()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, opt.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            if cfg.text.peft == "adalora":
                from tvgkit.peft import step_hook

                step_hook(model.encoder, step)
            scheduler.step()
            step += 1
            seen += len(batch["span"])
            bar.update()
            if step % opt.log_every == 0 or step == total:
                entry = {"step": step, "epoch": epoch, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]}
                entry["seconds"] = round(train_time + time.perf_counter() - start, 2)
                entry["grad_norm"] = float(grad_norm)
                if term is not None:
                    entry["rdrop_term"] = term.item()
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
        train_time += time.perf_counter() - start
        val = evaluate_records(
            predict(model, eval_loaders["val"], device, cfg.model.prompt_ensemble, session.autocast),
            splits.records["val"],
        )
        record({"step": step, "epoch": epoch, "split": "val", **val})
        if val[opt.select_metric] > best:
            best = val[opt.select_metric]
            torch.save(model.state_dict(), run_dir / "best.pt")
    bar.close()
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True, map_location=device))
    test = evaluate_records(
        predict(model, eval_loaders["test"], device, cfg.model.prompt_ensemble, session.autocast),
        splits.records["test"],
    )
    record({"step": step, "epoch": opt.epochs - 1, "split": "test", **test})
    writer.close()
    log.close()
    val_best = max((h for h in history if h.get("split") == "val"), key=lambda h: h[opt.select_metric])
    metrics = {
        "test": test,
        "val_best": {k: v for k, v in val_best.items() if k != "split"},
        "train_seconds": round(train_time, 2),
        "samples_per_second": round(seen / max(train_time, 1e-9), 1),
        "steps": step,
        "n_train": len(datasets["train"]),
        "n_test": len(datasets["test"]),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return Result(run_dir, metrics, history, train_time, metrics["samples_per_second"])


def blind_baselines(cfg: RunConfig, splits: Splits | None = None, progress: bool = False) -> dict[str, dict]:
    """Test metrics of the video-blind priors and of the query-blind model (``cfg`` trained with emptied queries)."""
    from dataclasses import replace

    from tvgkit.baselines import run_blind_baselines

    splits = splits or load_splits(cfg.data, progress=progress)
    results = run_blind_baselines(splits.records["train"], splits.records["test"], seed=cfg.seed)
    blind = replace(cfg, name=f"{cfg.name}-query-blind", train=replace(cfg.train, query_blind=True))
    results["query_blind_model"] = train(blind, progress=progress, splits=splits).metrics["test"]
    return results


def _loss(model: GroundingModel, batch: dict, opt: OptimConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The task loss, plus R-Drop's consistency term when ``rdrop_alpha > 0`` (two dropout passes, one batch)."""
    giou = model.cfg.giou_weight
    if opt.rdrop_alpha <= 0:
        loss = grounding_loss(_forward(model, batch, 0), batch["span"], batch["video_mask"], giou)
        return loss + _peft_penalty(model), None
    from tvgkit.rdrop import doubled_forward, rdrop_loss

    ids, attn = batch["input_ids"][:, 0], batch["attention_mask"][:, 0]
    out1, out2 = doubled_forward(model, batch["video"], batch["video_mask"], ids, attn)
    task = sum(grounding_loss(o, batch["span"], batch["video_mask"], giou) for o in (out1, out2)) / 2
    if "span" in out1:
        term = rdrop_loss(out1["span"], out2["span"], opt.rdrop_kind)
    else:
        term = rdrop_loss(out1["start_logits"], out2["start_logits"], "kl") + rdrop_loss(
            out1["end_logits"], out2["end_logits"], "kl"
        )
    return task + opt.rdrop_alpha * term + _peft_penalty(model), term


def _peft_penalty(model: GroundingModel) -> torch.Tensor | float:
    """AdaLoRA's orthogonality regulariser (0 for every other method)."""
    if "Peft" not in type(model.encoder).__name__:
        return 0.0
    from tvgkit.peft import extra_loss

    return extra_loss(model.encoder)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GroundingModel, object, RunConfig]:
    """(model with its best weights, tokenizer, config) of a finished run."""
    run_dir = Path(run_dir)
    if not (run_dir / "best.pt").exists():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no best.pt)")
    cfg = configs.load(RunConfig, run_dir / "config.yaml")
    state = torch.load(run_dir / "best.pt", weights_only=True, map_location=device)
    model, tokenizer = build_model(cfg, [], state["feat_mean"].numel(), tokenizer_dir=run_dir / "tokenizer")
    model.load_state_dict(state)
    return model.to(device).eval(), tokenizer, cfg


def predict_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> tuple[list[Record], np.ndarray]:
    """A run's best checkpoint on ``split``: its records and predicted windows in seconds [N, 2].

    ``ensemble=None`` keeps the run's own prompt-ensemble setting.
    """
    model, tokenizer, cfg = load_run(run_dir)
    splits = splits or load_splits(cfg.data, progress=False)
    if split not in splits.records:
        raise ValueError(f"split {split!r} not in {sorted(splits.records)}")
    records = splits.records[split]
    ds = GroundingDataset(
        records, splits.features, tokenizer, cfg.model.templates, cfg.data.max_clips, query_blind=cfg.train.query_blind
    )
    use = cfg.model.prompt_ensemble if ensemble is None else ensemble
    spans = predict(model, loader(ds, 256, train=False, pad_id=tokenizer.pad_token_id), torch.device("cpu"), use)
    return records, spans * np.array([r.duration for r in records])[:, None]


def evaluate_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> dict[str, float]:
    """Re-evaluate a run's best checkpoint on ``split`` (same data; ``ensemble=None`` keeps the run's setting)."""
    from tvgkit.metrics import evaluate

    records, spans = predict_run(run_dir, split, ensemble, splits)
    return evaluate(spans, [list(r.windows) for r in records])
