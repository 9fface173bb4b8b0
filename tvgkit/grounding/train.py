"""The trainer used by ``tvgkit train``, the notebooks and the benchmark alike.

AdamW, linear warmup then cosine decay (transformers' scheduler), gradient clipping, AMP on CUDA, a tqdm bar,
TensorBoard and JSONL logs, the best checkpoint chosen on the VALIDATION split (never on test), then one final test
evaluation of that checkpoint. Each run writes ``runs/<name>/``: ``config.yaml``, ``metrics.json``, ``best.pt``
(a ``state_dict``; load with ``weights_only=True``), ``last.pt`` (everything needed to resume, see
:mod:`tvgkit.checkpoint`), ``tokenizer/``, ``log.jsonl`` and ``events.*``. ``train(resume=RUN_DIR)`` continues an
interrupted run; under ``torchrun`` the same code trains with DistributedDataParallel (:mod:`tvgkit.distributed`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tvgkit import checkpoint, distributed
from tvgkit import config as configs
from tvgkit.data.dataset import GroundingDataset, feature_stats, fill_template, loader, split_by_video
from tvgkit.data.records import Record
from tvgkit.data.synthetic import SynthConfig
from tvgkit.diagnostics import NonFiniteError, NonFiniteGuard, audit_eval_loader, audit_optimizers
from tvgkit.errors import InputError
from tvgkit.model import GroundingModel, ModelConfig, decode, loss_terms
from tvgkit.text import TextConfig
from tvgkit.vocabulary import save_vocabulary


@dataclass
class DataConfig:
    """``synthetic`` renders (or reuses) the kit's dataset; ``files`` reads annotations + a feature store.

    With ``files``, ``train``/``val``/``test`` are annotation files in any supported format (``.jsonl``, Charades-STA
    ``.txt`` with ``durations``, ActivityNet or TACoS ``.json``) and ``features`` an HDF5 file or a .npy/.npz folder.
    Before a run starts, every annotated video must have features, all ``feature_dim`` wide when that is set;
    ``skip_missing_features`` drops (and counts) the queries of videos without features instead of refusing.
    """

    dataset: str = "synthetic"
    synth: SynthConfig = field(default_factory=SynthConfig)
    train: str | None = None
    val: str | None = None
    test: str | None = None
    features: str | None = None
    durations: str | None = None
    feature_dim: int | None = None
    skip_missing_features: bool = False
    max_clips: int = 64
    # The network the features come from ("blobs", "efficientnet-lite0"): filled in from the features (synthetic:
    # synth.backbone; files: the HDF5 attribute tvgkit extract writes) and saved in config.yaml, so that predict can
    # refuse a video's features from another backbone. A value set here must match the features'.
    backbone: str | None = None


@dataclass
class OptimConfig:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    encoder_lr: float | None = None  # the text encoder's rate (e.g. 5e-5 for a pretrained one); None: ``lr``
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
    checkpoint_every: int = 0  # also rewrite last.pt every N optimiser steps (0: at the end of every epoch only)
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


#: Named override lists: ``tiny`` for tests; ``notebook`` for notebook 05 (half the videos, a 2-layer encoder and
#: four epochs, so that the notebook trains two models in about two minutes with rendering included; one thread,
#: so its printed metrics repeat on any machine of the kind); ``full`` for a GPU or a long CPU run. No preset is the
#: ``tvgkit train`` quick default (3000 videos, 5 epochs).
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
        "train.batch_size=20",  # 38 training queries: two steps per epoch
        "train.log_every=1",
        "train.threads=1",
    ],
    "notebook": [
        "data.synth.n_train=1500",
        "data.synth.n_val=100",
        "data.synth.n_test=200",
        "text.layers=2",
        "train.epochs=4",
        # 560 steps: at 2e-3 test R1@0.5 65.8 vs 55.5 at 1e-3 (query-blind twin: about 40 either way), seed 0
        "train.lr=2e-3",
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
    """Records of train/val/test and the feature store; a missing validation split is cut from train by video.

    Every check of the data happens here, before a run folder exists (see :func:`tvgkit.data.features.check_coverage`).
    """
    from tvgkit.data.features import check_coverage, open_features
    from tvgkit.data.formats import read_annotations

    if cfg.dataset == "synthetic":
        from tvgkit.data.synthetic import build

        data = build(cfg.synth, progress=progress)
        paths = {s: data.jsonl(s) for s in ("train", "val", "test")}
        features = data.features
    elif cfg.dataset == "files":
        if not (cfg.train and cfg.test and cfg.features):
            raise configs.ConfigError(
                "data.dataset=files needs data.train, data.test and data.features (data.val optional)"
            )
        paths = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
        features = cfg.features
    else:
        raise configs.ConfigError(f"data.dataset must be 'synthetic' or 'files', got {cfg.dataset!r}")
    say = distributed.current().main  # under torchrun, rank 0 speaks for all
    records = {}
    for split, path in ((s, p) for s, p in paths.items() if p):
        records[split], report = read_annotations(path, cfg.durations)
        if cfg.dataset == "files" and say:  # one's own annotations: show what the clean-up repaired or dropped
            print(report.summary())
    store = open_features(features)
    records, coverage = check_coverage(store, records, cfg.feature_dim, cfg.skip_missing_features)
    if coverage.n_skipped and say:
        print(coverage)
    if "val" not in records:
        records["train"], records["val"] = split_by_video(records["train"], [0.9, 0.1])
        if not (records["train"] and records["val"]):
            raise configs.ConfigError("data.val: too few training videos to cut a validation split; give data.val")
    return Splits(records, store)


def feature_backbone(cfg: DataConfig, store) -> str | None:
    """The backbone of the run's features (None: the files do not say); refuses one that contradicts
    ``data.backbone``."""
    found = cfg.synth.backbone if cfg.dataset == "synthetic" else store.backbone
    if cfg.backbone is not None and found is not None and found != cfg.backbone:
        raise configs.ConfigError(f"data.backbone is {cfg.backbone!r} but {store.path} was extracted with {found!r}")
    return found or cfg.backbone


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
        spans = decode(outs, batch["video_mask"])[0][:, 0]
        out_spans.append(spans.float().cpu())
    # A rank's shard of a set smaller than the number of processes can be empty.
    return torch.cat(out_spans).numpy() if out_spans else np.zeros((0, 2), np.float32)


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


def train(
    cfg: RunConfig | None = None,
    progress: bool = True,
    splits: Splits | None = None,
    resume: str | Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Result:
    """Train, select on validation, test once; returns the run folder, test metrics and the logged history.

    ``last.pt`` (everything needed to continue: weights, optimiser, scheduler, scaler, random states, counters) is
    rewritten atomically after every epoch and every ``train.checkpoint_every`` steps. ``resume=RUN_DIR`` continues
    an interrupted run from it with the run's own ``config.yaml`` (pass no ``cfg``); on CPU the final metrics and
    weights equal those of the uninterrupted run. Ctrl-C (or SIGTERM) stops at the next step boundary, saves
    ``last.pt`` and raises :class:`tvgkit.checkpoint.Interrupted`. ``on_step(step, epoch)`` runs after every
    optimiser step. Under ``torchrun`` each process trains its share of every epoch (DistributedDataParallel;
    ``train.batch_size`` is per process) and only rank 0 writes files.
    """
    state = None
    if resume is not None:
        if cfg is not None:
            raise ValueError("train(resume=RUN_DIR) continues the run with its own config.yaml: pass no config")
        cfg, state = _resume_point(Path(resume))
    elif cfg is None:
        raise ValueError("train() needs a config, or resume=RUN_DIR")
    if cfg.train.rdrop_alpha > 0 and cfg.text.encoder == "random-bert" and cfg.text.dropout == 0:
        # Without dropout both passes are identical: the R-Drop term would be 0 and the run plain training.
        raise configs.ConfigError("train.rdrop_alpha > 0 needs dropout: set text.dropout (e.g. 0.1)")
    trainer = _Trainer(cfg, progress, splits, Path(resume) if resume is not None else None, state)
    return trainer.run(on_step)


def _resume_point(run_dir: Path) -> tuple[RunConfig, dict]:
    """The config and ``last.pt`` of an unfinished run (a finished one has nothing left to do)."""
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    if (run_dir / "metrics.json").exists():
        raise InputError(f"{run_dir}: the run has finished (metrics.json exists); nothing to resume")
    if not (run_dir / "last.pt").exists():
        raise FileNotFoundError(f"{run_dir}: no last.pt to resume from (it is written at the end of every epoch)")
    return configs.load(RunConfig, run_dir / "config.yaml"), checkpoint.load(run_dir / "last.pt")


def _new_run_dir(cfg: RunConfig, tokenizer, world: distributed.World) -> Path:
    """Rank 0 makes ``runs/<name>[-k]/`` with the config and tokenizer; every rank gets that same path."""
    path = None
    if world.main:
        path = _unique_dir(Path(cfg.runs_dir), cfg.name)
        path.mkdir(parents=True)
        cfg.name = path.name
        configs.save(cfg, path / "config.yaml")
        tokenizer.save_pretrained(str(path / "tokenizer"))
    path = Path(distributed.broadcast(str(path) if world.main else None))
    cfg.name = path.name
    return path


class _RunLog:
    """``log.jsonl`` and TensorBoard events (rank 0 writes them); ``history`` (every rank keeps it) for the metrics.

    On resume the log is cut back to its length at the checkpoint, so lines written after it by a run that then
    crashed are not repeated; TensorBoard hides those steps itself (``purge_step``).
    """

    def __init__(self, run_dir: Path, write: bool, state: dict | None) -> None:
        self.history: list[dict] = list(state["history"]) if state else []
        self.path = run_dir / "log.jsonl"
        self.write = write
        if write:
            from torch.utils.tensorboard import SummaryWriter

            if state:
                os.truncate(self.path, state["log_bytes"])
            self.file = self.path.open("a")
            self.writer = SummaryWriter(str(run_dir), purge_step=state["step"] + 1 if state else None)

    def record(self, entry: dict) -> None:
        """A history entry: kept, written to log.jsonl and, for numbers, to TensorBoard."""
        self.history.append(entry)
        self.note(entry)
        if self.write:
            for key, value in entry.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{entry.get('split', 'train')}/{key}", value, entry["step"])

    def note(self, entry: dict) -> None:
        """A line in log.jsonl only (interruptions and resumptions are events, not history)."""
        if self.write:
            self.file.write(json.dumps(entry) + "\n")
            self.file.flush()

    def size(self) -> int:
        return self.path.stat().st_size if self.write else 0

    def close(self) -> None:
        """Close the files (again is harmless)."""
        if self.write:
            self.writer.close()
            self.file.close()


class _Trainer:
    """One run's moving parts; :func:`train` builds it and calls :meth:`run`.

    Every counter that :meth:`run` advances (step, epoch, batches of the epoch done, best validation value, time,
    samples seen) lives here and goes into ``last.pt``, so a run can stop between any two optimiser steps and
    continue as if it had not.
    """

    def __init__(self, cfg: RunConfig, progress: bool, splits: Splits | None, run_dir: Path | None, state: dict | None):
        from transformers import get_cosine_schedule_with_warmup

        from tvgkit.runtime import amp_dtype, setup

        self.cfg, self.opt, self.world = cfg, cfg.train, distributed.current()
        if state is not None and state["world"] != self.world.size:
            raise InputError(f"{run_dir}: the run trained with {state['world']} processes; resume it with as many")
        self.progress = progress and self.world.main
        # N processes on a CPU share its cores; left alone, each would take them all and they would thrash.
        threads = self.opt.threads or (max(1, _cores() // self.world.size) if self.world.size > 1 else None)
        self.session = setup(seed=cfg.seed, threads=threads, device=self.opt.device, verbose=False)
        self.device = distributed.device_for(self.session.device, self.world)
        with distributed.main_first():  # rank 0 renders the dataset and trains the vocabulary; the others reuse them
            self.splits = splits or load_splits(cfg.data, progress=self.progress)
            cfg.data.backbone = feature_backbone(cfg.data, self.splits.features)
            self.model, tokenizer = build_model(
                cfg, self.splits.records["train"], self.splits.features.dim, run_dir / "tokenizer" if run_dir else None
            )
        datasets = {
            s: GroundingDataset(
                recs, self.splits.features, tokenizer, cfg.model.templates, cfg.data.max_clips, self.opt.query_blind
            )
            for s, recs in self.splits.records.items()
        }
        self.n_train = len(datasets["train"])
        self.model.set_feature_stats(*feature_stats(datasets["train"]))
        self.model.to(self.device)
        self.net = self.model
        if self.world.size > 1:
            # Unused parameters are normal here: the head not chosen, frozen encoder layers under some PEFT methods.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, ids, find_unused_parameters=True)
        pad, rank, replicas = tokenizer.pad_token_id, self.world.rank, self.world.size
        self.train_loader = loader(datasets["train"], self.opt.batch_size, True, pad, cfg.seed, rank, replicas)
        self.eval_loaders = {
            s: loader(d, 256, False, pad, rank=rank, replicas=replicas) for s, d in datasets.items() if s != "train"
        }
        self.run_dir = run_dir or _new_run_dir(cfg, tokenizer, self.world)
        if run_dir is None and self.world.main:  # predict names the query words a run never saw
            save_vocabulary((r.query for r in self.splits.records["train"]), self.run_dir)

        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, self.opt), lr=self.opt.lr)
        self.total = self.opt.epochs * len(self.train_loader)
        warmup = math.ceil(self.opt.warmup_ratio * self.total)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, self.total)
        fp16 = self.session.amp and amp_dtype() == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

        self.step, self.epoch, self.batch, self.best, self.seen, self.train_time = 0, 0, 0, -1.0, 0, 0.0
        self.loader_rng = self.train_loader.generator.get_state()  # the generator's state where the epoch starts
        self.rng: dict | None = None  # random states to restore right before the first step
        self.log = _RunLog(self.run_dir, self.world.main, state)
        self.probe: dict[str, float] = {}  # diagnostics of the last logged step (see _probe)

        # --- diagnostics (issue 8): audits before the first step; a guard that keeps the last good weights ---
        if self.opt.audit:
            audit_optimizers(self.model, [self.optimizer])
            for eval_loader in self.eval_loaders.values():
                audit_eval_loader(eval_loader)
        self.guard = NonFiniteGuard(self.model, on_error=self._stop_on_non_finite) if self.opt.guard else None
        if state is not None:
            self._restore(state)

    # --- checkpoints ---

    def _save_checkpoint(self) -> None:
        """Rewrite ``last.pt`` atomically (every rank contributes its random states; rank 0 writes)."""
        rngs = distributed.all_gather(checkpoint.rng_state())
        if not self.world.main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs,
            "loader_rng": self.loader_rng,
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "best": self.best,
            "seen": self.seen,
            "train_time": self.train_time,
            "history": self.log.history,
            "log_bytes": self.log.size(),
            "world": self.world.size,
        }
        checkpoint.atomic_save(state, self.run_dir / "last.pt")

    def _restore(self, state: dict) -> None:
        if self.cfg.text.peft == "adalora":
            warnings.warn(
                "AdaLoRA keeps its importance scores outside the state_dict: the resumed run starts them afresh "
                "and will not match an uninterrupted one exactly",
                stacklevel=3,
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when the run was saved without fp16 loss scaling (CPU, bf16)
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch, self.best = state["step"], state["epoch"], state["batch"], state["best"]
        self.seen, self.train_time = state["seen"], state["train_time"]
        self.loader_rng, self.rng = state["loader_rng"], state["rng"][self.world.rank]

    def _interrupt(self) -> None:
        """Save ``last.pt`` where the run stands, say so in the log, and raise :class:`checkpoint.Interrupted`."""
        self.log.note({"step": self.step, "epoch": self.epoch, "split": "interrupted"})
        self._save_checkpoint()
        raise checkpoint.Interrupted(self.run_dir, self.step)

    def _stop_on_non_finite(self, error: NonFiniteError) -> None:
        if self.world.main:  # the guard raises before the optimiser step: these weights are still finite
            checkpoint.atomic_save(self.model.state_dict(), self.run_dir / "last_good.pt")
        message = f"{error} Last good weights: {self.run_dir / 'last_good.pt'}"
        self.log.record({"step": self.step, "split": "stopped", "error": message})

    # --- the loop ---

    def run(self, on_step: Callable[[int, int], None] | None) -> Result:
        """Epochs of steps, validation and ``last.pt`` after each, then the test; logs closed on any way out."""
        from tqdm.auto import tqdm

        if self.rng is not None:
            checkpoint.set_rng_state(self.rng)
            self.log.note({"step": self.step, "epoch": self.epoch, "split": "resumed", "batch": self.batch})
        bar = tqdm(
            total=self.total, initial=self.step, desc=f"train {self.cfg.name}", unit="step", disable=not self.progress
        )
        try:
            with checkpoint.deferred_interrupt() as stop_requested:
                while self.epoch < self.opt.epochs:
                    self._train_epoch(bar, on_step, stop_requested)
                    self._validate()
                    self.epoch, self.batch = self.epoch + 1, 0
                    self.loader_rng = self.train_loader.generator.get_state()
                    if distributed.any_rank(stop_requested()):
                        self._interrupt()
                    self._save_checkpoint()
            return self._finish()
        finally:
            bar.close()
            self.log.close()

    def _train_epoch(self, bar, on_step: Callable[[int, int], None] | None, stop_requested: Callable[[], bool]) -> None:
        """The rest of epoch ``self.epoch`` from batch ``self.batch`` (0 unless resumed mid-epoch)."""
        self.train_loader.generator.set_state(self.loader_rng)
        sampler = self.train_loader.sampler
        sampler.set_epoch(self.epoch)
        sampler.skip = self.batch * self.opt.batch_size
        self.net.train()
        tick = time.perf_counter()
        for batch in self.train_loader:
            loss, term, grad_norm = self._step(batch)
            self.step, self.batch = self.step + 1, self.batch + 1
            self.seen += len(batch["span"]) * self.world.size
            self.train_time += time.perf_counter() - tick
            bar.update()
            if self.step % self.opt.log_every == 0 or self.step == self.total:
                entry = {"step": self.step, "epoch": self.epoch, "loss": loss.item()}
                entry["lr"] = self.scheduler.get_last_lr()[0]
                entry["seconds"] = round(self.train_time, 2)
                entry["grad_norm"] = float(grad_norm)
                if term is not None:
                    entry["rdrop_term"] = term.item()
                self.log.record({**entry, **self.probe})
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
            if on_step is not None:
                on_step(self.step, self.epoch)
            if distributed.any_rank(stop_requested()):
                self._interrupt()
            if self.opt.checkpoint_every and self.step % self.opt.checkpoint_every == 0:
                self._save_checkpoint()
            tick = time.perf_counter()

    def _step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One optimiser step; returns the loss, the R-Drop term (or None) and the gradient norm before clipping."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        guard = self.guard
        if guard:
            guard.start(self.step)
        with self.session.autocast():
            loss, term, terms, out = _loss(self.model, batch, self.opt, self.net)
        if guard:
            guard.check_loss(loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if guard:
            if not self.scaler.is_enabled():  # fp16 loss scaling makes and skips inf gradients on purpose
                guard.check_gradients()
            guard.stop()
        if (self.step + 1) % self.opt.log_every == 0 or self.step + 1 == self.total:
            self.probe = _probe(self.model, batch, terms, out)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.opt.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.cfg.text.peft == "adalora":
            from tvgkit.peft import step_hook

            step_hook(self.model.encoder, self.step)
        self.scheduler.step()
        return loss, term, grad_norm

    def _predict(self, split: str) -> np.ndarray:
        """Normalised spans of every query of ``split`` in dataset order (each rank predicts its piece)."""
        spans = predict(
            self.model, self.eval_loaders[split], self.device, self.cfg.model.prompt_ensemble, self.session.autocast
        )
        return distributed.gather_rows(spans, len(self.splits.records[split]))

    def _validate(self) -> None:
        val = evaluate_records(self._predict("val"), self.splits.records["val"])
        self.log.record({"step": self.step, "epoch": self.epoch, "split": "val", **val})
        if val[self.opt.select_metric] > self.best:
            self.best = val[self.opt.select_metric]
            if self.world.main:
                checkpoint.atomic_save(self.model.state_dict(), self.run_dir / "best.pt")

    def _finish(self) -> Result:
        """Test the best checkpoint once, write ``metrics.json``."""
        distributed.barrier()  # rank 0 has written best.pt
        best = torch.load(self.run_dir / "best.pt", weights_only=True, map_location=self.device)
        self.model.load_state_dict(best)
        test_spans = self._predict("test")
        test = evaluate_records(test_spans, self.splits.records["test"])
        self.log.record({"step": self.step, "epoch": self.opt.epochs - 1, "split": "test", **test})
        select = self.opt.select_metric
        val_best = max((h for h in self.log.history if h.get("split") == "val"), key=lambda h: h[select])
        metrics = {
            "test": test,
            "val_best": {k: v for k, v in val_best.items() if k != "split"},
            "train_seconds": round(self.train_time, 2),
            "samples_per_second": round(self.seen / max(self.train_time, 1e-9), 1),
            "steps": self.step,
            "n_train": self.n_train,
            "n_test": len(test_spans),
            "processes": self.world.size,
        }
        if self.world.main:
            (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return Result(self.run_dir, metrics, self.log.history, self.train_time, metrics["samples_per_second"])


@torch.no_grad()
def _probe(model: GroundingModel, batch: dict, terms: dict[str, torch.Tensor], out: dict) -> dict[str, float]:
    """What a logged step shows besides the loss: each term, the gradient norm of each part of the model, and how
    the batch's predictions spread.

    A head stuck at the blind prior shows as ``pred_centre_std`` far below ``target_centre_std`` (every query gets
    nearly the same span) while the loss has stopped falling.
    """
    from tvgkit.metrics import iou_array

    entry = {f"loss_{k}": float(v) for k, v in terms.items()}
    for name, part in model.named_children():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        if grads:
            entry[f"grad_{name}"] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
    if "slot_grad_norm" in model.probe:
        entry["grad_mask_slots"] = float(model.probe.pop("slot_grad_norm"))
    spans = decode([{k: v.detach().float() for k, v in out.items()}], batch["video_mask"])[0][:, 0]
    target = batch["span"]
    entry["pred_centre_std"] = float(spans.mean(1).std())
    entry["target_centre_std"] = float(target.mean(1).std())
    entry["pred_width_mean"] = float((spans[:, 1] - spans[:, 0]).mean())
    entry["batch_mIoU"] = float(iou_array(spans.cpu().numpy(), target.cpu().numpy()).mean() * 100)
    return {k: round(v, 5) for k, v in entry.items()}


def _param_groups(model: GroundingModel, opt: OptimConfig) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms; the encoder at ``encoder_lr`` when set.

    A pretrained encoder wants a small rate while the new parts (video side, gate, head) need a large one; a random
    encoder trains best at the common rate.
    """
    encoder = {id(p) for p in model.encoder.parameters()}
    groups = []
    for in_encoder in (True, False):
        lr = opt.encoder_lr if in_encoder and opt.encoder_lr is not None else opt.lr
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in encoder) == in_encoder]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "weight_decay": opt.weight_decay if decay else 0.0})
    return groups


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def blind_baselines(cfg: RunConfig, splits: Splits | None = None, progress: bool = False) -> dict[str, dict]:
    """Test metrics of the video-blind priors and of the query-blind model (``cfg`` trained with emptied queries)."""
    from dataclasses import replace

    from tvgkit.baselines import run_blind_baselines

    splits = splits or load_splits(cfg.data, progress=progress)
    results = run_blind_baselines(splits.records["train"], splits.records["test"], seed=cfg.seed)
    blind = replace(cfg, name=f"{cfg.name}-query-blind", train=replace(cfg.train, query_blind=True))
    results["query_blind_model"] = train(blind, progress=progress, splits=splits).metrics["test"]
    return results


def _loss(
    model: GroundingModel, batch: dict, opt: OptimConfig, net: torch.nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(loss, R-Drop term or None, the loss's named terms, the outputs of the first pass).

    The loss is the task loss, plus R-Drop's consistency term times ``rdrop_alpha`` when that is positive (two
    dropout passes, one batch). ``net`` runs the forward pass when it is not ``model`` itself (its DDP wrapper).
    """
    net = net or model
    if opt.rdrop_alpha <= 0:
        out = _forward(net, batch, 0)
        terms = loss_terms(out, batch["span"], batch["video_mask"], model.cfg)
        term = None
    else:
        from tvgkit.rdrop import doubled_forward, rdrop_loss

        ids, attn = batch["input_ids"][:, 0], batch["attention_mask"][:, 0]
        out, out2 = doubled_forward(net, batch["video"], batch["video_mask"], ids, attn)
        halves = [loss_terms(o, batch["span"], batch["video_mask"], model.cfg) for o in (out, out2)]
        terms = {k: (halves[0][k] + halves[1][k]) / 2 for k in halves[0]}
        if "span" in out:
            term = rdrop_loss(out["span"], out2["span"], opt.rdrop_kind)
        else:
            term = rdrop_loss(out["start_logits"], out2["start_logits"], "kl") + rdrop_loss(
                out["end_logits"], out2["end_logits"], "kl"
            )
        terms["rdrop"] = opt.rdrop_alpha * term
    penalty = _peft_penalty(model)
    if isinstance(penalty, torch.Tensor):
        terms["peft_penalty"] = penalty
    return sum(terms.values()), term, terms, out


def _peft_penalty(model: GroundingModel) -> torch.Tensor | float:
    """AdaLoRA's orthogonality regulariser (0 for every other method)."""
    if "Peft" not in type(model.encoder).__name__:
        return 0.0
    from tvgkit.peft import extra_loss

    return extra_loss(model.encoder)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GroundingModel, object, RunConfig]:
    """(model with its best weights, tokenizer, config) of a finished run.

    A damaged ``best.pt``, or one that does not fit the model its ``config.yaml`` describes (an edited config, a
    file copied from another run), is a :class:`tvgkit.checkpoint.CheckpointError` naming the file and the way out;
    torch's own messages name neither.
    """
    run_dir = Path(run_dir)
    best, config_path = run_dir / "best.pt", run_dir / "config.yaml"
    if not best.exists():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no best.pt)")
    cfg = configs.load(RunConfig, config_path)
    way_out = f"; re-train with: tvgkit train {config_path} (last.pt holds the last epoch's weights, under 'model')"
    state = checkpoint.load(best, way_out)
    if not isinstance(state.get("feat_mean"), torch.Tensor):
        raise checkpoint.CheckpointError(f"{best}: not the best.pt of a grounding run (no 'feat_mean'){way_out}")
    try:
        model, tokenizer = build_model(cfg, [], state["feat_mean"].numel(), tokenizer_dir=run_dir / "tokenizer")
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        if isinstance(err, (InputError, configs.ConfigError)):
            raise
        detail = " ".join(str(err).split())[:200]
        raise checkpoint.CheckpointError(
            f"{best} does not fit the model {config_path} describes (was config.yaml edited, or best.pt copied "
            f"from another run?): {detail}"
        ) from None
    return model.to(device).eval(), tokenizer, cfg


def predict_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> tuple[list[Record], np.ndarray]:
    """A run's best checkpoint on ``split``: its records and predicted windows in seconds [N, 2].

    ``ensemble=None`` keeps the run's own prompt-ensemble setting.
    """
    from tvgkit.data.features import FeatureError

    model, tokenizer, cfg = load_run(run_dir)
    splits = splits or load_splits(cfg.data, progress=False)
    if split not in splits.records:
        raise InputError(f"split {split!r} not in {sorted(splits.records)}")
    if splits.features.dim != model.feat_mean.numel():
        raise FeatureError(
            f"{splits.features.path}: features have {splits.features.dim} dims but the checkpoint of {run_dir} "
            f"was trained on {model.feat_mean.numel()}"
        )
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
