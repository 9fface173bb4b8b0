"""The few multi-process helpers the trainer needs, on PyTorch's own ``torch.distributed``.

``torchrun --nproc_per_node N -m tvgkit train ...`` starts N copies of the trainer that differ only in their
``RANK``. They must agree on what they write and read, and no evaluation may count a query twice, so:

- :func:`process_group` joins the group ``torchrun`` announces in the environment (NCCL on CUDA, gloo on CPU) and
  leaves it afterwards; without ``torchrun`` nothing happens and every helper below is a no-op for one process;
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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


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


@contextlib.contextmanager
def process_group() -> Iterator[World]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1) for the block, then leave it.

    The backend is NCCL when CUDA is present (each process takes GPU ``LOCAL_RANK``) and gloo on CPU. Outside
    ``torchrun``, or when a group already exists (a test that set it up), this does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield current()
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield current()
    finally:
        dist.destroy_process_group()


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
    """True on every rank when ``flag`` is true on any rank (a MAX all-reduce of one number)."""
    world = current()
    if world.size == 1:
        return flag
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
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
