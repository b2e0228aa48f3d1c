"""Activation buffers the additive-filter RNN's BPTT reuses across training steps."""

from __future__ import annotations

import torch
from torch import Tensor

_SPARE_BUFFERS: dict[tuple, Tensor] = {}  # free activation buffers, one per shape/dtype/device
_MAX_SPARE = 4


def take_buffer(like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A ``(T, B, n)`` buffer, reusing one a finished backward gave back: a fresh 50 MB tensor
    costs more in page faults than the GEMMs that fill it."""
    if torch.compiler.is_compiling():  # compiled graphs own their memory
        return like.new_empty(shape)
    spare = _SPARE_BUFFERS.pop((shape, like.dtype, like.device), None)
    return spare if spare is not None else like.new_empty(shape)


def give_back(buffer: Tensor) -> None:
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(buffer):
        return  # a traced or torch.func-wrapped buffer stays with its graph or transform
    if len(_SPARE_BUFFERS) >= _MAX_SPARE:
        _SPARE_BUFFERS.pop(next(iter(_SPARE_BUFFERS)))
    _SPARE_BUFFERS[(tuple(buffer.shape), buffer.dtype, buffer.device)] = buffer
