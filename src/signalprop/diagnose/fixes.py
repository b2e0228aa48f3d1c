"""In-place fixes that keep the user's model: what ``diagnose``'s remedies call.

Each takes the model and the names of its layers as ``diagnose`` reports them
(``model.named_modules()`` names) and changes only those layers:

* :func:`rescale` multiplies a layer's weight by a factor (re-scaling its initialisation);
* :func:`add_layer_norm` puts a normalisation after a layer: ``nn.LayerNorm`` after a
  ``Linear``, ``nn.GroupNorm(1, C)`` (layer norm over channels and positions) after a conv;
* :func:`add_additive_filter` wraps existing width-preserving blocks in the orthogonal
  additive filter of Ceni (arXiv 2210.01245), ``h' = (1 - b) O h + b f(h)`` with ``O`` a fixed
  Haar-random orthogonal matrix and ``f`` the block as it was. Per block the Jacobian is
  ``(1 - b) O + b J_f``, whose singular values lie in ``[1 - b - b ||J_f||, 1 - b + b ||J_f||]``
  (Weyl), so with ``b = 1 / blocks`` the product over the blocks stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError
from signalprop.nn.orthogonal import random_orthogonal


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ConfigError(f"the model has no layer {name!r} (names as in "
                          "model.named_modules())") from exc


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(_module(model, parent) if parent else model, child, new)


def _weight(model: nn.Module, name: str) -> Tensor:
    """The weight of layer ``name``; ``<stack>.<l>`` is layer ``l`` of a stacked module (its
    slice ``weight[l]``), as diagnose names the layers of an ``AdditiveFilterStack``."""
    from signalprop.diagnostics.gradients import stacked_depth

    parent, _, last = name.rpartition(".")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        stack = _module(model, parent) if parent and last.isdigit() else None
        depth = stack and stacked_depth(stack)
        if not depth or int(last) >= depth:
            raise ConfigError(f"the model has no layer {name!r} (names as in model."
                              "named_modules(), or <stack>.<l> for a stacked module)") from None
        return stack.weight[int(last)]  # type: ignore[union-attr,index]
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor):
        raise ConfigError(f"layer {name!r} has no weight to rescale")
    return weight


@torch.no_grad()
def rescale(model: nn.Module, names: Sequence[str], factor: float) -> None:
    """``W <- factor * W`` for the weight of each named layer (biases unchanged); a stacked
    module's layers are named ``<stack>.<l>`` (``stack.0`` ... ``stack.999``)."""
    if not factor > 0:
        raise ConfigError(f"rescale factor must be > 0, got {factor}")
    for name in names:
        _weight(model, name).mul_(factor)


def add_layer_norm(model: nn.Module, names: Sequence[str]) -> None:
    """Replace each named ``Linear``/conv layer by ``Sequential(layer, norm)``."""
    for name in names:
        layer = _module(model, name)
        weight = getattr(layer, "weight", None)
        kind = {} if weight is None else {"device": weight.device, "dtype": weight.dtype}
        if isinstance(layer, nn.Linear):
            norm: nn.Module = nn.LayerNorm(layer.out_features, **kind)
        elif isinstance(layer, nn.modules.conv._ConvNd):
            norm = nn.GroupNorm(1, layer.out_channels, **kind)
        else:
            raise ConfigError(f"add_layer_norm: layer {name!r} is a {type(layer).__name__}, "
                              "not a Linear or conv layer")
        _replace(model, name, nn.Sequential(layer, norm))


class AdditiveFilterWrapper(nn.Module):
    """``h' = (1 - beta) O h + beta block(h)`` over the last dimension (arXiv 2210.01245)."""

    def __init__(self, block: nn.Module, width: int, beta: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0 < beta <= 1:
            raise ConfigError(f"beta must be in (0, 1], got {beta}")
        self.block, self.width, self.beta = block, width, float(beta)
        weight = next(block.parameters(), None)
        self.register_buffer("filter", random_orthogonal(
            width, generator=generator, dtype=None if weight is None else weight.dtype,
            device=None if weight is None else weight.device))

    def extra_repr(self) -> str:
        return f"width={self.width}, beta={self.beta:.6g}"

    def forward(self, h: Tensor) -> Tensor:
        out = self.block(h)
        if out.shape != h.shape or h.shape[-1] != self.width:
            raise ConfigError(f"the additive filter needs a block that keeps the shape "
                              f"(..., {self.width}); got {tuple(h.shape)} -> {tuple(out.shape)}")
        return (1 - self.beta) * h @ self.filter.t() + self.beta * out


def block_width(block: nn.Module) -> int | None:
    """The width a block keeps: its first ``Linear``'s ``in_features`` when that Linear is
    square or the block has more layers; None when the block cannot be a filter block."""
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[0].in_features != linears[-1].out_features:
        return None
    return linears[0].in_features


def add_additive_filter(model: nn.Module, names: Sequence[str], beta: float | None = None,
                        seed: int = 0) -> None:
    """Wrap each named block in :class:`AdditiveFilterWrapper`; ``beta`` defaults to
    ``1 / len(names)`` (``b = 1/depth``, the paper's scaling)."""
    beta = 1.0 / len(names) if beta is None else beta
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        block = _module(model, name)
        width = block_width(block)
        if width is None:
            raise ConfigError(f"add_additive_filter: block {name!r} does not keep its width "
                              "(its first Linear's inputs differ from its last's outputs)")
        _replace(model, name, AdditiveFilterWrapper(block, width, beta, generator))


@torch.no_grad()
def chrono_init(model: nn.Module, names: Sequence[str], steps: int, seed: int = 0) -> None:
    """Chrono initialisation (Tallec & Ollivier, arXiv 1804.11188) of each named ``nn.LSTM``
    or ``nn.GRU``: gate biases ``log U(1, steps - 1)`` that keep a unit's state for up to
    ``steps`` steps. LSTM: forget gate ``+b``, input gate ``-b``; GRU (``h' = (1 - z) n + z h``):
    update gate ``+b``. The other biases are unchanged."""
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        rnn = _module(model, name)
        if not isinstance(rnn, nn.LSTM | nn.GRU):
            raise ConfigError(f"chrono_init: layer {name!r} is a {type(rnn).__name__}, not an "
                              "nn.LSTM or nn.GRU")
        size = rnn.hidden_size
        for layer in range(rnn.num_layers * (2 if rnn.bidirectional else 1)):
            suffix = f"_l{layer // (2 if rnn.bidirectional else 1)}"
            suffix += "_reverse" if rnn.bidirectional and layer % 2 else ""
            b_ih, b_hh = getattr(rnn, f"bias_ih{suffix}", None), getattr(rnn, f"bias_hh{suffix}",
                                                                        None)
            if b_ih is None or b_hh is None:
                raise ConfigError(f"chrono_init: layer {name!r} has no biases (bias=False)")
            u = torch.empty(size).uniform_(1.0, max(float(steps) - 1.0, 1.0 + 1e-6),
                                           generator=generator)
            bias = torch.log(u).to(b_ih)
            gate = slice(size, 2 * size)  # LSTM: [i, f, g, o]; GRU: [r, z, n]
            b_ih[gate], b_hh[gate] = bias, 0.0
            if isinstance(rnn, nn.LSTM):
                b_ih[:size], b_hh[:size] = -bias, 0.0
