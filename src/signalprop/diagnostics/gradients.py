"""Per-layer gradient norms against depth: the library's one gradient-norm recorder.

For every module that owns parameters directly, the recorder reports ``||dL/dθ_l||_2`` (all of
that module's parameters together), in the order the modules first run in the forward pass,
so a plot against the index shows where gradients vanish or explode.

A *stacked* module keeps ``depth`` layers in the leading dimension of its parameters (e.g.
:class:`signalprop.nn.orthogonal.AdditiveFilterStack`: weight ``(L, n, n)``, bias ``(L, n)``).
It counts as ``depth`` layers, ``<name>.0`` ... ``<name>.<L-1>``, each with the norm of its
slice ``||(dL/dW_l, dL/dc_l)||_2`` (:func:`stacked_layer_norms`). A module is stacked when it
has an integer ``depth``, a ``layer_grad_norms()`` method, and every own parameter has
``depth`` as its leading dimension (:func:`stacked_depth`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def parametrised_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly (not only through children)."""
    found = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            found.append((name or type(module).__name__, module))
    return found


def stacked_depth(module: nn.Module) -> int | None:
    """Number of layers stored stacked in ``module``'s own parameters, or None if not stacked."""
    depth = getattr(module, "depth", None)
    if not callable(getattr(module, "layer_grad_norms", None)):
        return None
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        return None
    params = list(module.parameters(recurse=False))
    if not params or any(p.dim() == 0 or p.shape[0] != depth for p in params):
        return None
    return depth


@torch.no_grad()
def stacked_layer_norms(depth: int, grads: Sequence[Tensor | None]) -> Tensor:
    """``||g_l||_2`` per layer ``l`` (float64, shape ``(depth,)``) of a stacked module's
    parameter gradients ``grads`` (each with leading dimension ``depth``; None is skipped)."""
    sq = None
    for grad in grads:
        if grad is None:
            continue
        part = grad.detach().reshape(depth, -1).double().pow(2).sum(1)
        sq = part if sq is None else sq + part
    if sq is None:
        return torch.zeros(depth, dtype=torch.float64)
    return sq.sqrt()


def evenly_spaced(count: int, limit: int) -> list[int]:
    """At most ``limit`` evenly spaced indices of ``range(count)``, first and last kept."""
    if count <= limit:
        return list(range(count))
    if limit < 2:
        return [0, count - 1][:max(limit, 1)]
    step = (count - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)} | {0, count - 1})


class GradNormRecorder:
    """Accumulates per-layer gradient norms over steps; ``pop_means()`` returns and resets them.

    A forward pre-hook records the order layers first run; :meth:`record` reads ``p.grad``
    after the backward pass (``fit`` calls it before gradient clipping). Stacked modules count
    one entry per layer (``stack.0``, ``stack.1``, ...). With more than ``max_layers`` entries,
    about ``max_layers`` evenly spaced ones are kept (first and last always).
    """

    def __init__(self, model: nn.Module, max_layers: int = 2000) -> None:
        self._layers = parametrised_modules(model)
        self._depths = {name: stacked_depth(module) for name, module in self._layers}
        self._order: list[str] = []
        self._seen: set[str] = set()
        self._handles = [
            module.register_forward_pre_hook(self._make_hook(name)) for name, module in self._layers
        ]
        self._sums: dict[str, float] = {}
        self._count = 0
        self._plan: tuple[int, list[tuple[str, nn.Module, list[tuple[str, int | None]]]]] | None
        self._plan = None
        self.max_layers = max_layers

    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: object) -> None:
            if name not in self._seen:
                self._seen.add(name)
                self._order.append(name)

        return hook

    def _entries(self) -> list[tuple[str, nn.Module, list[tuple[str, int | None]]]]:
        """Per module, in forward order: the kept ``(entry name, layer index)`` pairs."""
        if self._plan is not None and self._plan[0] == len(self._order):
            return self._plan[1]
        by_name = dict(self._layers)
        names = self._order + [n for n, _ in self._layers if n not in self._seen]
        flat: list[tuple[str, str, int | None]] = []
        for name in names:
            depth = self._depths[name]
            if depth is None:
                flat.append((name, name, None))
            else:
                flat.extend((name, f"{name}.{i}", i) for i in range(depth))
        kept = [flat[i] for i in evenly_spaced(len(flat), self.max_layers)]
        plan: dict[str, list[tuple[str, int | None]]] = {}
        for module_name, entry, index in kept:
            plan.setdefault(module_name, []).append((entry, index))
        entries = [(n, by_name[n], picks) for n, picks in plan.items()]
        self._plan = (len(self._order), entries)
        return entries

    @torch.no_grad()
    def record(self) -> None:
        """Add the current ``p.grad`` norms to the running sums."""
        for name, module, picks in self._entries():
            grads = [p.grad for p in module.parameters(recurse=False) if p.grad is not None]
            if not grads:
                continue
            depth = self._depths[name]
            if depth is None:
                norms = [torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()]
            else:
                index = torch.tensor([i for _, i in picks])
                norms = stacked_layer_norms(depth, grads)[index].tolist()
            for (entry, _), norm in zip(picks, norms, strict=True):
                self._sums[entry] = self._sums.get(entry, 0.0) + norm
        self._count += 1

    def pop_means(self) -> dict[str, float]:
        """Mean norm per layer since the last call, in forward order."""
        if not self._count:
            return {}
        order = [e for _, _, picks in self._entries() for e, _ in picks if e in self._sums]
        means = {n: self._sums[n] / self._count for n in order}
        self._sums, self._count = {}, 0
        return means

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
