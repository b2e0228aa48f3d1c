"""Per-layer gradient norms against depth, recorded through module hooks.

For every module that owns parameters directly, the recorder reports ``||dL/dθ_l||_2`` (all of
that module's parameters together), in the order the modules first run in the forward pass,
so a plot against the index shows where gradients vanish or explode.
"""

from __future__ import annotations

import torch
from torch import nn


def parametrised_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly (not only through children)."""
    found = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            found.append((name or type(module).__name__, module))
    return found


class GradNormRecorder:
    """Accumulates per-layer gradient norms over steps; ``pop_means()`` returns and resets them.

    A forward pre-hook records the order layers first run; :meth:`record` reads ``p.grad``
    after the backward pass. ``max_layers`` subsamples evenly for very deep models.
    """

    def __init__(self, model: nn.Module, max_layers: int = 2000) -> None:
        self._layers = parametrised_modules(model)
        self._order: list[str] = []
        self._seen: set[str] = set()
        self._handles = [
            module.register_forward_pre_hook(self._make_hook(name)) for name, module in self._layers
        ]
        self._sums: dict[str, float] = {}
        self._count = 0
        self.max_layers = max_layers

    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: object) -> None:
            if name not in self._seen:
                self._seen.add(name)
                self._order.append(name)

        return hook

    def _ordered(self) -> list[tuple[str, nn.Module]]:
        by_name = dict(self._layers)
        names = self._order + [n for n, _ in self._layers if n not in self._seen]
        if len(names) > self.max_layers:
            stride = len(names) / self.max_layers
            names = [names[int(i * stride)] for i in range(self.max_layers)] + [names[-1]]
        return [(n, by_name[n]) for n in dict.fromkeys(names)]

    @torch.no_grad()
    def record(self) -> None:
        """Add the current ``p.grad`` norms to the running sums."""
        for name, module in self._ordered():
            grads = [p.grad for p in module.parameters(recurse=False) if p.grad is not None]
            if not grads:
                continue
            norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
            self._sums[name] = self._sums.get(name, 0.0) + norm
        self._count += 1

    def pop_means(self) -> dict[str, float]:
        """Mean norm per layer since the last call, in forward order."""
        if not self._count:
            return {}
        order = [n for n, _ in self._ordered() if n in self._sums]
        means = {n: self._sums[n] / self._count for n in order}
        self._sums, self._count = {}, 0
        return means

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
