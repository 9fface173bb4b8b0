"""The T4 path on the CPU: a GPU without native bf16 (Colab's T4, a V100) trains under fp16 autocast with a
GradScaler. No such GPU runs CI, so the decisions and the trainer's scaled step are checked here by simulation:
``torch.cuda.is_bf16_supported`` answers as a T4 does (bf16 only emulated), and a CPU GradScaler stands in for the
CUDA one in the trainer's own step (the same scale / unscale / skip / back-off logic)."""

from __future__ import annotations

import pytest
import torch

from tvgkit import runtime
from tvgkit.grounding import build
from tvgkit.grounding.build import build_run
from tvgkit.grounding.presets import preset
from tvgkit.grounding.splits import load_splits
from tvgkit.grounding.train import train_step


def _gpu(monkeypatch, native_bf16: bool) -> None:
    """``is_bf16_supported`` as on an H200/A100 (native) or a T4/V100 (emulated only)."""
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native_bf16
    )


def test_a_t4_gets_fp16_and_an_h200_bf16(monkeypatch) -> None:
    _gpu(monkeypatch, native_bf16=False)
    assert runtime.amp_dtype() == torch.float16  # emulated bf16 does not count: slow, and no loss scaling
    _gpu(monkeypatch, native_bf16=True)
    assert runtime.amp_dtype() == torch.bfloat16

    def old_torch(*args, **kwargs):  # torch < 2.3: no emulation flag, counts native support only
        if args or kwargs:
            raise TypeError("unexpected keyword argument 'including_emulation'")
        return False

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", old_torch)
    assert runtime.amp_dtype() == torch.float16


@pytest.mark.parametrize(
    ("amp", "native_bf16", "enabled"), [(True, False, True), (True, True, False), (False, False, False)]
)
def test_the_trainer_scales_the_loss_only_under_fp16(monkeypatch, amp, native_bf16, enabled) -> None:
    _gpu(monkeypatch, native_bf16)
    made = []
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: made.append((device, enabled)))
    session = runtime.Session("quick", 0, torch.device("cpu"), amp, 1)
    model = torch.nn.Linear(2, 2)
    opt = preset("tiny").train
    monkeypatch.setattr(build, "param_groups", lambda model, opt: model.parameters())
    build._optimisation(model, opt, 2, session, torch.device("cpu"))
    assert made == [("cuda", enabled)]


@pytest.fixture(scope="module")
def t4_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("t4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        cfg = preset("tiny", ["train.device=cpu", f"runs_dir={root / 'runs'}", "train.warmup_ratio=0"])
        yield cfg, load_splits(cfg.data, progress=False)


def _step_with_scaler(t4_run, overflow: bool):
    """One trainer step with an enabled GradScaler (the CPU one standing in for CUDA's), optionally with one gradient
    overflowing to inf as fp16 gradients do on a T4: (weights before, after, scale after the step)."""
    cfg, splits = t4_run
    run = build_run(cfg, False, splits, None, None)
    try:
        run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, enabled=True)
        if overflow:
            run.params[0].register_hook(lambda grad: torch.full_like(grad, float("inf")))
        before = [p.detach().clone() for p in run.params]
        loss, _, _ = train_step(run, next(iter(run.train_loader)))
        assert torch.isfinite(loss)
        return before, [p.detach() for p in run.params], run.scaler.get_scale()
    finally:
        run.log.close()


def test_a_scaled_step_updates_the_weights_and_keeps_the_scale(t4_run) -> None:
    before, after, scale = _step_with_scaler(t4_run, overflow=False)
    assert all(not torch.equal(a, b) for a, b in zip(before[:1], after[:1], strict=True))
    assert scale == 2.0**16  # no overflow: the scale grows only after growth_interval (2000) good steps


# torch warns that the scheduler stepped before the optimiser, because the scaler skipped the optimiser's step: what a
# T4 user sees when the first fp16 step overflows (harmless: the schedule moves on by one step)
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_an_fp16_overflow_skips_the_step_and_backs_off_without_tripping_the_guard(t4_run) -> None:
    # the scaler skips the optimiser step and halves the scale; the non-finite guard leaves scaled inf gradients
    # alone (by design: with loss scaling they are expected, and the step is skipped anyway)
    before, after, scale = _step_with_scaler(t4_run, overflow=True)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # no weight moved
    assert scale == 2.0**15
