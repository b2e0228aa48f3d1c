"""Linear maps whose backward sends the error through a fixed feedback matrix ``B``.

Feedback alignment (Lillicrap et al. 2016, arXiv 1411.0247): ``y = x W^T + b`` forward, but
``dL/dx = dL/dy B`` instead of ``dL/dy W``; the weight gradient stays ``dL/dy^T x``. A
decorrelated layer passes its error through ``B R`` (Ahmad, arXiv 2407.10780). The learning
rules that attach ``B`` live in :mod:`signalprop.learning.feedback_alignment`.

The Functions use ``setup_context``, so they compose with ``torch.func``: ``grad``/``vjp`` use
the feedback backward, ``vmap`` batches them by rule generation, and ``jvp`` is the exact
forward derivative of the forward map (forward mode has no feedback path). Under autocast they
follow the caller's precision (see :mod:`signalprop.nn.precision`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from signalprop.errors import ConfigError
from signalprop.nn.precision import autocast_state, replay_autocast


class LinearFeedback(torch.autograd.Function):
    """``y = x W^T + b`` whose backward gives ``dx = dy B`` (B fixed), ``dW = dy^T x``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor) -> Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, weight, bias, feedback = inputs
        ctx.save_for_backward(x, feedback)
        ctx.save_for_forward(x, weight)
        ctx.has_bias = bias is not None
        ctx.autocast = autocast_state(x.device.type)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        x, feedback = ctx.saved_tensors
        with replay_autocast(ctx.autocast):
            grad_x = grad @ feedback.to(grad.dtype) if ctx.needs_input_grad[0] else None
            flat_grad = grad.reshape(-1, grad.shape[-1])
            grad_w = (flat_grad.T @ x.reshape(-1, x.shape[-1]).to(grad.dtype)
                      if ctx.needs_input_grad[1] else None)
            grad_b = flat_grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None

    @staticmethod
    def jvp(ctx: Any, dx: Tensor | None, dweight: Tensor | None, dbias: Tensor | None,
            dfeedback: Tensor | None) -> Tensor:
        x, weight = ctx.saved_tensors
        with replay_autocast(ctx.autocast):
            out = torch.zeros_like(F.linear(x, weight))
            if dx is not None:
                out = out + F.linear(dx, weight)
            if dweight is not None:
                out = out + F.linear(x, dweight)
            if dbias is not None:
                out = out + dbias
        return out


class Conv2dFeedback(torch.autograd.Function):
    """2-D convolution whose input gradient uses the fixed kernel ``B`` instead of ``W``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor,
                stride: Any, padding: Any, dilation: Any, groups: int) -> Tensor:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, weight, bias, feedback, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, feedback)
        ctx.save_for_forward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, weight.shape, bias is not None)
        ctx.autocast = autocast_state(x.device.type)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        x, feedback = ctx.saved_tensors
        stride, padding, dilation, groups, w_shape, has_bias = ctx.conf
        grad_x = grad_w = grad_b = None
        with replay_autocast(ctx.autocast):
            if ctx.needs_input_grad[0]:
                grad_x = torch.nn.grad.conv2d_input(
                    x.shape, feedback.to(grad.dtype), grad, stride, padding, dilation, groups)
            if ctx.needs_input_grad[1]:
                grad_w = torch.nn.grad.conv2d_weight(
                    x.to(grad.dtype), w_shape, grad, stride, padding, dilation, groups)
            if has_bias and ctx.needs_input_grad[2]:
                grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, dx: Tensor | None, dweight: Tensor | None, dbias: Tensor | None,
            *unused: Any) -> Tensor:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, _, _ = ctx.conf
        with replay_autocast(ctx.autocast):
            out = torch.zeros_like(F.conv2d(x, weight, None, stride, padding, dilation, groups))
            if dx is not None:
                out = out + F.conv2d(dx, weight, None, stride, padding, dilation, groups)
            if dweight is not None:
                out = out + F.conv2d(x, dweight, None, stride, padding, dilation, groups)
            if dbias is not None:
                out = out + dbias.reshape(1, -1, 1, 1)
        return out


def linear_with_feedback(x: Tensor, weight: Tensor, bias: Tensor | None,
                         feedback: Tensor) -> Tensor:
    """Functional FA linear map (see :class:`LinearFeedback`)."""
    return LinearFeedback.apply(x, weight, bias, feedback)


def conv2d_with_feedback(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor,
                         stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                         groups: int = 1) -> Tensor:
    """Functional FA convolution (see :class:`Conv2dFeedback`)."""
    if isinstance(padding, str):
        raise ConfigError("feedback alignment supports numeric conv padding only")
    return Conv2dFeedback.apply(x, weight, bias, feedback, stride, padding, dilation, groups)
