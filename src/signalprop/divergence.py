"""The error raised when training produces NaN or Inf: where it appeared, and only true
statements about what was kept."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from signalprop.errors import DivergenceError
from signalprop.runs import CHECKPOINT


@torch.no_grad()
def first_nonfinite_parameter(model: nn.Module) -> str | None:
    """Name of the first parameter (in registration order) holding NaN/Inf, if any."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            return name
    return None


@torch.no_grad()
def first_nonfinite_module(model: nn.Module, inputs: Tensor) -> str | None:
    """Name of the first module (in call order) whose output holds NaN/Inf on ``inputs``.

    Used after a non-finite loss to say where the numbers blew up, e.g. an exploding RNN
    state. Only leaf modules and modules with their own parameters are checked.
    """
    found: list[str] = []

    def check(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            tensors = output if isinstance(output, tuple | list) else (output,)
            for tensor in tensors:
                if (not found and isinstance(tensor, Tensor) and tensor.is_floating_point()
                        and not torch.isfinite(tensor).all()):
                    found.append(f"{name} ({type(module).__name__})")
        return hook

    handles = [module.register_forward_hook(check(name))
               for name, module in model.named_modules()
               if name and (not list(module.children()) or
                            any(True for _ in module.parameters(recurse=False)))]
    was_training = model.training
    try:
        model.eval()
        model(inputs)
    except Exception:  # noqa: BLE001 - best effort: the caller reports the loss anyway
        pass
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return found[0] if found else None


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
