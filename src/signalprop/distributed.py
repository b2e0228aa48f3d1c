"""Minimal helpers for torchrun / DistributedDataParallel runs (gloo on CPU, nccl on GPU).

Local learning rules whose statistics are sums over samples (the decorrelation rule) call
:func:`all_reduce_sum` so that every rank applies the same update and keeps identical state;
rules that write ``.grad`` outside autograd (node perturbation), which DDP's hooks never see,
average their gradients with :func:`all_reduce_mean`.
Outside an initialised process group every helper is a no-op.

``signalprop run`` under torchrun enters :func:`process_group`; ``train.fit`` then shards each
global batch, wraps the model in DDP and lets rank 0 (:func:`is_main_process`) write files,
sharing paths and results with :func:`broadcast_object` (see docs/distributed.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from signalprop.errors import ConfigError


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensors: list[Tensor]) -> list[Tensor]:
    """Sum each tensor over all ranks with one collective (flattened); returns new tensors."""
    if not is_distributed() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].reshape(t.shape))
        offset += t.numel()
    return out


def all_reduce_mean(tensors: list[Tensor]) -> list[Tensor]:
    """Average each tensor over all ranks (one collective): ``sum_r t_r / world_size``."""
    if not is_distributed() or not tensors:
        return tensors
    return [t / world_size() for t in all_reduce_sum(tensors)]


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, ...).

    Uses nccl for CUDA devices and gloo otherwise. Returns False when not launched by torchrun.
    """
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True


def is_main_process() -> bool:
    """True on rank 0, and in every process outside a multi-rank process group."""
    return rank() == 0


def local_rank() -> int:
    """torchrun's LOCAL_RANK (0 when not set): the GPU index of this process on its node."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    """Wait for every rank; a no-op outside a multi-rank process group."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` is returned unchanged alone)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def launched_by_torchrun() -> bool:
    """True when torchrun's environment (RANK and WORLD_SIZE) is present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank_device(device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` (made current) for a CUDA device under torchrun, else ``device``."""
    if device.type != "cuda" or not launched_by_torchrun():
        return device
    index = local_rank()
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK={index} but only {torch.cuda.device_count()} GPUs are visible; start "
            "torchrun with --nproc_per_node at most the number of GPUs, or use --device cpu"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration of the block; yields this rank's device.

    Outside torchrun it yields ``device`` and does nothing. The group is destroyed on exit
    only if this block created it.
    """
    if not launched_by_torchrun():
        yield device
        return
    device = rank_device(device)
    created = not dist.is_initialized()
    init_from_env(device)
    try:
        yield device
    except BaseException:
        if created and dist.is_initialized():
            dist.destroy_process_group()
        raise
    if created and dist.is_initialized():
        dist.barrier()  # no rank tears gloo down while another is still in its last collective
        dist.destroy_process_group()
