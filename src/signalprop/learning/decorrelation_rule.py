"""The decorrelation update as a learning rule: ``fit(..., rules=(DecorrelationRule(),))``.

After every optimiser step, each :class:`~signalprop.nn.decorrelation.Decorrelator` in the model
updates ``R`` from the sub-sample it recorded in that step's forward pass (Ahmad, arXiv
2407.10780; Dalm et al., arXiv 2405.02385 also update after the optimiser step). Under DDP the
per-layer sums are all-reduced in one collective, so all ranks keep identical ``R``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from signalprop.distributed import all_reduce_sum, is_distributed, world_size
from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule
from signalprop.nn.decorrelation import correlation_error, decorrelators


def decorrelation_step(model: nn.Module, sync: bool = True) -> int:
    """Update every decorrelator of ``model`` once; returns how many were updated.

    With ``sync`` and an initialised process group, statistics are summed over ranks first and
    running means averaged, so every rank applies the same update.
    """
    layers = [dec for _, dec in decorrelators(model)]
    if not layers:
        return 0
    if sync and is_distributed():
        stats = [dec.statistics() for dec in layers]
        means = [dec.running_mean.clone() for dec in layers]
        reduced = all_reduce_sum(stats + means)
        for dec, total, mean in zip(layers, reduced[: len(layers)], reduced[len(layers):],
                                    strict=True):
            dec.apply_statistics(total)
            dec.running_mean.copy_(mean / world_size())
        return len(layers)
    count = 0
    for dec in layers:
        if dec.has_sample():
            dec.update()
            count += 1
    return count


@torch.no_grad()
def decorrelation_metrics(model: nn.Module) -> dict[str, float]:
    """Mean |off-diagonal correlation| of the decorrelated sub-sample, averaged over layers."""
    errors = []
    for _, dec in decorrelators(model):
        if dec._sample is None:
            continue
        _, z = dec._sampled()
        if z.shape[0] > 1:
            errors.append(correlation_error(z.T @ z / z.shape[0]))
    return {"decor_offdiag_corr": sum(errors) / len(errors)} if errors else {}


class DecorrelationRule(LearningRule):
    """Runs :func:`decorrelation_step` after each optimiser step.

    Args:
        sync: all-reduce statistics across DDP ranks (no-op without a process group).
        warmup_steps: steps to skip before the first update (Dalm et al. skip epoch 0).
        metrics_every: log the mean off-diagonal correlation every this many steps (0 = never).
    """

    name = "decorrelation"

    def __init__(self, sync: bool = True, warmup_steps: int = 0, metrics_every: int = 10) -> None:
        if warmup_steps < 0 or metrics_every < 0:
            raise ConfigError("warmup_steps and metrics_every must be >= 0")
        self.sync = sync
        self.warmup_steps = int(warmup_steps)
        self.metrics_every = int(metrics_every)
        self.steps = 0

    def attach(self, model: nn.Module) -> None:
        if not any(True for _ in decorrelators(model)):
            raise ConfigError(
                "DecorrelationRule needs decorrelated layers: convert the model first with "
                "signalprop.nn.decorrelation_policy.decorrelate(model)"
            )

    def after_step(self, model: nn.Module) -> dict[str, float]:
        self.steps += 1
        metrics: dict[str, float] = {}
        if self.metrics_every and self.steps % self.metrics_every == 0:
            metrics = decorrelation_metrics(model)
        if self.steps > self.warmup_steps:
            decorrelation_step(model, self.sync)
        else:
            for _, dec in decorrelators(model):
                dec._sample = None
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
