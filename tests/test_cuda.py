"""CUDA-only tests: AMP (bf16, or fp16 with a GradScaler), device placement, checkpoints across devices.

Every test here carries the ``cuda`` marker and is skipped, with the reason "needs a CUDA GPU", where
``torch.cuda.is_available()`` is False. On a GPU: ``python -m pytest -m cuda tests/test_cuda.py`` (or
``python benchmarks/gpu_check.py``, which runs them first). They use the ``tiny`` preset: seconds each.

CUDA runs are not bit-reproducible like the CPU ones (atomics in some kernels, TF32 convolutions, bf16 rounding), so
comparisons across devices use stated tolerances (tests/span_check.py reads a span back to its clip pair the way the
span head's in-clip offsets decode it):
- probabilities, fp32 on both devices: within atol 2e-3, rtol 2e-2;
- spans, fp32 on both: the same clip pair with boundaries within CLIP_TOL of a clip, or at a near-tie a pair scoring
  within 1e-2 of the CPU's best; under autocast (bf16/fp16) within 1e-1.
"""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
from span_check import assert_spans_agree, assert_top_scoring

from tvgkit import runtime
from tvgkit.data import timeline
from tvgkit.grounding import checkpoint, evaluate, objective
from tvgkit.grounding import train as train_module
from tvgkit.grounding.evaluate import evaluate_run, load_run, predict, predict_run
from tvgkit.grounding.model import span_probs
from tvgkit.grounding.presets import preset

CUDA_REASON = "needs a CUDA GPU"
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)]

CLIP_TOL = 0.05  # boundaries of the same clip pair may differ by this much of a clip (offsets are sigmoids: fp32 noise)
EPOCHS = 6  # the tiny preset has 2 steps per epoch: 12 steps, seconds on a GPU, spans less flat than after 4


def _amp_dtype() -> torch.dtype:
    """bf16 only where the GPU has it natively (emulated bf16 counts as fp16, with a GradScaler)."""
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        native = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if native else torch.float16


def _on_cuda(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that are NOT on a CUDA device (empty when all are)."""
    return [name for name, t in tensors.items() if t.device.type != "cuda"]


class _Spy:
    """Keeps the run (its built parts), the device of every batch tensor the model saw, and the dtype of the video
    projection."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.trainers: list = []
        self.batch_devices: set[str] = set()
        self.proj_dtypes: dict[bool, set[torch.dtype]] = {True: set(), False: set()}  # by model.training
        loop, forward = train_module.loop, objective.forward

        def spy_loop(run, on_step):
            self.trainers.append(run)
            self.restored = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            run.model.video_proj.register_forward_hook(lambda m, args, out: self.proj_dtypes[m.training].add(out.dtype))
            return loop(run, on_step)

        def spy_forward(model, batch, template):
            self.batch_devices |= {f"{k}:{v.device.type}" for k, v in batch.items()}
            return forward(model, batch, template)

        mp.setattr(train_module, "loop", spy_loop)
        mp.setattr(objective, "forward", spy_forward)  # training steps
        mp.setattr(evaluate, "forward", spy_forward)  # validation and test

    @property
    def trainer(self):
        return self.trainers[-1]


def _cfg(root, name: str, *overrides: str):
    return preset(
        "tiny", ["train.device=cuda", f"runs_dir={root / 'runs'}", f"name={name}", f"train.epochs={EPOCHS}", *overrides]
    )


def _assert_finite_run(result) -> None:
    test = result.metrics["test"]
    assert {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "R5@0.5", "mAP@avg"} <= set(test)
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in test.values()), test
    losses = [e["loss"] for e in result.history if "loss" in e]
    assert len(losses) == result.metrics["steps"] == 2 * EPOCHS
    assert all(math.isfinite(v) for v in losses), losses


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        yield root


@pytest.fixture(scope="module")
def cuda_run(root):
    """One tiny run on CUDA at the GPU's own AMP dtype; the spy keeps its trainer (model, loaders, scaler)."""
    with pytest.MonkeyPatch.context() as mp:
        spy = _Spy(mp)
        result = train_module.train(_cfg(root, "cuda"), progress=False)
    return result, spy


# --- (a) runtime: device choice and autocast dtype ---


def test_setup_picks_cuda_with_amp_and_autocast_uses_bf16_where_supported(monkeypatch) -> None:
    session = runtime.setup(device="cuda", seed=0, verbose=False)
    assert session.device.type == "cuda" and session.amp
    a = torch.randn(8, 8, device=session.device)
    with session.autocast():
        y = a @ a
    assert y.dtype == _amp_dtype() and y.device.type == "cuda"
    assert runtime.setup(verbose=False).device.type == "cuda"  # no preference: CUDA when present

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with runtime.autocast(session.device):
        assert (a @ a).dtype == torch.float16  # GPUs without bf16 get fp16

    off = runtime.setup(device="cuda", amp=False, verbose=False)
    assert not off.amp
    with off.autocast():
        assert (a @ a).dtype == torch.float32
    cpu = runtime.setup(device="cpu", verbose=False)
    assert not cpu.amp  # AMP is for CUDA only, even on a machine that has a GPU


# --- (b) a tiny run on CUDA: finite, every tensor on the GPU, AMP really on ---


def test_tiny_run_on_cuda_is_finite_and_keeps_every_tensor_on_the_gpu(cuda_run) -> None:
    result, spy = cuda_run
    _assert_finite_run(result)
    trainer = spy.trainer
    assert trainer.device.type == "cuda" and trainer.session.amp
    model = trainer.model
    assert _on_cuda(dict(model.named_parameters())) == []
    assert _on_cuda(dict(model.named_buffers())) == []
    # AdamW keeps its moments beside the weights ("step" is a CPU scalar by design in torch's default AdamW).
    moments = {
        f"{i}.{k}": v for i, s in enumerate(trainer.optimizer.state.values()) for k, v in s.items() if k != "step"
    }
    assert moments and _on_cuda(moments) == []
    assert spy.batch_devices and all(d.endswith(":cuda") for d in spy.batch_devices), spy.batch_devices
    # Autocast was on for training steps and for evaluation, at the GPU's AMP dtype.
    assert spy.proj_dtypes[True] == {_amp_dtype()} and spy.proj_dtypes[False] == {_amp_dtype()}
    # bf16 needs no loss scaling; the scaler is on only where fp16 is used.
    assert trainer.scaler.is_enabled() == (_amp_dtype() == torch.float16)


# --- (c) fp16 forced: GradScaler on, the run still finishes finite ---


def test_fp16_run_enables_the_grad_scaler_and_stays_finite(root, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    spy = _Spy(monkeypatch)
    result = train_module.train(_cfg(root, "fp16"), progress=False)
    _assert_finite_run(result)
    trainer = spy.trainer
    assert trainer.scaler.is_enabled()
    scale = trainer.scaler.get_scale()
    assert math.isfinite(scale) and scale > 0
    assert spy.proj_dtypes[True] == {torch.float16}
    saved = checkpoint.load(result.run_dir / "last.pt")["scaler"]
    assert saved["scale"] == pytest.approx(scale)  # the scaler's state goes into last.pt


# --- (d) checkpoints across devices, and resume on CUDA ---


def test_best_checkpoint_from_cuda_loads_on_cpu_and_predicts_the_same(cuda_run) -> None:
    result, spy = cuda_run
    trainer = spy.trainer
    cpu_model, _, cfg = load_run(result.run_dir, device="cpu")
    assert {t.device.type for t in [*cpu_model.parameters(), *cpu_model.buffers()]} == {"cpu"}
    gpu_model, _, _ = load_run(result.run_dir, device="cuda")
    assert _on_cuda(dict(gpu_model.named_parameters())) == [] and _on_cuda(dict(gpu_model.named_buffers())) == []
    best = torch.load(result.run_dir / "best.pt", weights_only=True, map_location="cpu")
    assert all(torch.equal(cpu_model.state_dict()[k], v) for k, v in best.items())

    records, seconds = predict_run(result.run_dir, "test")  # what evaluate_run scores, on CPU
    loader = trainer.eval_loaders["test"]
    ensemble = cfg.model.prompt_ensemble
    ps, pe, n_valid = _probs(cpu_model, loader, torch.device("cpu"), ensemble)
    clips = timeline.clips_of(records, trainer.splits.features)  # seconds -> fractions of the clips, as decoded

    def on_grid(seconds) -> torch.Tensor:
        return torch.tensor([c.to_grid(s).tolist() for c, s in zip(clips, seconds, strict=True)])

    cpu_spans = on_grid(seconds)
    assert_top_scoring(cpu_spans, ps, pe, n_valid, rtol=1e-5)  # the CPU path itself agrees with our scoring
    # The CUDA run's own test predictions (autocast) agree with the CPU's, within AMP tolerance.
    cuda_spans = on_grid(evaluate.predict_split(trainer, "test").top1)
    assert_spans_agree(cuda_spans, cpu_spans.float(), ps, pe, n_valid, rtol=1e-1, clip_tol=CLIP_TOL)
    again = evaluate_run(result.run_dir, "test")
    assert set(again) == set(result.metrics["test"]) and all(math.isfinite(v) for v in again.values())


def test_last_checkpoint_from_cuda_resumes_on_cuda(root, cuda_run, monkeypatch) -> None:
    reference, _ = cuda_run
    stop_at = 3  # the middle of epoch 1

    def ctrl_c(step: int, epoch: int) -> None:
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(checkpoint.Interrupted):
        train_module.train(_cfg(root, "resume"), progress=False, on_step=ctrl_c)
    run_dir = root / "runs" / "resume"
    state = checkpoint.load(run_dir / "last.pt")  # a CUDA checkpoint reads onto the CPU (weights_only)
    assert (state["step"], state["epoch"], state["batch"]) == (stop_at, 1, 1)
    assert all(t.device.type == "cpu" for t in state["model"].values())
    assert len(state["rng"][0]["cuda"]) == torch.cuda.device_count()  # the CUDA generators' states are saved

    spy = _Spy(monkeypatch)
    resumed = train_module.train(resume=run_dir, progress=False)
    _assert_finite_run(resumed)
    trainer = spy.trainer
    assert all(torch.equal(spy.restored[k].cpu(), v) for k, v in state["model"].items())  # restored exactly
    assert _on_cuda(dict(trainer.model.named_parameters())) == []
    moments = {f"{i}.{k}": v for i, s in enumerate(trainer.optimizer.state.values()) for k, v in s.items()}
    assert _on_cuda({k: v for k, v in moments.items() if not k.endswith(".step")}) == []
    # The same batches in the same order: the losses after the resume follow the uninterrupted run's.
    ours = [(e["step"], e["loss"]) for e in resumed.history if "loss" in e]
    theirs = [(e["step"], e["loss"]) for e in reference.history if "loss" in e]
    assert [s for s, _ in ours] == [s for s, _ in theirs]
    assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], rel=2e-2)


# --- (e) predict on CPU and CUDA with the same weights ---


def test_predict_agrees_between_cpu_and_cuda(cuda_run) -> None:
    result, spy = cuda_run
    loader = spy.trainer.eval_loaders["test"]
    cpu_model, _, cfg = load_run(result.run_dir, device="cpu")
    gpu_model, _, _ = load_run(result.run_dir, device="cuda")
    ensemble = cfg.model.prompt_ensemble
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    ps, pe, n_valid = _probs(cpu_model, loader, cpu, ensemble)
    gps, gpe, _ = _probs(gpu_model, loader, cuda, ensemble)
    # fp32 on both (cuDNN may use TF32 for the convolution): probabilities agree closely.
    torch.testing.assert_close(gps, ps, atol=2e-3, rtol=2e-2)
    torch.testing.assert_close(gpe, pe, atol=2e-3, rtol=2e-2)
    on_cpu = torch.from_numpy(predict(cpu_model, loader, cpu, ensemble))
    on_gpu = torch.from_numpy(predict(gpu_model, loader, cuda, ensemble))
    amp = torch.from_numpy(
        predict(gpu_model, loader, cuda, ensemble, autocast=lambda: runtime.autocast(cuda))
    )
    assert on_cpu.shape == on_gpu.shape == amp.shape == (len(ps), 2)
    assert_spans_agree(on_gpu, on_cpu, ps, pe, n_valid, rtol=1e-2, clip_tol=CLIP_TOL)
    assert_spans_agree(amp, on_cpu, ps, pe, n_valid, rtol=1e-1, clip_tol=CLIP_TOL)


# --- helpers ---


@torch.no_grad()
def _probs(model, loader, device: torch.device, ensemble: bool):
    """Start and end probabilities [N, clips] (fp32, no autocast, on CPU) as ``predict`` averages them; clip counts."""
    model.eval()
    starts, ends, valid = [], [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        templates = range(batch["input_ids"].shape[1]) if ensemble else [0]
        outs = [
            model(batch["video"], batch["video_mask"], batch["input_ids"][:, t], batch["attention_mask"][:, t])
            for t in templates
        ]
        probs = [span_probs(o) for o in outs]
        starts.append(torch.stack([p[0] for p in probs]).mean(0).float().cpu())
        ends.append(torch.stack([p[1] for p in probs]).mean(0).float().cpu())
        valid.append(batch["video_mask"].sum(1).cpu())
    width = max(s.shape[1] for s in starts)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731 (batches pad to their own width)
    return torch.cat([pad(s) for s in starts]), torch.cat([pad(e) for e in ends]), torch.cat(valid)
