"""The few multi-process helpers the trainer needs, on PyTorch's own ``torch.distributed``.

``torchrun --nproc_per_node N -m tvgkit train ...`` starts N copies of the trainer that differ only in their
``RANK``. They must agree on what they write and read, and no evaluation may count a query twice, so:

- :func:`process_group` joins the group ``torchrun`` announces in the environment and leaves it afterwards; without
  ``torchrun`` nothing happens and every helper below is a no-op for one process. With a GPU for each process on the
  machine, each process takes GPU ``LOCAL_RANK`` (NCCL for CUDA tensors, gloo for CPU ones, so ``train.device=cpu``
  works there too); with more processes than GPUs (two on a one-GPU machine) the group falls back to gloo on the CPU
  and says so in one line, and :func:`choose_device` keeps the ranks on the CPU (``train.device=cuda`` is refused
  there, in one line naming the ``--nproc_per_node`` that fits). Without a GPU: gloo on the CPU;
- :func:`main_first` lets rank 0 build shared caches (the synthetic dataset, a tokenizer vocabulary) while the other
  ranks wait at a barrier, then read what rank 0 wrote: two processes rendering into one folder would race;
- :func:`broadcast` sends rank 0's choice (the run folder's name) to everyone;
- :func:`shard_range` cuts an evaluation set into contiguous, disjoint pieces. PyTorch's ``DistributedSampler``
  pads the last shard with repeated samples so all ranks get equal counts; that is harmless for training but scores
  some test queries twice, so evaluation uses these shards and :func:`gather_rows` to put the predictions back in
  dataset order, each query exactly once;
- :func:`any_rank` tells every rank whether one of them was asked to stop, so that all stop at the same step
  (a rank that stops alone leaves the others waiting in the gradient all-reduce).

Only rank 0 writes files; the trainer checks :attr:`World.main` before it does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from tvgkit.errors import InputError

GPU_BACKEND = "cpu:gloo,cuda:nccl"  # NCCL for CUDA tensors, gloo for CPU ones (the flag all-reduce, train.device=cpu)

@dataclass(frozen=True)
class World:
    """This process's place in the group: ``rank`` of ``size`` processes, ``local_rank`` on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes files."""
        return self.rank == 0


def current() -> World:
    """The group this process belongs to (one process of one when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def backend(local_processes: int, gpus: int) -> str:
    """The group's backend for ``local_processes`` processes on a machine with ``gpus`` CUDA GPUs: NCCL (with gloo
    for CPU tensors) when each process has its own GPU, else gloo on the CPU (two processes on one GPU would fail
    with "invalid device ordinal", or share it and deadlock in NCCL)."""
    return GPU_BACKEND if 0 < local_processes <= gpus else "gloo"


def fallback_notice(local_processes: int, gpus: int) -> str | None:
    """The one line saying that the processes train on the CPU although GPUs are present (None when they do not)."""
    if not 0 < gpus < local_processes:
        return None
    return (
        f"tvgkit: {local_processes} processes but {gpus} CUDA GPU(s) on this machine: training on the CPU with gloo "
        f"(torchrun --nproc_per_node {gpus} trains on the GPUs)"
    )


@contextlib.contextmanager
def process_group() -> Iterator[World]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1) for the block, then leave it.

    The backend comes from :func:`backend`; a fallback to the CPU is said once per machine (local rank 0, stderr).
    Outside ``torchrun``, or when a group already exists (a test that set it up), this does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield current()
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    chosen = backend(local, gpus)
    if chosen == GPU_BACKEND:
        torch.cuda.set_device(local_rank)
    notice = fallback_notice(local, gpus)
    if notice and local_rank == 0:
        print(notice, file=sys.stderr)
    dist.init_process_group(chosen)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def choose_device(prefer: str | None) -> str | None:
    """The device a rank asks :func:`tvgkit.runtime.setup` for: ``prefer`` (None: CUDA when present), except in a
    group that fell back to the CPU (more processes than GPUs), where it is the CPU; asking for CUDA there is an
    :class:`InputError` in one line."""
    world = current()
    if world.size == 1 or not torch.cuda.is_available() or dist.get_backend() != "gloo":
        return prefer
    if prefer and torch.device(prefer).type == "cuda":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
        raise InputError(
            f"train.device={prefer} with {local} processes but {torch.cuda.device_count()} CUDA GPU(s) on this "
            f"machine: run torchrun --nproc_per_node {torch.cuda.device_count()}, or set train.device=cpu"
        )
    return "cpu"


def device_for(device: torch.device, world: World) -> torch.device:
    """The device of this rank: CUDA device ``local_rank`` in a multi-process CUDA run, else ``device`` itself."""
    if world.size > 1 and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in one process)."""
    if current().size > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first; the others run it after rank 0 is done (and then find its files)."""
    world = current()
    if not world.main:
        barrier()
    try:
        yield
    finally:
        if world.main:
            barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable value; the trainer sends only plain strings)."""
    if current().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (a MAX all-reduce of one number, a CPU tensor: every
    group :func:`process_group` makes has gloo for CPU tensors)."""
    if current().size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    world = current()
    if world.size == 1:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def shard_range(n: int, rank: int, size: int) -> range:
    """Rank ``rank``'s contiguous piece of ``range(n)``: the pieces are disjoint, cover it, and differ by <= 1."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def gather_rows(part: np.ndarray, n: int) -> np.ndarray:
    """Every rank's rows of its :func:`shard_range` piece, concatenated in rank order: all ``n`` rows, once each."""
    parts = all_gather(part)
    for rank, rows in enumerate(parts):
        expected = len(shard_range(n, rank, len(parts)))
        if len(rows) != expected:
            raise RuntimeError(f"rank {rank} returned {len(rows)} evaluation rows for its {expected} queries")
    return np.concatenate(parts)
