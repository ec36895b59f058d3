"""One process or many (torchrun): process group, data sharding, reductions.

One process is the default: without ``WORLD_SIZE`` > 1 in the environment nothing is
initialised. Under ``torchrun`` (env ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) :func:`init_distributed` creates the default process group: ``nccl`` when the
device is CUDA (one GPU per local rank), ``gloo`` on the CPU.

Equivalence with one process (same global batch B, N processes, per-process batch B / N):

- Data order: every process uses a :class:`torch.utils.data.DistributedSampler` with
  ``shuffle=True, seed=cfg.seed, drop_last=True`` (one process: ``num_replicas=1``) and
  ``set_epoch(epoch)``; the permutation of an epoch is ``torch.randperm(n)`` of a generator
  seeded with ``seed + epoch`` on every process. Process r takes the permutation positions
  ``r, r + N, r + 2N, ...`` and the DataLoader cuts them into batches of B / N dropping the last
  incomplete one, so iteration k of the N processes together covers exactly the positions
  ``kB .. (k+1)B - 1``, the same samples as iteration k of one process, and every epoch has
  ``n // B`` iterations in both cases.
- Augmentation: the datasets draw the random transform of item i from ``(seed, epoch, i)``
  (``set_epoch``), independent of the process and worker that loads it.
- Loss: DDP averages gradients over processes. For a loss that is a mean over the batch (CAM)
  the average of per-process means equals the global mean. IRNet's terms are sums over label
  pairs divided by the pair count of the whole batch, so each process rescales its terms by
  ``local count / global count * N`` (:func:`all_reduce_sum` of the counts), which makes the
  average the one-process value.
- BatchNorm is frozen (running statistics), so no SyncBatchNorm is needed.
"""
from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "resolve_device",
           "per_process_batch", "make_train_loader", "all_reduce_sum", "all_reduce_mean", "barrier"]


@dataclass
class DistInfo:
    """Where this process stands: ``rank``, ``world_size``, ``local_rank``, its ``device``;
    ``owns_group`` is True when :func:`init_distributed` created the process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``"cuda"`` gets
    the local rank's GPU; anything else is passed to :class:`torch.device`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    return device


def _env_int(key: str, default: int) -> int:
    value = os.environ.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {key}={value!r} is not an integer") from None


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and sets up the process group if needed.

    A process group that already exists (created by the caller) is used as is.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        return DistInfo(rank, world, local, resolve_device(device, local), owns_group=False)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, owns_group=False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kwargs = {}
    if backend == "nccl":
        kwargs["device_id"] = dev
    dist.init_process_group(backend=backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    atexit.register(_destroy_at_exit)
    return DistInfo(rank, world, local, dev, owns_group=True)


def _destroy_at_exit() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cleanup_distributed(info: DistInfo, destroy: bool = False) -> None:
    """End of a training step: waits for every process. The process group stays up for the next
    step of the same launch (re-creating it under torchrun's agent store can hang) and is
    destroyed at exit; ``destroy=True`` destroys it now if :func:`init_distributed` created it."""
    if info.distributed and dist.is_initialized():
        barrier(info)
        if destroy and info.owns_group:
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def per_process_batch(global_batch: int, world_size: int, what: str = "batch size") -> int:
    """``global_batch / world_size``; a clear error when it does not divide."""
    if global_batch < 1:
        raise ValueError(f"{what} must be >= 1, got {global_batch}")
    if global_batch % world_size:
        raise ValueError(f"{what} {global_batch} is not divisible by the number of processes {world_size}: "
                         f"the global batch is split evenly over the processes (choose a multiple of {world_size})")
    return global_batch // world_size


def make_train_loader(dataset, global_batch: int, info: DistInfo, seed: int, num_workers: int = 0,
                      what: str = "batch size", collate_fn=None) -> DataLoader:
    """The training DataLoader of this process (see the module docstring for the data order);
    ``collate_fn`` as DataLoader's (default: stacking).

    Raises ValueError when the dataset holds fewer than ``global_batch`` items (no iteration).
    """
    batch = per_process_batch(global_batch, info.world_size, what)
    if len(dataset) < global_batch:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than the {what} {global_batch}: "
                         f"no complete batch (incomplete batches are dropped, as the reference)")
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=int(seed), drop_last=True)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=int(num_workers),
                      pin_memory=info.device.type == "cuda", drop_last=True,
                      persistent_workers=False, collate_fn=collate_fn)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over processes (a no-op copy on one process). Returns a new tensor."""
    out = tensor.detach().clone()
    if info.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    return all_reduce_sum(tensor, info) / info.world_size
