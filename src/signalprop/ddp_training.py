"""The pieces of ``train.fit`` that only run under torchrun (DistributedDataParallel).

Every rank draws the same global batch and trains on its contiguous shard; losses and rule-made
gradients are averaged with weights equal to each shard's share of the samples, so a
multi-rank run follows the single-process trajectory up to float rounding.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor, nn

from signalprop import distributed
from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule, LossFn

if TYPE_CHECKING:
    import torch

    from signalprop.train_config import TrainConfig
    from signalprop.training_options import MixedPrecision


def check_shards(n_samples: int, cfg: TrainConfig) -> None:
    """Every rank must get at least one sample of every global batch it trains on."""
    world = distributed.world_size()
    steps = math.ceil(n_samples / cfg.batch_size)
    if cfg.max_steps_per_epoch and cfg.max_steps_per_epoch < steps:
        steps = cfg.max_steps_per_epoch
    smallest = min(cfg.batch_size, n_samples - (steps - 1) * cfg.batch_size)
    if smallest < world:
        raise ConfigError(
            f"a global batch of {smallest} samples (train.batch_size={cfg.batch_size}, "
            f"{n_samples} training samples) cannot be split over {world} ranks; use fewer "
            "ranks, or a train.batch_size whose last batch has at least one sample per rank"
        )


def shard(tensors: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], float]:
    """This rank's contiguous slice of a global batch and its fraction of the samples."""
    world, index = distributed.world_size(), distributed.rank()
    parts = tuple(t.tensor_split(world)[index] for t in tensors)
    return parts, parts[0].shape[0] / tensors[0].shape[0]


def global_loss(loss: Tensor, share: float) -> float:
    """Sample-weighted mean of the ranks' losses: the loss of the whole global batch.

    NaN/Inf on any rank makes it non-finite on every rank, so all stop together.
    """
    value = loss.detach().double().reshape(1) * share
    return float(distributed.all_reduce_sum([value])[0])


def reduce_gradients(model: nn.Module, share: float) -> None:
    """Sample-weighted average of ``.grad`` over ranks (for rules that compute gradients)."""
    params = [p for p in model.parameters() if p.grad is not None]
    reduced = distributed.all_reduce_sum([p.grad * share for p in params])
    for param, grad in zip(params, reduced, strict=True):
        param.grad = grad


def distributed_gradients(
    net: nn.Module, model: nn.Module, computed: tuple[Tensor, Tensor] | None, inputs: Tensor,
    targets: Tensor, loss_fn: LossFn, share: float, precision: MixedPrecision | None = None,
) -> float:
    """Fill identical ``.grad`` on every rank; returns the global loss (non-finite: no grads).

    Backprop runs through the DDP wrapper ``net``, whose hooks average the gradients; the
    local loss is scaled by ``share * world`` so uneven shards weigh by their sample counts.
    A rule's own gradients (``computed``) are averaged explicitly with the same weights.
    ``precision`` runs the forward pass under autocast and scales the loss for fp16.
    """
    if computed is None:
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            loss = loss_fn(net(inputs), targets)
        value = global_loss(loss, share)
        if math.isfinite(value):  # decided on every rank alike: no rank waits in backward
            weighted = loss * (share * distributed.world_size())
            (precision.scale(weighted) if precision is not None else weighted).backward()
        return value
    value = global_loss(computed[0], share)
    if math.isfinite(value):
        reduce_gradients(model, share)
    return value


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel inside a multi-rank process group, else itself."""
    if not distributed.is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def check_rules(rules: Sequence[LearningRule]) -> None:
    """Reject rules whose local updates would let the ranks' weights drift apart."""
    if not distributed.is_distributed():
        return
    for rule in rules:
        if not getattr(rule, "ddp_safe", True):
            raise ConfigError(
                f"learning rule {type(rule).__name__} updates weights from each rank's own "
                "samples and does not keep DDP ranks in sync; run it in a single process"
            )
