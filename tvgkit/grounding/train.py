"""The trainer used by ``tvgkit train``, the notebooks and the benchmarks alike: the loop, top to bottom.

AdamW, linear warmup then cosine decay (transformers' scheduler), gradient clipping, AMP on CUDA, a tqdm bar,
TensorBoard and JSONL logs, the best checkpoint chosen on the VALIDATION split (never on test), then one final test
evaluation of that checkpoint. Each run writes ``runs/<name>/``: ``config.yaml``, ``metrics.json``, ``best.pt``
(a ``state_dict``; load with ``weights_only=True``), ``last.pt`` (everything needed to resume, see
:mod:`tvgkit.grounding.resume`), ``tokenizer/``, ``log.jsonl`` and ``events.*``. ``train(resume=RUN_DIR)`` continues
an interrupted run; under ``torchrun`` the same code trains with DistributedDataParallel
(:mod:`tvgkit.grounding.distributed`).

What the loop uses lives beside it: the config and presets (:mod:`~tvgkit.grounding.presets`), the data
(:mod:`~tvgkit.grounding.splits`), everything built before the first step (:mod:`~tvgkit.grounding.build`), the loss
(:mod:`~tvgkit.grounding.objective`), ``last.pt`` (:mod:`~tvgkit.grounding.resume`) and the evaluation
(:mod:`~tvgkit.grounding.evaluate`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tvgkit import config as configs
from tvgkit.grounding import checkpoint, distributed
from tvgkit.grounding.build import Run, build_run
from tvgkit.grounding.evaluate import evaluate_records, predict_split
from tvgkit.grounding.objective import on_host, step_probe, training_loss
from tvgkit.grounding.presets import RunConfig
from tvgkit.grounding.resume import resume_point, save_last
from tvgkit.grounding.splits import Splits


@dataclass
class Result:
    run_dir: Path
    metrics: dict
    history: list[dict]
    train_seconds: float
    samples_per_second: float


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
    ``last.pt`` and raises :class:`tvgkit.grounding.checkpoint.Interrupted`. ``on_step(step, epoch)`` runs after every
    optimiser step. Under ``torchrun`` each process trains its share of every epoch (DistributedDataParallel;
    ``train.batch_size`` is per process) and only rank 0 writes files.
    """
    state = None
    if resume is not None:
        if cfg is not None:
            raise ValueError("train(resume=RUN_DIR) continues the run with its own config.yaml: pass no config")
        cfg, state = resume_point(Path(resume))
    elif cfg is None:
        raise ValueError("train() needs a config, or resume=RUN_DIR")
    if cfg.train.rdrop_alpha > 0 and cfg.text.encoder == "random-bert" and cfg.text.dropout == 0:
        # Without dropout both passes are identical: the R-Drop term would be 0 and the run plain training.
        raise configs.ConfigError("train.rdrop_alpha > 0 needs dropout: set text.dropout (e.g. 0.1)")
    run = build_run(cfg, progress, splits, Path(resume) if resume is not None else None, state)
    return loop(run, on_step)


def loop(run: Run, on_step: Callable[[int, int], None] | None = None) -> Result:
    """Epochs of steps, validation and ``last.pt`` after each, then the test; logs closed on any way out."""
    from tqdm.auto import tqdm

    if run.rng is not None:
        checkpoint.set_rng_state(run.rng)
        run.log.note({"step": run.step, "epoch": run.epoch, "split": "resumed", "batch": run.batch})
    bar = tqdm(total=run.total, initial=run.step, desc=f"train {run.cfg.name}", unit="step", disable=not run.progress)
    try:
        with checkpoint.deferred_interrupt() as stop_requested:
            while run.epoch < run.opt.epochs:
                train_epoch(run, bar, on_step, stop_requested)
                validate(run)
                run.epoch, run.batch = run.epoch + 1, 0
                run.loader_rng = run.train_loader.generator.get_state()
                if distributed.any_rank(stop_requested()):
                    interrupt(run)
                save_last(run)
        return finish(run)
    finally:
        bar.close()
        run.log.close()


def train_epoch(run: Run, bar, on_step: Callable[[int, int], None] | None, stop_requested: Callable[[], bool]) -> None:
    """The rest of epoch ``run.epoch`` from batch ``run.batch`` (0 unless resumed mid-epoch)."""
    run.train_loader.generator.set_state(run.loader_rng)
    sampler = run.train_loader.sampler
    sampler.set_epoch(run.epoch)
    sampler.skip = run.batch * run.opt.batch_size
    run.net.train()
    tick = time.perf_counter()
    for batch in run.train_loader:
        loss, term, grad_norm = train_step(run, batch)
        run.step, run.batch = run.step + 1, run.batch + 1
        run.seen += len(batch["span"]) * run.world.size
        run.train_time += time.perf_counter() - tick
        bar.update()
        logged = run.step % run.opt.log_every == 0 or run.step == run.total
        if logged:
            values = {"loss": loss.detach(), "grad_norm": grad_norm, **({} if term is None else {"rdrop_term": term})}
            entry = {"step": run.step, "epoch": run.epoch, **on_host(values)}  # one transfer, not one sync each
            entry["lr"] = run.scheduler.get_last_lr()[0]
            entry["seconds"] = round(run.train_time, 2)
            run.log.record({**entry, **on_host(run.probe, digits=5)})
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if on_step is not None:
            on_step(run.step, run.epoch)
        # Under torchrun, asking the other ranks is an all-reduce (a sync on GPUs): then only at logged steps.
        if (logged or run.world.size == 1) and distributed.any_rank(stop_requested()):
            interrupt(run)
        if run.opt.checkpoint_every and run.step % run.opt.checkpoint_every == 0:
            save_last(run)
        tick = time.perf_counter()


def train_step(run: Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One optimiser step; returns the loss, the R-Drop term (or None) and the gradient norm before clipping.

    Nothing here waits for the device except where the host must know a value: the guard's flag is read every
    step on a CPU (where reading costs nothing) and only at logged steps on a GPU (``Run.guard_every``); the
    logged values are read together by the loop.
    """
    with run.session.autocast():
        loss, term, terms, out = training_loss(run.model, batch, run.opt, run.net)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    logged = (run.step + 1) % run.opt.log_every == 0 or run.step + 1 == run.total
    if logged:
        run.probe = step_probe(run.model, batch, terms, out)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, run.opt.clip_grad)
    if run.guard:  # fp16 loss scaling makes and skips inf gradients on purpose: then only the loss is checked
        run.guard.observe(run.step, batch, loss, None if run.scaler.is_enabled() else grad_norm)
        if logged or (run.step + 1) % run.guard_every == 0:
            run.guard.check()  # before the optimiser step: a bad step is replayed on the weights it started from
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.cfg.text.peft == "adalora":
        from tvgkit.lessons.peft import step_hook

        step_hook(run.model.encoder, run.step)
    run.scheduler.step()
    return loss, term, grad_norm


def validate(run: Run) -> None:
    """Score the validation split; a new best is written to ``best.pt``."""
    val = evaluate_records(predict_split(run, "val"), run.splits.records["val"])
    run.log.record({"step": run.step, "epoch": run.epoch, "split": "val", **val})
    if val[run.opt.select_metric] > run.best:
        run.best = val[run.opt.select_metric]
        if run.world.main:
            checkpoint.atomic_save(run.model.state_dict(), run.run_dir / "best.pt")


def interrupt(run: Run) -> None:
    """Save ``last.pt`` where the run stands, say so in the log, and raise :class:`checkpoint.Interrupted`."""
    run.log.note({"step": run.step, "epoch": run.epoch, "split": "interrupted"})
    save_last(run)
    raise checkpoint.Interrupted(run.run_dir, run.step)


def finish(run: Run) -> Result:
    """Test the best checkpoint once, write ``metrics.json``."""
    distributed.barrier()  # rank 0 has written best.pt
    best = torch.load(run.run_dir / "best.pt", weights_only=True, map_location=run.device)
    run.model.load_state_dict(best)
    test_spans = predict_split(run, "test")
    test = evaluate_records(test_spans, run.splits.records["test"])
    run.log.record({"step": run.step, "epoch": run.opt.epochs - 1, "split": "test", **test})
    select = run.opt.select_metric
    val_best = max((h for h in run.log.history if h.get("split") == "val"), key=lambda h: h[select])
    metrics = {
        "test": test,
        "val_best": {k: v for k, v in val_best.items() if k != "split"},
        "train_seconds": round(run.train_time, 2),
        "samples_per_second": round(run.seen / max(run.train_time, 1e-9), 1),
        "steps": run.step,
        "n_train": run.n_train,
        "n_test": len(test_spans),
        "processes": run.world.size,
    }
    if run.world.main:
        (run.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return Result(run.run_dir, metrics, run.log.history, run.train_time, metrics["samples_per_second"])
