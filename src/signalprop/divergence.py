"""The error raised when training produces NaN or Inf: where it appeared, and only true
statements about what was kept."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from signalprop.errors import DivergenceError

CHECKPOINT = "checkpoint.pt"


@torch.no_grad()
def first_nonfinite_parameter(model: nn.Module) -> str | None:
    """Name of the first parameter (in registration order) holding NaN/Inf, if any."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            return name
    return None


@torch.no_grad()
def _largest_parameter(model: nn.Module) -> tuple[str, float]:
    sizes = [(name, float(p.abs().max())) for name, p in model.named_parameters() if p.numel()]
    return max(sizes, key=lambda item: item[1], default=("-", 0.0))


def diverged(problem: str, run_dir: Path, epochs_done: int, lr: float, model: nn.Module,
              inputs: Tensor | None) -> DivergenceError:
    """The error for a NaN/Inf: where it appeared, and only true statements about what is kept
    (``epochs_done`` epochs were checkpointed in this directory; 0 means none)."""
    where = []
    parameter = first_nonfinite_parameter(model)
    if parameter is not None:
        where.append(f"first non-finite parameter: {parameter}")
    from signalprop.train import first_nonfinite_module

    module = first_nonfinite_module(model, inputs) if inputs is not None else None
    if module is not None:
        where.append(f"first non-finite output: {module}")
    if not where:
        name, size = _largest_parameter(model)
        where.append(f"every parameter and layer output is finite; the largest is {name}, "
                     f"max |value| {size:.3g}")
    located = f" ({'; '.join(where)})"
    checkpoint = run_dir / CHECKPOINT if epochs_done else None
    kept = (f"the last good checkpoint (epoch {epochs_done}) is {checkpoint}" if checkpoint
            else "no checkpoint was written (it diverged before its first epoch ended)")
    return DivergenceError(
        f"{problem}{located}; {kept}. Lower the learning rate (lr={lr:g}) or clip gradients "
        "(grad_clip)", run_dir=run_dir, checkpoint=checkpoint, lr=lr)
