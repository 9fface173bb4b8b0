"""Multi-process training: evaluation shards cover every query once, the training order is resumable, and a real
two-process ``torchrun`` (gloo, CPU) run scores exactly the test set, as a single-process evaluation does."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tvgkit import config
from tvgkit.errors import InputError
from tvgkit.grounding import distributed
from tvgkit.grounding.dataset import EpochSampler
from tvgkit.grounding.distributed import (
    GPU_BACKEND,
    World,
    backend,
    current,
    fallback_notice,
    gather_rows,
    shard_range,
)
from tvgkit.grounding.evaluate import evaluate_run
from tvgkit.grounding.presets import preset


@pytest.mark.parametrize("n", [0, 1, 7, 14, 15])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_evaluation_shards_are_contiguous_disjoint_and_cover_every_query(n, size) -> None:
    shards = [shard_range(n, r, size) for r in range(size)]
    assert [i for s in shards for i in s] == list(range(n))  # in order, each index exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_one_process_is_its_own_world() -> None:
    assert current() == World(0, 1, 0) and current().main
    rows = np.arange(10.0).reshape(5, 2)
    assert (gather_rows(rows, 5) == rows).all()
    with pytest.raises(RuntimeError, match="5 evaluation rows for its 6 queries"):
        gather_rows(rows, 6)


def test_the_training_order_depends_only_on_seed_and_epoch() -> None:
    data = list(range(10))
    fresh, used = EpochSampler(data, seed=3), EpochSampler(data, seed=3)
    for epoch in range(3):  # a process that already ran epochs 0-2 ...
        used.set_epoch(epoch)
        list(used)
    used.set_epoch(3)
    fresh.set_epoch(3)  # ... and one that starts at epoch 3 (a resumed run) see the same order
    order = list(fresh)
    assert list(used) == order and sorted(order) == data and order != data
    fresh.set_epoch(2)
    assert list(fresh) != order
    fresh.set_epoch(3)
    fresh.skip = 4  # resumed after one batch of 4: the rest of the epoch, nothing loaded twice
    assert list(fresh) == order[4:] and len(fresh) == 6


def test_two_replicas_split_each_epoch() -> None:
    data = list(range(9))
    shards = [EpochSampler(data, seed=0, replicas=2, rank=r) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    a, b = (list(s) for s in shards)
    assert len(a) == len(b) == 5 and set(a) | set(b) == set(data)  # DistributedSampler pads one repeat (training)


def test_torchrun_two_processes_score_exactly_the_test_set(tmp_path) -> None:
    """``torchrun --nproc_per_node 2 -m tvgkit train`` on CPU: one run folder, every test query scored once."""
    cfg = preset("tiny", ["train.device=cpu", f"runs_dir={tmp_path / 'runs'}", "name=ddp", "train.epochs=3"])
    config.save(cfg, tmp_path / "run.yaml")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "TVGKIT_CACHE": str(tmp_path / "cache")}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*cmd, "-m", "tvgkit", "train", str(tmp_path / "run.yaml"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "find_unused_parameters" not in done.stderr  # DDP is not asked to search for parameters that are all used
    assert done.stdout.count("run folder:") == 1  # only rank 0 prints
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # both ranks used rank 0's folder
    run_dir = tmp_path / "runs" / "ddp"
    assert len(list(run_dir.glob("events.*"))) == 1 and not list(run_dir.glob(".*.tmp"))
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log if e.get("split") == "val"] == [0, 1, 2]  # written once, not once per rank
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_test = sum(1 for _ in open(_synthetic_jsonl(tmp_path / "cache", "test")))
    assert metrics["processes"] == 2 and metrics["n_test"] == n_test
    per_rank = -(-metrics["n_train"] // 2)  # each rank trains on half of every epoch
    assert metrics["steps"] == 3 * -(-per_rank // cfg.train.batch_size)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(tmp_path / "cache"))
        single = evaluate_run(run_dir, "test")  # one process, the whole set in one loader
    assert single == pytest.approx(metrics["test"], abs=1e-9)


def _synthetic_jsonl(cache: Path, split: str) -> Path:
    (path,) = cache.glob(f"synthetic/*/{split}.jsonl")
    return path


# --- torchrun anywhere: the backend and device by the machine's GPU count (simulated on CPU) ---


@pytest.mark.parametrize(
    ("local", "gpus", "chosen", "notice"),
    [(2, 0, "gloo", False), (2, 1, "gloo", True), (2, 2, GPU_BACKEND, False), (4, 8, GPU_BACKEND, False)],
)
def test_the_backend_falls_back_to_gloo_when_processes_outnumber_gpus(local, gpus, chosen, notice) -> None:
    assert backend(local, gpus) == chosen
    line = fallback_notice(local, gpus)
    assert (line is not None) == notice
    if notice:
        assert line == (
            "tvgkit: 2 processes but 1 CUDA GPU(s) on this machine: training on the CPU with gloo "
            "(torchrun --nproc_per_node 1 trains on the GPUs)"
        )


def _fake_torchrun(mp: pytest.MonkeyPatch, gpus: int, local_rank: int = 0) -> dict:
    """torchrun's environment for 2 processes on a machine with ``gpus`` GPUs; records what the group did."""
    seen: dict = {"set_device": [], "init": []}
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": str(local_rank)}.items():
        mp.setenv(key, value)
    mp.setenv("LOCAL_RANK", str(local_rank))
    mp.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    mp.setattr(torch.cuda, "device_count", lambda: gpus)
    mp.setattr(torch.cuda, "set_device", seen["set_device"].append)
    mp.setattr(dist, "init_process_group", seen["init"].append)
    mp.setattr(dist, "destroy_process_group", lambda: seen.__setitem__("destroyed", True))
    return seen


@pytest.mark.parametrize("gpus", [1, 2])
def test_process_group_picks_the_backend_by_the_gpu_count_and_says_a_fallback_once(gpus, monkeypatch, capsys) -> None:
    seen = _fake_torchrun(monkeypatch, gpus)
    with distributed.process_group():
        pass
    err = capsys.readouterr().err
    if gpus == 1:  # 2 processes, 1 GPU: gloo on the CPU, said in one line, no GPU taken
        assert seen["init"] == ["gloo"] and seen["set_device"] == []
        assert err.splitlines() == [fallback_notice(2, 1)]
    else:  # one GPU each: rank 0 takes GPU 0
        assert seen["init"] == [GPU_BACKEND] and seen["set_device"] == [0] and err == ""
    assert seen["destroyed"]
    seen = _fake_torchrun(monkeypatch, 1, local_rank=1)
    with distributed.process_group():
        pass
    assert capsys.readouterr().err == ""  # local rank 1 does not repeat the notice


def test_a_rank_of_a_fallen_back_group_trains_on_the_cpu_and_refuses_cuda(monkeypatch) -> None:
    _fake_torchrun(monkeypatch, 1)
    monkeypatch.setattr(distributed, "current", lambda: World(0, 2, 0))
    monkeypatch.setattr(dist, "get_backend", lambda *a: "gloo")
    assert distributed.choose_device(None) == "cpu" and distributed.choose_device("cpu") == "cpu"
    with pytest.raises(InputError) as refused:
        distributed.choose_device("cuda")
    assert str(refused.value) == (
        "train.device=cuda with 2 processes but 1 CUDA GPU(s) on this machine: run torchrun --nproc_per_node 1, "
        "or set train.device=cpu"
    )
    monkeypatch.setattr(dist, "get_backend", lambda *a: GPU_BACKEND)  # a GPU each: the config's choice stands
    assert distributed.choose_device(None) is None and distributed.choose_device("cuda") == "cuda"
    monkeypatch.setattr(distributed, "current", lambda: World())  # one process: untouched
    assert distributed.choose_device(None) is None


def _probe(tmp_path: Path, monkeypatch, overrides: list[str]) -> tuple[list[str], bool]:
    """(trainable parameters without a gradient after one step of the tiny preset with ``overrides``, whether the
    global random state came back unchanged)."""
    import torch

    from tvgkit.grounding.build import build_model, unused_parameters
    from tvgkit.grounding.dataset import Batches, GroundingDataset
    from tvgkit.grounding.splits import load_splits

    monkeypatch.setenv("TVGKIT_CACHE", str(tmp_path / "cache"))
    cfg = preset("tiny", ["train.device=cpu", *overrides])
    splits = load_splits(cfg.data, progress=False)
    model, tokenizer = build_model(cfg, splits.records["train"], splits.features.dim)
    data = GroundingDataset(splits.records["train"], splits.features, tokenizer, cfg.model.templates)
    batch = Batches(data, tokenizer.pad_token_id, train=False).__getitems__([0, 1])
    before = torch.get_rng_state()
    unused = unused_parameters(model, batch, cfg.train)
    assert all(p.grad is None for p in model.parameters())  # the probe's gradients are cleared
    return unused, torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("head", ["span", "regression", "regression-mlp"])
def test_every_head_of_the_random_bert_trains_every_parameter(tmp_path, monkeypatch, head) -> None:
    """No unused parameters: DDP runs without ``find_unused_parameters`` (dropout on, so the state must be kept)."""
    unused, same_rng = _probe(tmp_path, monkeypatch, [f"model.head={head}", "text.dropout=0.1"])
    assert unused == [] and same_rng


def test_a_pretrained_encoders_pooler_is_really_unused(tmp_path, monkeypatch) -> None:
    """``AutoModel`` gives MiniLM a pooler the grounding model never reads: DDP must search for unused parameters
    under full fine-tuning; with LoRA the pooler is frozen and nothing trainable is left unused."""
    pytest.importorskip("all_minilm_l6_v2")
    unused, _ = _probe(tmp_path, monkeypatch, ["text.encoder=minilm"])
    assert unused == ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"]
    assert _probe(tmp_path, monkeypatch, ["text.encoder=minilm", "text.peft=lora"])[0] == []


@pytest.mark.parametrize("encoder", ["random-bert", "minilm"])
def test_ddp_searches_for_unused_parameters_only_when_a_step_leaves_some(tmp_path, monkeypatch, capfd, encoder) -> None:
    """The wrapper ``build_run`` makes, in a one-process gloo group: told to search only for MiniLM (whose pooler
    DDP without the search refuses on the second step: 'Expected to have finished reduction'), and two steps
    train either way, without DDP's warning (from C++, on stderr) that the search found nothing."""
    import torch
    import torch.distributed as dist

    from tvgkit.grounding.build import _parallel, build_model
    from tvgkit.grounding.dataset import Batches, GroundingDataset
    from tvgkit.grounding.objective import training_loss
    from tvgkit.grounding.splits import load_splits

    if encoder == "minilm":
        pytest.importorskip("all_minilm_l6_v2")
    monkeypatch.setenv("TVGKIT_CACHE", str(tmp_path / "cache"))
    cfg = preset("tiny", ["train.device=cpu", f"text.encoder={encoder}"])
    splits = load_splits(cfg.data, progress=False)
    model, tokenizer = build_model(cfg, splits.records["train"], splits.features.dim)
    data = GroundingDataset(splits.records["train"], splits.features, tokenizer, cfg.model.templates)
    batches = Batches(data, tokenizer.pad_token_id, train=True)  # what build_run hands _parallel: the train loader's
    batch = Batches(data, tokenizer.pad_token_id, train=False).__getitems__([2, 3])
    store = f"file://{tmp_path / 'store'}"  # no port to collide with; a stuck collective fails after 60 s
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1, timeout=datetime.timedelta(seconds=60))
    try:
        net = _parallel(model, torch.device("cpu"), World(0, 2, 0), cfg.train, batches)
        assert net.find_unused_parameters == (encoder == "minilm")
        for _ in range(2):
            training_loss(model, batch, cfg.train, net)[0].backward()
    finally:
        dist.destroy_process_group()
    assert "find_unused_parameters" not in capfd.readouterr().err
