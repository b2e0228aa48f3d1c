"""Minimal helpers for torchrun / DistributedDataParallel runs (gloo on CPU, nccl on GPU).

Local learning rules whose statistics are sums over samples (the decorrelation rule) call
:func:`all_reduce_sum` so that every rank applies the same update and keeps identical state;
rules that write ``.grad`` outside autograd (node perturbation), which DDP's hooks never see,
average their gradients with :func:`all_reduce_mean`.
Outside an initialised process group every helper is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


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
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True
