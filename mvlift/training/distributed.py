"""Multi-process training helpers for ``torchrun`` + DistributedDataParallel.

Launch a training script with ``torchrun --nproc_per_node N script.py``; :func:`init_distributed` reads
the ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables torchrun sets and joins the process group
(NCCL on CUDA, gloo on CPU). Without those variables everything runs as a single process. A training
script builds its :class:`~mvlift.training.Trainer` and calls ``fit(resume=True)``; the same script runs
on one device (``python train.py``) or several (``torchrun --nproc_per_node 8 train.py``). Rank 0 logs and
writes checkpoints; the checkpoint folder must be visible to every rank when resuming.

Data sharding is deterministic (:class:`ShardedBatchSampler`): the global order depends only on the
seed and the epoch, each rank takes a fixed slice of every global micro-batch, and the position in the
stream is one integer that a checkpoint stores, so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integer keys (numpy's SeedSequence hash).

    Distinct key tuples give independent seeds, e.g. ``derive_seed(seed, epoch, index)``.
    """
    if any(int(k) < 0 for k in keys):
        raise ValueError(f"derive_seed: keys must be non-negative integers, got {keys}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes (1 for a single process).
        local_rank: rank on this node (selects the CUDA device).
        device: the device this process trains on.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and writes checkpoints)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from exc


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; otherwise describe a single process.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``. With CUDA each
            process uses ``cuda:LOCAL_RANK``.

    Returns:
        A :class:`DistInfo`. Reuses an already initialised default process group.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not (0 <= rank < world_size):
        raise ValueError(f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    dev = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device == "auto"
        else torch.device(device)
    )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        index = local_rank if (world_size > 1 or dev.index is None) else dev.index
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    if world_size == 1 and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(0, 1, 0, dev, None)
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    else:
        backend = dist.get_backend()
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def cleanup_distributed() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over ranks (returns ``t`` itself for a single process)."""
    if not info.distributed:
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order (``[obj]`` for a single process)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ShardedBatchSampler:
    """Endless, deterministic, resumable batch sampler sharded over ranks.

    Epoch ``e`` visits a permutation of the ``num_items`` items drawn from a generator seeded with
    ``(seed, e)``. It is cut into global micro-batches of ``batch_size * world_size`` items (an
    incomplete tail is dropped); rank ``r`` takes the ``r``-th slice of ``batch_size`` items of each.
    Micro-batch number ``k`` of the stream (counting from 0 across epochs) is therefore a pure function
    of ``(seed, k)``: pass ``start`` = the number of micro-batches already consumed to resume.

    Each yielded batch is a list of ``(epoch, index)`` keys; the training datasets accept such keys so
    that their per-item randomness (virtual epipoles, noise) depends on the epoch too.

    Args:
        num_items: dataset length.
        batch_size: items per micro-batch on this rank.
        seed: data-order seed.
        rank, world_size: this process's slice.
        start: index of the first micro-batch to yield.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        if world_size < 1 or not (0 <= rank < world_size):
            raise ValueError(
                f"ShardedBatchSampler: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if batch_size < 1:
            raise ValueError(f"ShardedBatchSampler: batch_size must be >= 1, got {batch_size}")
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ValueError(
                f"ShardedBatchSampler: the dataset has {num_items} items, fewer than one global micro-batch "
                f"(batch_size {batch_size} x world_size {world_size} = {global_batch})"
            )
        if start < 0:
            raise ValueError(f"ShardedBatchSampler: start must be >= 0, got {start}")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start = int(start)
        self.batches_per_epoch = self.num_items // global_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        """The global item order of ``epoch`` (int64, length ``num_items``)."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(self.num_items, generator=g)

    def position(self, micro_batch: int) -> tuple[int, int]:
        """``(epoch, batch index within the epoch)`` of stream micro-batch ``micro_batch``."""
        return divmod(int(micro_batch), self.batches_per_epoch)

    def batch(self, micro_batch: int) -> list[tuple[int, int]]:
        """This rank's keys of stream micro-batch ``micro_batch``."""
        epoch, k = self.position(micro_batch)
        perm = self.permutation(epoch)
        lo = k * self.batch_size * self.world_size + self.rank * self.batch_size
        return [(epoch, int(i)) for i in perm[lo : lo + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.start
        epoch, _ = self.position(k)
        perm = self.permutation(epoch)
        while True:
            e, j = self.position(k)
            if e != epoch:
                epoch, perm = e, self.permutation(e)
            lo = j * self.batch_size * self.world_size + self.rank * self.batch_size
            yield [(epoch, int(i)) for i in perm[lo : lo + self.batch_size]]
            k += 1
