"""Everything a run trains with, built in one pass: data, model, loaders, optimiser, run folder, log, guard.

The order of the calls is part of the behaviour: the random number streams are drawn in this order (the model's
initial weights, the loader's generator), so a resumed run and an uninterrupted one, or two processes under
``torchrun``, agree only if every run builds in the same order. :func:`build_run` is that order, once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tvgkit import config as configs
from tvgkit.data.records import Record
from tvgkit.errors import InputError
from tvgkit.grounding import distributed
from tvgkit.grounding.dataset import Batches, GroundingDataset, feature_stats, fill_template, loader
from tvgkit.grounding.model import GroundingModel
from tvgkit.grounding.objective import replay
from tvgkit.grounding.presets import OptimConfig, RunConfig, check_run_name
from tvgkit.grounding.resume import keep_last_good, restore_last
from tvgkit.grounding.runlog import RunLog
from tvgkit.grounding.splits import Splits, feature_backbone, load_splits
from tvgkit.grounding.vocabulary import save_vocabulary
from tvgkit.lessons.diagnostics import NonFiniteDetector, audit_eval_loader, audit_optimizers
from tvgkit.runtime import Session


@dataclass
class Run:
    """One run's moving parts, and the counters the loop advances.

    Every counter (step, epoch, batches of the epoch done, best validation value, time, samples seen, the loader's
    random state where the epoch starts) goes into ``last.pt``, so a run can stop between any two optimiser steps and
    continue as if it had not.
    """

    cfg: RunConfig
    world: distributed.World
    session: Session
    device: torch.device
    progress: bool
    splits: Splits
    model: GroundingModel
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper: what the forward pass runs
    train_loader: DataLoader
    eval_loaders: dict[str, DataLoader]
    n_train: int
    run_dir: Path
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    total: int
    log: RunLog
    loader_rng: torch.Tensor  # the train loader generator's state where the epoch starts
    guard: NonFiniteDetector | None = None
    guard_every: int = 1  # read the guard's flag every N steps (and at logged steps): 1 on a CPU, log_every on a GPU
    step: int = 0
    epoch: int = 0
    batch: int = 0
    best: float = -1.0
    seen: int = 0
    train_time: float = 0.0
    rng: dict | None = None  # random states to restore right before the first step
    probe: dict[str, float] = field(default_factory=dict)  # diagnostics of the last logged step (see step_probe)

    @property
    def opt(self) -> OptimConfig:
        return self.cfg.train


def build_run(cfg: RunConfig, progress: bool, splits: Splits | None, run_dir: Path | None, state: dict | None) -> Run:
    """A run ready for its first step (or, with ``state`` from ``last.pt``, for the step after the checkpoint)."""
    from tvgkit.runtime import setup

    opt, world = cfg.train, distributed.current()
    if state is not None and state["world"] != world.size:
        raise InputError(f"{run_dir}: the run trained with {state['world']} processes; resume it with as many")
    progress = progress and world.main
    # N processes on a CPU share its cores; left alone, each would take them all and they would thrash.
    threads = opt.threads or (max(1, _cores() // world.size) if world.size > 1 else None)
    session = setup(seed=cfg.seed, threads=threads, device=distributed.choose_device(opt.device), verbose=False)
    device = distributed.device_for(session.device, world)
    with distributed.main_first():  # rank 0 renders the dataset and trains the vocabulary; the others reuse them
        splits = splits or load_splits(cfg.data, progress=progress)
        cfg.data.backbone = feature_backbone(cfg.data, splits.features)
        model, tokenizer = build_model(
            cfg, splits.records["train"], splits.features.dim, run_dir / "tokenizer" if run_dir else None
        )
    datasets = {
        s: GroundingDataset(recs, splits.features, tokenizer, cfg.model.templates, cfg.data.max_clips, opt.query_blind)
        for s, recs in splits.records.items()
    }
    model.set_feature_stats(*feature_stats(datasets["train"]))
    model.to(device)
    train_loader, eval_loaders = _loaders(datasets, opt.batch_size, tokenizer.pad_token_id, cfg.seed, world, device)
    net = _parallel(model, device, world, cfg.train, train_loader.dataset)
    if run_dir is None:
        run_dir = _new_run_dir(cfg, tokenizer, world)
        if world.main:  # predict names the query words a run never saw
            save_vocabulary((r.query for r in splits.records["train"]), run_dir)
    optimizer, scheduler, scaler, total = _optimisation(model, opt, len(train_loader), session, device)
    run = Run(
        cfg=cfg, world=world, session=session, device=device, progress=progress, splits=splits, model=model, net=net,
        train_loader=train_loader, eval_loaders=eval_loaders, n_train=len(datasets["train"]), run_dir=run_dir,
        params=[p for p in model.parameters() if p.requires_grad], optimizer=optimizer, scheduler=scheduler,
        scaler=scaler, total=total, log=RunLog(run_dir, world.main, state),
        loader_rng=train_loader.generator.get_state(),
    )

    # diagnostics (issue 8): audits before the first step; a guard that keeps the last good weights
    if opt.audit:
        audit_optimizers(model, [optimizer])
        for eval_loader in eval_loaders.values():
            audit_eval_loader(eval_loader)
    if opt.guard:
        _guard(run)
    if state is not None:
        restore_last(run, state)
    return run


def _guard(run: Run) -> None:
    """The non-finite guard (:class:`~tvgkit.lessons.diagnostics.NonFiniteDetector`): checked every step on a CPU,
    where reading a flag costs nothing; on a GPU only at logged steps, with the fused AdamW skipping its update on
    the device from the first bad step on (``found_inf``), so that the weights the replay starts from, and
    ``last_good.pt``, are those before that step. Under fp16 loss scaling the scaler owns ``found_inf``: it skips
    the bad step itself, and the weights kept are those when the flag is read."""
    fp16 = run.scaler.is_enabled()
    diagnose = partial(replay, run.model, run.opt, run.session.autocast, not fp16)  # called with (batch, guard)
    run.guard = NonFiniteDetector(run.model, diagnose, partial(keep_last_good, run), run.device)
    if _fused(run.device):
        run.guard_every = run.opt.log_every
        if not fp16:
            run.optimizer.found_inf = run.guard.bad


def _fused(device: torch.device) -> bool:
    """PyTorch's fused AdamW (one kernel for all parameters, and ``found_inf``) on CUDA; on a CPU the foreach
    implementation, which computes exactly what the default per-parameter loop computes (every stored notebook output
    was made with that), fused AdamW differing in the last bits."""
    return device.type == "cuda"


def _parallel(
    model: GroundingModel,
    device: torch.device,
    world: distributed.World,
    opt: OptimConfig,
    train_data: Batches,
) -> torch.nn.Module:
    """What the forward pass runs: the model itself, or under torchrun its DistributedDataParallel wrapper.

    DDP is told to search for unused parameters only when a step really leaves some without a gradient: the search
    walks the autograd graph on every step (and warns when it finds nothing). Every rank probes the same first
    training samples, so all ranks agree.
    """
    if world.size == 1:
        return model
    with torch.random.fork_rng(devices=[]):  # the batch draws its templates: the run's random stream stays as it was
        batch = train_data.__getitems__(list(range(min(2, len(train_data)))))
    unused = unused_parameters(model, batch, opt)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, ids, find_unused_parameters=bool(unused))


def unused_parameters(model: GroundingModel, batch: dict, opt: OptimConfig) -> list[str]:
    """Names of the trainable parameters that a training step on ``batch`` leaves without a gradient.

    Only the configured head exists, so with the kit's random BERT there are none; a pretrained encoder loaded with
    ``AutoModel`` carries a pooler the model never reads (trained under full fine-tuning or BitFit). One forward and
    backward pass tells, under a forked random state so that the run's random streams stay as they were; the
    gradients are cleared again.
    """
    from tvgkit.grounding.objective import training_loss

    cuda = [batch["video"].device] if batch["video"].device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        training_loss(model, batch, opt)[0].backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.probe.clear()
    return unused


def _loaders(
    datasets: dict[str, GroundingDataset],
    batch_size: int,
    pad: int,
    seed: int,
    world: distributed.World,
    device: torch.device,
) -> tuple[DataLoader, dict[str, DataLoader]]:
    """The shuffled training loader and one ordered loader per evaluation split, each rank's share of them, with
    the data on the training device."""
    rank, replicas = world.rank, world.size
    train_loader = loader(datasets["train"], batch_size, True, pad, seed, rank, replicas, device)
    eval_loaders = {
        s: loader(d, 256, False, pad, rank=rank, replicas=replicas, device=device)
        for s, d in datasets.items()
        if s != "train"
    }
    return train_loader, eval_loaders


def _optimisation(
    model: GroundingModel, opt: OptimConfig, steps_per_epoch: int, session: Session, device: torch.device
):
    """(AdamW, linear warmup then cosine decay, the fp16 gradient scaler (off unless fp16 autocast), total steps)."""
    from transformers import get_cosine_schedule_with_warmup

    from tvgkit.runtime import amp_dtype

    # One kernel per operation for all parameters (foreach; bit-identical to the per-parameter loop that is the CPU
    # default, measured) or, on CUDA, one kernel for everything (fused, which also skips on the guard's flag).
    fused = _fused(device)
    optimizer = torch.optim.AdamW(param_groups(model, opt), lr=opt.lr, fused=fused or None, foreach=not fused or None)
    total = opt.epochs * steps_per_epoch
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(opt.warmup_ratio * total), total)
    scaler = torch.amp.GradScaler("cuda", enabled=session.amp and amp_dtype() == torch.float16)
    return optimizer, scheduler, scaler, total


def build_model(cfg: RunConfig, train_records: list[Record], feature_dim: int, tokenizer_dir: Path | None = None):
    """(model, tokenizer): the text encoder (PEFT-wrapped as configured) inside the grounding model."""
    from tvgkit.grounding.text import FrozenTextFeatures, load_text_encoder, random_bert

    sentences = [r.query for r in train_records] + [fill_template(t, "") for t in cfg.model.templates]
    tokenizer, encoder = load_text_encoder(cfg.text, sentences, tokenizer_dir)
    text = None
    if cfg.text.two_stream:
        if cfg.text.encoder == "random-bert" or cfg.text.peft != "full":
            raise configs.ConfigError("text.two_stream needs a pretrained text.encoder and text.peft=full")
        text = FrozenTextFeatures(encoder, cfg.text.hidden, tokenizer.pad_token_id)
        encoder = random_bert(cfg.text, tokenizer)
        # Never read: the fusion encoder gets the projected text features as input vectors. A one-row table instead
        # of a vocabulary-sized one (MiniLM: 30,522 x hidden) that would count as parameters and never train.
        encoder.set_input_embeddings(torch.nn.Embedding(1, cfg.text.hidden).requires_grad_(False))
    elif cfg.text.peft != "full":
        from tvgkit.lessons import peft  # the peft library itself is imported only by the methods that need it

        encoder = peft.apply(encoder, cfg.text.peft, **cfg.text.peft_options)
    model = GroundingModel(cfg.model, encoder, feature_dim, tokenizer.mask_token_id, cfg.data.max_clips, text)
    return model, tokenizer


def param_groups(model: GroundingModel, opt: OptimConfig) -> list[dict]:
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


def _unique_dir(root: Path, name: str) -> Path:
    path, k = root / check_run_name(name), 2
    while path.exists():
        path, k = root / f"{name}-{k}", k + 1
    return path


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
