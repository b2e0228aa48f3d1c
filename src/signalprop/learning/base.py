"""The learning-rule protocol the trainer calls on every step.

A rule may replace how gradients are computed (feedback alignment, node perturbation) by
returning ``(loss, output)`` from :meth:`LearningRule.compute_gradients`, and may run a local,
non-gradient update after the optimiser step (decorrelation, sensitivity adjustment) in
:meth:`LearningRule.after_step`. The trainer uses the first rule that computes gradients, or
plain backprop when none does, and calls every rule's ``after_step``; when training ends, also
on an error, it calls every rule's ``detach`` to remove what ``attach`` hooked into the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


class LearningRule:
    """Base class: backprop with no local updates. Subclasses override what they change."""

    name = "bp"
    #: False when :meth:`after_step` changes weights from this rank's samples alone, so that
    #: DDP ranks would drift apart; ``fit`` then refuses to train it in a process group.
    ddp_safe = True

    def attach(self, model: nn.Module) -> None:
        """Called once before training, with the model on its final device."""

    def detach(self) -> None:
        """Undo :meth:`attach`'s side effects on the model (hooks); ``fit`` calls it when
        training ends, also on an error. Safe to call twice or before ``attach``."""

    def compute_gradients(
        self, model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn
    ) -> tuple[Tensor, Tensor] | None:
        """Fill ``p.grad`` for the parameters and return ``(loss, output)``; None means backprop."""
        return None

    def after_step(self, model: nn.Module) -> dict[str, float]:
        """Local update after the optimiser step; returns metrics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def backprop(
    model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn
) -> tuple[Tensor, Tensor]:
    """Standard reverse-mode gradient: ``loss.backward()``."""
    output = model(inputs)
    loss = loss_fn(output, targets)
    if torch.isfinite(loss):
        loss.backward()
    return loss, output
