"""Feedback alignment (FA) and direct feedback alignment (DFA).

FA (Lillicrap et al. 2016, arXiv 1411.0247): the backward pass sends the error through a fixed
random matrix ``B`` of W's shape instead of ``W^T``: ``delta_in = delta B`` while the weight
gradient stays ``delta z^T``. The custom autograd Functions for Linear and Conv2d live in
:mod:`signalprop.nn.feedback` (so that ``nn`` needs nothing from ``learning``); a decorrelated
layer passes its error through the exact ``R^T`` (Ahmad, arXiv 2407.10780), so the feedback it
uses is ``B R``.

DFA (Nokland 2016, arXiv 1609.01596): every hidden layer gets the output error ``e = dL/dy``
through its own fixed random matrix: ``delta_l = (B_l e) * f'(a_l)``. With
``derivative=False`` the ``f'`` factor is dropped (the error is injected at the pre-activation),
as in Ahmad's code (straight-through activation).
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.config import require_number
from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule, LossFn
from signalprop.learning.coverage import refuse_unreached
from signalprop.nn.feedback import (  # noqa: F401 - re-exported
    Conv2dFeedback,
    LinearFeedback,
    conv2d_with_feedback,
    linear_with_feedback,
)
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterMLP, AdditiveFilterStack
from signalprop.nn.stack_tap import StackTap


def _fa_linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    return linear_with_feedback(x, self.weight, self.bias, self.feedback)


def _fa_conv_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    return conv2d_with_feedback(x, self.weight, self.bias, self.feedback, self.stride,
                                self.padding, self.dilation, self.groups)


def feedback_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d layers (decorrelated ones included) in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def _reachable(module: nn.Module) -> bool:
    """Whether feedback alignment can send its error through ``module``'s own ``B``: a plain
    Linear/Conv2d (forward replaced), a decorrelated one (routes through ``B R`` itself) or an
    additive-filter stack (``B_l`` per layer in its backward)."""
    if isinstance(module, AdditiveFilterStack):
        return True
    if type(module) in (nn.Linear, nn.Conv2d):
        return True
    return isinstance(module, nn.Linear | nn.Conv2d) and hasattr(module, "decorrelator")


def draw_feedback(shape: torch.Size, fan_in: int, scale: float,
                  generator: torch.Generator | None) -> Tensor:
    """``B ~ U(-a, a)``, ``a = scale * sqrt(6 / fan_in)`` (Kaiming-uniform, as Ahmad's code)."""
    bound = scale * math.sqrt(6.0 / fan_in)
    return (2 * torch.rand(shape, generator=generator, dtype=torch.float32) - 1) * bound


def attach_feedback(module: nn.Module, scale: float = 1.0,
                    generator: torch.Generator | None = None,
                    feedback: Tensor | None = None) -> Tensor | None:
    """Give ``module`` a fixed random ``feedback`` buffer and make its backward use it.

    ``B`` is drawn by :func:`draw_feedback` (``fan_in`` of one output unit; per layer for an
    additive-filter stack, ``(L, n, n)``) unless ``feedback`` is given. The buffer is not
    persistent (``state_dict`` does not hold it; :class:`FeedbackAlignment` saves it in its own
    state). Plain nn.Linear / nn.Conv2d get an FA forward; decorrelated layers and the stack
    route through ``B`` themselves when ``feedback`` is set. Returns the buffer it replaced.
    """
    weight = module.weight
    fan_in = weight.shape[-1] if isinstance(module, AdditiveFilterStack) else weight[0].numel()
    if feedback is None:
        feedback = draw_feedback(weight.shape, fan_in, scale, generator)
    feedback = feedback.to(device=weight.device, dtype=weight.dtype)
    previous = module._buffers.pop("feedback", None)
    module.register_buffer("feedback", feedback, persistent=False)
    if type(module) is nn.Linear:
        module.forward = types.MethodType(_fa_linear_forward, module)
    elif type(module) is nn.Conv2d:
        module.forward = types.MethodType(_fa_conv_forward, module)
    return previous


def detach_feedback(module: nn.Module, previous: Tensor | None = None) -> None:
    """Undo :func:`attach_feedback`: the class's own ``forward`` and the buffer it had before."""
    module.__dict__.pop("forward", None)
    module._buffers.pop("feedback", None)
    module._non_persistent_buffers_set.discard("feedback")
    if previous is not None:
        module.register_buffer("feedback", previous)


def _legacy_loader(module: nn.Module) -> Any:
    """A load-state-dict pre-hook taking ``<prefix>feedback`` out of a model state dict: older
    checkpoints saved FA's matrices with the model; they now go into the attached buffer."""
    def hook(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        old = state_dict.pop(prefix + "feedback", None)
        buffer = module._buffers.get("feedback")
        if old is not None and buffer is not None and old.shape == buffer.shape:
            with torch.no_grad():
                buffer.copy_(old)
    return hook


class FeedbackAlignment(LearningRule):
    """Feedback alignment for every Linear/Conv2d layer and additive-filter stack (fixed random
    ``B_l``, seeded); any other layer with trainable weights is refused by name.

    The feedback matrices are non-persistent buffers while the rule is attached (they follow
    ``model.to``) and live in the rule's :meth:`state_dict`, so checkpoints keep them while
    the model's own ``state_dict`` stays that of the plain model; :meth:`detach` removes them
    and the replaced ``forward`` methods.
    """

    name = "fa"

    def __init__(self, scale: float = 1.0, seed: int = 0) -> None:
        require_number("FeedbackAlignment", "scale", scale, low=0.0, open_low=True)
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"feedback scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.seed = int(seed)
        self._attached: list[tuple[str, nn.Module, Tensor | None]] = []
        self._handles: list[Any] = []
        self._saved: dict[str, Tensor] = {}

    def attach(self, model: nn.Module) -> None:
        self.detach()
        layers = [(n, m) for n, m in model.named_modules() if _reachable(m)]
        refuse_unreached("feedback alignment", model, {id(m) for _, m in layers})
        if not layers:
            raise ConfigError("feedback alignment needs a model with Linear or Conv2d layers")
        for name, module in layers:
            if isinstance(module, nn.Conv2d) and (module.padding_mode != "zeros"
                                                  or isinstance(module.padding, str)):
                raise ConfigError(f"feedback alignment cannot train {name!r} (Conv2d): it "
                                  "supports numeric zero padding only; use rule 'bp'")
        generator = torch.Generator().manual_seed(self.seed)
        for name, module in layers:
            saved = self._saved.get(name)
            if saved is not None and saved.shape != module.weight.shape:
                saved = None
            drawn = draw_feedback(module.weight.shape, module.weight.shape[-1]
                                  if isinstance(module, AdditiveFilterStack)
                                  else module.weight[0].numel(), self.scale, generator)
            previous = attach_feedback(module, feedback=drawn if saved is None else saved)
            self._attached.append((name, module, previous))
            self._handles.append(module._register_load_state_dict_pre_hook(_legacy_loader(module)))

    def detach(self) -> None:
        """Restore every layer's own ``forward`` and remove the feedback buffers (kept in the
        rule's state for a later :meth:`attach`)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for name, module, previous in self._attached:
            self._saved[name] = module._buffers["feedback"].detach().cpu()
            detach_feedback(module, previous)
        self._attached = []

    def compute_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                          loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        output = model(inputs)
        loss = loss_fn(output, targets)
        if torch.isfinite(loss):
            loss.backward()
        return loss, output

    def state_dict(self) -> dict[str, Any]:
        feedback = dict(self._saved)
        feedback.update({name: module._buffers["feedback"].detach().cpu()
                         for name, module, _ in self._attached})
        return {"scale": self.scale, "seed": self.seed, "feedback": feedback}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the feedback matrices (into the attached layers, or for the next attach)."""
        self._saved = {k: v.detach().clone() for k, v in state.get("feedback", {}).items()}
        for name, module, _ in self._attached:
            saved = self._saved.get(name)
            if saved is not None and saved.shape == module._buffers["feedback"].shape:
                module._buffers["feedback"].copy_(saved)


class _Inject(torch.autograd.Function):
    """Identity forward; backward replaces the incoming gradient with ``e B^T`` (DFA)."""

    @staticmethod
    def forward(x: Tensor, holder: dict, key: str) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, holder, key = inputs
        ctx.holder, ctx.key, ctx.shape = holder, key, x.shape

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        error = ctx.holder["error"].reshape(ctx.holder["error"].shape[0], -1)
        matrix = ctx.holder["matrix"](ctx.key, math.prod(ctx.shape[1:]), error)
        direct = error @ matrix.T
        return direct.reshape(ctx.shape), None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, *args: Any) -> Any:
        raise ConfigError("direct feedback alignment cannot run under torch.func.vmap: its "
                          "error reaches the layers through a side channel, not a tensor")


def _in_order(module: nn.Module) -> bool:
    """Containers known to apply their children one after another."""
    return isinstance(module, nn.Sequential | MLP | AdditiveFilterMLP)


def _outside_sequential(model: nn.Module, names: list[str]) -> str:
    """The first container (``name (type)``) on the path to a layer that does not apply its
    children one after another (decorrelated layers count as single layers); empty when there
    is none."""
    for name in names:
        parts = name.split(".")
        for depth in range(len(parts)):
            parent = ".".join(parts[:depth])
            module = model.get_submodule(parent)
            if not _in_order(module):
                return f"{parent or 'the model'} ({type(module).__name__})"
    return ""


class _StackInjection(StackTap):
    """DFA inside an additive-filter stack: ``B_l e`` replaces the gradient at layer ``l``'s
    input state (``derivative=True``) or at its pre-activation ``z_l``."""

    def __init__(self, rule: DirectFeedbackAlignment, name: str, states: set[int],
                 sums: set[int]) -> None:
        self.rule, self.name, self.states, self.sums = rule, name, states, sums

    def state(self, layer: int, h: Tensor) -> Tensor:
        if not self.rule._active or layer not in self.states:
            return h
        return _Inject.apply(h, self.rule._holder, f"{self.name}.{layer}")

    def pre_activation(self, layer: int, u: Tensor, z: Tensor) -> Tensor:
        if not self.rule._active or layer not in self.sums:
            return z
        return _Inject.apply(z, self.rule._holder, f"{self.name}.{layer}")


class DirectFeedbackAlignment(LearningRule):
    """DFA: hidden layer ``l`` receives ``B_l e`` where ``e = dL/d(output)``, ``B_l`` fixed.

    ``derivative=True`` (canonical DFA) injects ``B_l e`` at each hidden layer's *input*, so the
    activation derivative ``f'(a)`` of the layer below still multiplies it; ``derivative=False``
    injects at each hidden layer's *output* (pre-activation), as in Ahmad's code. ``B_l`` entries
    are ``U(-a, a)``, ``a = scale * sqrt(3 / n_out)``. Models must apply their Linear/Conv2d
    layers in sequence (``nn.Sequential``, :class:`~signalprop.nn.mlp.MLP`,
    :class:`~signalprop.nn.orthogonal.AdditiveFilterMLP`, whose stack's layers each get their
    own ``B_l``); the last layer is the output layer. Other layers with weights are refused.
    """

    name = "dfa"

    def __init__(self, scale: float = 1.0, derivative: bool = True, seed: int = 0) -> None:
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"feedback scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.derivative = bool(derivative)
        self.seed = int(seed)
        self.feedback: dict[str, Tensor] = {}
        self._holder: dict[str, Any] = {"matrix": self._matrix}
        self._handles: list[Any] = []
        self._stacks: list[AdditiveFilterStack] = []
        self._active = False

    def attach(self, model: nn.Module) -> None:
        self.detach()
        units: list[tuple[str, nn.Module, int | None]] = []
        for name, module in model.named_modules():
            if isinstance(module, AdditiveFilterStack):
                units += [(f"{name}.{i}", module, i) for i in range(module.depth)]
            elif isinstance(module, nn.Linear | nn.Conv2d):
                units.append((name, module, None))
        refuse_unreached("direct feedback alignment", model, {id(m) for _, m, _ in units})
        if len(units) < 2:
            raise ConfigError("direct feedback alignment needs at least two Linear/Conv2d layers")
        names = list(dict.fromkeys(k.rsplit(".", 1)[0] if i is not None else k
                                   for k, _, i in units))
        branching = _outside_sequential(model, names)
        if branching:
            raise ConfigError(
                f"direct feedback alignment needs the Linear/Conv2d layers applied one after "
                f"another inside nn.Sequential containers, but {branching} is not (residual "
                "blocks, gates and attention branch); use rule 'fa' or 'bp' for this model")
        targets = units[1:] if self.derivative else units[:-1]
        taps: dict[int, _StackInjection] = {}
        for key, module, index in targets:
            if index is not None:
                stack_name = key.rsplit(".", 1)[0]
                tap = taps.setdefault(id(module), _StackInjection(self, stack_name, set(), set()))
                (tap.states if self.derivative else tap.sums).add(index)
                module.tap = tap
                self._stacks.append(module)
            elif self.derivative:
                self._handles.append(module.register_forward_pre_hook(self._make_pre_hook(key)))
            else:
                self._handles.append(module.register_forward_hook(self._make_hook(key)))
        self._active = False

    def detach(self) -> None:
        """Remove the injection hooks (and additive-filter taps) from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for stack in self._stacks:
            stack.tap = None
        self._stacks = []

    def _matrix(self, key: str, numel: int, error: Tensor) -> Tensor:
        """``B_l`` (numel x n_out), drawn on first use from a seed fixed by the layer name."""
        if key not in self.feedback:
            n_out = error.shape[1]
            seed = self.seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(key)) % 99991
            generator = torch.Generator().manual_seed(seed)
            bound = self.scale * math.sqrt(3.0 / n_out)
            raw = torch.rand(numel, n_out, generator=generator)
            self.feedback[key] = (2 * raw - 1) * bound
        matrix = self.feedback[key]
        if matrix.device != error.device or matrix.dtype != error.dtype:
            matrix = self.feedback[key] = matrix.to(error.device, error.dtype)
        return matrix

    def _make_pre_hook(self, key: str):
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            if not self._active:
                return None
            return (_Inject.apply(args[0], self._holder, key), *args[1:])
        return hook

    def _make_hook(self, key: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            if not self._active:
                return None
            return _Inject.apply(output, self._holder, key)
        return hook

    def compute_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                          loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        self._active = True
        try:
            output = model(inputs)
        finally:
            self._active = False
        loss = loss_fn(output, targets)
        if output.requires_grad:
            output.register_hook(lambda g: self._holder.__setitem__("error", g))
        if torch.isfinite(loss):
            loss.backward()
        self._holder.pop("error", None)
        return loss, output

    def state_dict(self) -> dict[str, Any]:
        return {"feedback": {k: v.cpu() for k, v in self.feedback.items()},
                "scale": self.scale, "derivative": self.derivative, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.feedback.clear()
        self.feedback.update(state.get("feedback", {}))
