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
from signalprop.nn.feedback import (  # noqa: F401 - re-exported
    Conv2dFeedback,
    LinearFeedback,
    conv2d_with_feedback,
    linear_with_feedback,
)


def _fa_linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    return linear_with_feedback(x, self.weight, self.bias, self.feedback)


def _fa_conv_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    if self.padding_mode != "zeros":
        raise ConfigError("feedback alignment supports padding_mode='zeros' only")
    return conv2d_with_feedback(x, self.weight, self.bias, self.feedback, self.stride,
                                self.padding, self.dilation, self.groups)


def feedback_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d layers (decorrelated ones included) in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def attach_feedback(module: nn.Module, scale: float = 1.0,
                    generator: torch.Generator | None = None) -> None:
    """Give ``module`` a fixed random ``feedback`` buffer and make its backward use it.

    ``B`` is drawn like Kaiming-uniform weights, ``U(-a, a)`` with ``a = scale * sqrt(6 /
    fan_in)`` (Ahmad's code uses ``kaiming_uniform_``, scale 1). Plain nn.Linear / nn.Conv2d get an
    FA forward; decorrelated layers route through FA themselves when ``feedback`` is set.
    """
    weight = module.weight
    fan_in = weight[0].numel()
    bound = scale * math.sqrt(6.0 / fan_in)
    feedback = torch.rand(weight.shape, generator=generator, dtype=torch.float32)
    feedback = ((2 * feedback - 1) * bound).to(device=weight.device, dtype=weight.dtype)
    if "feedback" in module._buffers:
        module._buffers["feedback"] = feedback
    else:
        module.register_buffer("feedback", feedback)
    if type(module) is nn.Linear:
        module.forward = types.MethodType(_fa_linear_forward, module)
    elif type(module) is nn.Conv2d:
        module.forward = types.MethodType(_fa_conv_forward, module)


class FeedbackAlignment(LearningRule):
    """Feedback alignment for every Linear/Conv2d layer (fixed random ``B_l``, seeded).

    The feedback matrices are model buffers, so checkpoints keep them.
    """

    name = "fa"

    def __init__(self, scale: float = 1.0, seed: int = 0) -> None:
        require_number("FeedbackAlignment", "scale", scale, low=0.0, open_low=True)
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"feedback scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.seed = int(seed)

    def attach(self, model: nn.Module) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        layers = feedback_layers(model)
        if not layers:
            raise ConfigError("feedback alignment needs a model with Linear or Conv2d layers")
        for _, module in layers:
            attach_feedback(module, self.scale, generator)

    def compute_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                          loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        output = model(inputs)
        loss = loss_fn(output, targets)
        if torch.isfinite(loss):
            loss.backward()
        return loss, output

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "seed": self.seed}


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


def _outside_sequential(model: nn.Module, names: list[str]) -> str:
    """The first container (``name (type)``) on the path to a layer that is not an
    ``nn.Sequential`` (decorrelated layers count as single layers); empty when there is none."""
    for name in names:
        parts = name.split(".")
        for depth in range(len(parts)):
            parent = ".".join(parts[:depth])
            module = model.get_submodule(parent)
            if not isinstance(module, nn.Sequential):
                return f"{parent or 'the model'} ({type(module).__name__})"
    return ""


class DirectFeedbackAlignment(LearningRule):
    """DFA: hidden layer ``l`` receives ``B_l e`` where ``e = dL/d(output)``, ``B_l`` fixed.

    ``derivative=True`` (canonical DFA) injects ``B_l e`` at each hidden layer's *input*, so the
    activation derivative ``f'(a)`` of the layer below still multiplies it; ``derivative=False``
    injects at each hidden layer's *output* (pre-activation), as in Ahmad's code. ``B_l`` entries
    are ``U(-a, a)``, ``a = scale * sqrt(3 / n_out)``. Models must apply their Linear/Conv2d
    layers in sequence (MLPs, plain CNNs); the last layer is the output layer.
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

    def attach(self, model: nn.Module) -> None:
        self.detach()
        layers = feedback_layers(model)
        if len(layers) < 2:
            raise ConfigError("direct feedback alignment needs at least two Linear/Conv2d layers")
        branching = _outside_sequential(model, [name for name, _ in layers])
        if branching:
            raise ConfigError(
                f"direct feedback alignment needs the Linear/Conv2d layers applied one after "
                f"another inside nn.Sequential containers, but {branching} is not (residual "
                "blocks and attention branch); use rule 'fa' or 'bp' for this model")
        targets = layers[1:] if self.derivative else layers[:-1]
        for name, module in targets:
            if self.derivative:
                hook = module.register_forward_pre_hook(self._make_pre_hook(name))
            else:
                hook = module.register_forward_hook(self._make_hook(name))
            self._handles.append(hook)
        self._active = False

    def detach(self) -> None:
        """Remove the injection hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

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
