"""The precision and transform policy of signalprop's custom autograd Functions.

Precision (autocast): the additive-filter recurrences (:mod:`signalprop.nn.orthogonal`,
:mod:`signalprop.nn.orthogonal_rnn`) compute in float32 under ``torch.autocast`` and return
float32, like the ops on autocast's float32 list: with ``b ~ 1/T`` the state update ``b * phi``
lies below bfloat16's resolution (``2^-8``) of a state of order one, so a low-precision state
would forget nothing and learn nothing. This is ``torch.amp.custom_fwd(cast_inputs=float32)``:
floating inputs are cast to float32 and the forward and backward run with autocast off.
Feedback-alignment products (:mod:`signalprop.nn.feedback`) follow the autocast state they were
called under (``custom_fwd()`` without ``cast_inputs``), and their backward runs under that same
state (``custom_bwd``). The decorators themselves cannot wrap a ``setup_context``-style
``forward`` (they need ``ctx`` as its first argument), so the same policy is applied here.

Transforms (``torch.func``): :func:`functorch_transforms` names the active ones, outermost first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)

AutocastState = tuple[str, bool, torch.dtype]


def autocast_state(device_type: str) -> AutocastState:
    """``(device_type, enabled, dtype)`` of autocast now, to replay in a backward pass."""
    return (device_type, torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type))


@contextmanager
def replay_autocast(state: AutocastState) -> Iterator[None]:
    """Run under the autocast state a forward pass saw (what ``custom_bwd`` does)."""
    device_type, enabled, dtype = state
    with torch.autocast(device_type, dtype=dtype, enabled=enabled):
        yield


def float32_inputs(device_type: str, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Floating ``tensors`` cast to float32 when autocast is on for ``device_type`` (else as
    given): the ``cast_inputs=torch.float32`` half of ``custom_fwd``."""
    if not torch.is_autocast_enabled(device_type):
        return tensors
    return tuple(t.float() if t is not None and t.is_floating_point() else t for t in tensors)


@contextmanager
def autocast_off(device_type: str) -> Iterator[None]:
    """Autocast disabled for ``device_type`` (the other half of ``custom_fwd(cast_inputs=...)``)."""
    with torch.autocast(device_type, enabled=False):
        yield


def functorch_transforms() -> tuple[str, ...]:
    """The active ``torch.func`` transforms, outermost first, e.g. ``("vmap", "grad")``."""
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return tuple(i.key().name.lower() for i in retrieve_all_functorch_interpreters())


def only_grad_transforms() -> bool:
    """True when no transform other than ``torch.func.grad``/``vjp`` (reverse mode) is active:
    the hand-written backward passes compose with those, not with ``vmap`` or ``jvp``. Always
    True while ``torch.compile`` traces (Dynamo cannot read the transform stack)."""
    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is None:
        return True
    return all(name == "grad" for name in functorch_transforms())


def solve_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a factorisation runs in: float32 for half precisions (no bf16/fp16 kernels)."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def under_transform() -> bool:
    """True inside a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ...), where modules
    must not mutate captured state; False while ``torch.compile`` traces."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.peek_interpreter_stack() is not None
