"""Random states across devices: a checkpoint written where more GPUs were visible resumes where fewer are."""

from __future__ import annotations

import torch

from tvgkit.grounding import checkpoint


def test_cuda_states_beyond_the_visible_devices_are_ignored(monkeypatch) -> None:
    state = checkpoint.rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8) + i for i in range(3)]  # written with 3 GPUs visible
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(list(states)))
    checkpoint.set_rng_state(state)
    assert len(restored) == 1 and [int(s[0]) for s in restored[0]] == [0, 1]  # torch's own would fail on device 2


def test_cuda_states_are_skipped_without_cuda(monkeypatch) -> None:
    state = checkpoint.rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: (_ for _ in ()).throw(AssertionError))
    checkpoint.set_rng_state(state)  # a checkpoint from a GPU machine resumes on the CPU
