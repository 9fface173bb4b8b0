import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

from tvgkit.lessons.diagnostics import (
    DeadUnitDetector,
    GradientFlowMonitor,
    LoaderAuditError,
    NonFiniteDetector,
    NonFiniteError,
    NonFiniteGuard,
    audit_eval_loader,
    audit_optimizers,
    lr_find,
    plot_lr_find,
)


class Log(nn.Module):
    def forward(self, x):
        return torch.log(x)


class Sqrt(nn.Module):
    def forward(self, x):
        return torch.sqrt(x)


def _mlp(head_bias: float | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2), nn.ReLU())
    if head_bias is not None:
        with torch.no_grad():
            model[2].bias.fill_(head_bias)
    return model


# gradient flow ---------------------------------------------------------------------------------------------------


def test_gradient_flow_names_the_module_without_gradient_and_computes_the_update_ratio():
    model = _mlp(head_bias=-100.0)  # the ReLU head is dead: no gradient reaches any layer
    monitor = GradientFlowMonitor(model)
    assert list(monitor.groups) == ["0", "2"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.rand(32, 2)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        monitor.after_backward()
        opt.step()
        monitor.after_step()
    assert monitor.grad_norms["2"] == [0.0, 0.0, 0.0] and monitor.update_ratios["0"] == [0.0, 0.0, 0.0]

    healthy = _mlp()
    monitor = GradientFlowMonitor(healthy)
    opt = torch.optim.SGD(healthy.parameters(), lr=0.1)
    opt.zero_grad()
    nn.functional.mse_loss(healthy(x), y).backward()
    monitor.after_backward()
    grads = [p.grad.clone() for p in healthy[2].parameters()]
    weights = [p.detach().clone() for p in healthy[2].parameters()]
    opt.step()
    monitor.after_step()
    # SGD moves the weights by lr * grad: the ratio is lr * ||g|| / ||w|| exactly
    g = math.sqrt(sum(float(t.pow(2).sum()) for t in grads))
    w = math.sqrt(sum(float(t.pow(2).sum()) for t in weights))
    assert monitor.grad_norms["2"][0] == pytest.approx(g, rel=1e-5)
    assert monitor.update_ratios["2"][0] == pytest.approx(0.1 * g / w, rel=1e-4)
    assert all(v["grad_norm"] > 0 for v in monitor.summary().values())
    fig = monitor.plot()
    assert len(fig.axes) == 2


def test_gradient_flow_groups_by_depth_and_needs_after_backward_first():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), nn.Linear(2, 1))
    assert list(GradientFlowMonitor(model, depth=1).groups) == ["0", "1"]
    assert list(GradientFlowMonitor(model).groups) == ["0.0", "0.1", "1"]
    with pytest.raises(RuntimeError, match="after_backward"):
        GradientFlowMonitor(model).after_step()
    # all-zero weights (LoRA's B at the start): the ratio is undefined, recorded as NaN and left out of the median
    zero = nn.Linear(2, 1)
    nn.init.zeros_(zero.weight)
    nn.init.zeros_(zero.bias)
    monitor = GradientFlowMonitor(zero)
    opt = torch.optim.SGD(zero.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        zero(torch.ones(1, 2)).sum().backward()
        monitor.after_backward()
        opt.step()
        monitor.after_step()
    assert math.isnan(monitor.update_ratios["(model)"][0]) and monitor.update_ratios["(model)"][1] == pytest.approx(1.0)
    assert monitor.summary()["(model)"]["update_ratio"] == pytest.approx(1.0)


# dead units ------------------------------------------------------------------------------------------------------


def test_dead_unit_detector_reports_a_dead_relu_head_and_a_healthy_hidden_layer():
    model = _mlp(head_bias=-100.0)
    with DeadUnitDetector(model) as detector:
        model(torch.randn(64, 4))
        report = detector.report()
    assert set(report) == {"1", "3"}
    assert report["3"] == {"zero_share": 1.0, "dead_units": 2, "units": 2}
    assert 0.2 < report["1"]["zero_share"] < 0.8 and report["1"]["dead_units"] == 0
    # hooks are gone after the block: nothing more is counted
    model(torch.randn(8, 4))
    assert detector.total["3"] == 128

    healthy = _mlp(head_bias=5.0)
    with DeadUnitDetector(healthy, modules={"head": healthy[2]}) as detector:
        healthy(torch.randn(64, 4))
    assert detector.report()["3"]["zero_share"] == 0.0
    assert detector.report()["head"]["dead_units"] == 0


# non-finite guard ------------------------------------------------------------------------------------------------


def _guarded_step(model, guard, x, step=0):
    with guard.watch(step):
        loss = model(x).sum()
        guard.check_loss(loss)
        loss.backward()
        guard.check_gradients()


def test_guard_names_the_module_whose_output_went_nan():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), Log(), nn.Linear(3, 1))
    guard = NonFiniteGuard(model)
    with pytest.raises(NonFiniteError) as info:
        _guarded_step(model, guard, torch.randn(16, 3), step=7)
    err = info.value
    assert (err.step, err.where, err.module_name) == (7, "loss", "2 (Log)")
    assert "step 7" in str(err) and "2 (Log)" in str(err)
    # the hooks are removed after the guarded step
    assert all(not m._forward_hooks for m in model.modules())
    # start/stop (for trainers that cannot wrap a step) and the on_error callback, called before the raise
    seen = []
    guard = NonFiniteGuard(model, on_error=seen.append)
    guard.start(3)
    with pytest.raises(NonFiniteError) as info:
        guard.check_loss(model(torch.randn(4, 3)).sum())
    assert seen == [info.value] and info.value.step == 3 and info.value.module_name == "2 (Log)"
    assert all(not m._forward_hooks for m in model.modules())


def test_guard_stays_quiet_on_a_healthy_model_and_names_gradients_and_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), Log(), nn.Linear(3, 1))  # log of (0, 1): finite
    guard = NonFiniteGuard(model)
    for step in range(3):
        _guarded_step(model, guard, torch.randn(16, 3), step)

    # sqrt(0) is finite but its gradient is infinite: the guard blames the gradient of the layer before it
    model = nn.Sequential(nn.Linear(2, 2), Sqrt(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    with pytest.raises(NonFiniteError) as info:
        _guarded_step(model, NonFiniteGuard(model), torch.randn(4, 2))
    assert info.value.where == "gradient" and info.value.module_name == "parameter 0.weight"

    # NaN in the batch: the first module's output is non-finite because its input was
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with pytest.raises(NonFiniteError) as info:
        _guarded_step(model, NonFiniteGuard(model), torch.tensor([[float("nan"), 1.0]]))
    assert info.value.module_name == "input of 0 (Linear)"


def _detector_steps(batches, fused: bool, check_every: int, replay_batch=None):
    """Train a small model with a NonFiniteDetector, as the trainer does:
    observe after clipping, check every ``check_every`` steps before the optimiser step; with ``fused`` the fused
    AdamW skips its update on the device once the flag is set. Returns (model, weights before each step, detector)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), Log(), nn.Linear(3, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused or None)

    def replay(batch, guard):
        loss = model(replay_batch if replay_batch is not None else batch).sum()
        guard.check_loss(loss)

    seen: list[NonFiniteError] = []
    detector = NonFiniteDetector(model, replay, seen.append)
    if fused:
        opt.found_inf = detector.bad
    before = []
    for step, x in enumerate(batches):
        before.append({k: v.clone() for k, v in model.state_dict().items()})
        opt.zero_grad()
        loss = model(x).sum()
        loss.backward()
        detector.observe(step, x, loss, nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        if (step + 1) % check_every == 0:
            detector.check()
        opt.step()
    return model, before, detector, seen


def test_detector_checked_every_step_stops_before_the_bad_step_and_names_the_module():
    good, bad = torch.rand(8, 3), torch.full((8, 3), float("nan"))  # a corrupt batch
    with pytest.raises(NonFiniteError) as info:
        _detector_steps([good, good, bad, good], fused=False, check_every=1)
    err = info.value
    assert (err.step, err.where, err.module_name) == (2, "loss", "input of 0 (Linear)")
    # healthy steps: nothing raised, the flag stays 0, nothing kept for a replay
    _, _, detector, seen = _detector_steps([good] * 4, fused=False, check_every=1)
    assert float(detector.bad) == 0.0 and seen == [] and detector._pending == []


def test_detector_read_every_n_steps_with_fused_adamw_keeps_the_weights_before_the_bad_step():
    good, bad = torch.rand(8, 3), torch.full((8, 3), float("nan"))
    # the flag is read only at step 4 (the GPU path); steps 2 and 3 are skipped on the device (found_inf)
    with pytest.raises(NonFiniteError) as info:
        _detector_steps([good, good, bad, good, good], fused=True, check_every=5)
    assert info.value.step == 2 and info.value.module_name == "input of 0 (Linear)"
    # re-run up to the check without raising, to look at the weights: frozen from step 2 on
    model, before, detector, seen = _detector_steps([good, good, bad, good], fused=True, check_every=5)
    assert float(detector.bad) == 1.0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[2][key]) and not torch.equal(before[2][key], before[0][key])


def test_detector_says_when_the_replay_does_not_reproduce():
    good, bad = torch.rand(8, 3), torch.full((8, 3), float("nan"))
    with pytest.raises(NonFiniteError) as info:
        _detector_steps([good, bad], fused=False, check_every=1, replay_batch=good)
    assert info.value.step == 1 and info.value.module_name is None and "not reproduced" in str(info.value)


# optimiser audit -------------------------------------------------------------------------------------------------


def test_optimizer_audit_finds_shared_orphan_and_frozen_parameters():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 1))
    model[2].weight.requires_grad_(False)
    a = torch.optim.Adam([model[0].weight, model[0].bias, model[2].weight], lr=0.01)
    b = torch.optim.Adam([model[0].weight, model[0].bias], lr=0.01)
    with pytest.warns(UserWarning) as record:
        findings = audit_optimizers(model, [a, b])
    messages = [str(w.message) for w in record]
    assert len(messages) == 3 and "more than one optimiser" in messages[0] and "in no optimiser" in messages[1]
    by_kind = {f.kind: f.items for f in findings}
    assert by_kind == {
        "shared": ("0.weight", "0.bias"),
        "orphan": ("1.weight", "1.bias", "2.bias"),
        "frozen": ("2.weight",),
    }


def test_optimizer_audit_is_quiet_on_one_optimizer_over_the_trainable_parameters():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert audit_optimizers(model, [opt]) == []


# evaluation-loader audit -----------------------------------------------------------------------------------------


def _data(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32))


def test_loader_audit_refuses_shuffling_and_dropping_loaders():
    with pytest.raises(LoaderAuditError, match="shuffles"):
        audit_eval_loader(DataLoader(_data(10), batch_size=4, shuffle=True))
    with pytest.raises(LoaderAuditError, match="drops 2 of 10 samples"):
        audit_eval_loader(DataLoader(_data(10), batch_size=4, drop_last=True))
    with pytest.raises(LoaderAuditError, match="drops 4 of 10"):
        audit_eval_loader(DataLoader(_data(10), batch_size=4, sampler=SubsetRandomSampler(range(6))))
    with pytest.warns(UserWarning, match="shuffles.*drops 2 of 10"):
        findings = audit_eval_loader(DataLoader(_data(10), batch_size=4, shuffle=True, drop_last=True), strict=False)
    assert [f.kind for f in findings] == ["shuffles", "drops"]


def test_loader_audit_passes_ordered_complete_loaders_and_keeps_the_rng():
    assert audit_eval_loader(DataLoader(_data(10), batch_size=4)) == []
    assert audit_eval_loader(DataLoader(_data(12), batch_size=4, drop_last=True)) == []  # no remainder: nothing lost
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with pytest.raises(LoaderAuditError):
        audit_eval_loader(DataLoader(_data(10), shuffle=True))
    assert torch.equal(torch.rand(2), expected)


# lr_find ---------------------------------------------------------------------------------------------------------


def test_lr_find_suggests_a_stable_rate_on_least_squares_and_restores_the_weights():
    torch.manual_seed(0)
    x = torch.randn(256, 8) * torch.linspace(0.5, 2.0, 8)
    y = x @ torch.randn(8, 1)
    model = nn.Linear(8, 1, bias=False)
    before = model.weight.detach().clone()
    # SGD on mean squared error diverges above 2 / lambda_max of the Hessian 2 X^T X / n
    lam_max = float(torch.linalg.eigvalsh(2 * x.T @ x / len(x)).max())
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

    def loss_fn(m, batch):
        return nn.functional.mse_loss(m(batch[0]), batch[1])

    def factory(params):
        return torch.optim.SGD(params, lr=1.0)

    result = lr_find(model, loss_fn, loader, factory, start_lr=1e-4, end_lr=10.0, n_steps=80)
    assert torch.equal(model.weight, before)
    assert result.diverged and result.rates[-1] < 10.0
    assert result.rule == "steepest"
    assert 2 / lam_max / 100 < result.suggestion < 2 / lam_max
    assert result.candidates["min/10"] < 2 / lam_max
    assert all(a < b for a, b in zip(result.rates, result.rates[1:], strict=False))
    assert plot_lr_find(result).axes[0].get_xscale() == "log"
