"""Drop-in Linear and Conv2d with a decorrelating matrix in front: ``a = W R (x - mu) + b``.

Ahmad, arXiv 2407.10780 (and Dalm et al., arXiv 2405.02385, for the fused kernel). ``R`` lives in
a :class:`~signalprop.nn.decorrelation.Decorrelator` child; autograd trains ``W`` through ``R``
(the weight gradient is ``delta z^T`` with ``z = R (x - mu)``). Applying ``R`` costs
``min(batch, out) * d^2``: the layer either fuses ``W_eff = W R`` (cheaper when ``out < batch``)
or maps the inputs ``z = (x - mu) R^T`` first. A convolution decorrelates its unfolded patches
(``d = C_in k_h k_w``) with the fused kernel ``W_eff = W R`` reshaped, so its forward costs the
same as the plain conv; only the 10% sub-sample of images is unfolded for the update.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signalprop.config import require_int
from signalprop.errors import ConfigError
from signalprop.nn.decorrelation import Decorrelator, centre
from signalprop.nn.feedback import conv2d_with_feedback, linear_with_feedback
from signalprop.nn.precision import under_transform

FUSE = ("auto", "always", "never")


def centring_bias(bias: Tensor | None, weight: Tensor, feedback: Tensor | None,
                  mu: Tensor) -> Tensor:
    """``b - W_eff mu``, folding the centring of ``a = W_eff (x - mu) + b`` into the bias.

    ``weight`` and ``feedback`` are ``(out, d)``. Under feedback alignment the error reaches ``mu``
    through ``B_eff`` like the rest of the input gradient (value unchanged, ``dW`` unchanged).
    """
    if feedback is None:
        shift = weight @ mu
    else:
        frozen = mu.detach()
        shift = weight @ frozen + feedback @ (mu - frozen)
    return -shift if bias is None else bias - shift


class DecorrelatedLinear(nn.Linear):
    """``nn.Linear`` on decorrelated inputs. Extra args go to :class:`Decorrelator`.

    ``fuse``: ``"always"`` computes ``a = (x - mu) (W R)^T + b`` with ``W_eff = W R`` formed once
    (``out d^2``, and ``out d^2`` more in backward for ``dW = dW_eff R^T``); ``"never"`` maps
    ``z = (x - mu) R^T`` first (``batch d^2``, twice when the input needs a gradient); ``"auto"``
    (default) picks the cheaper per call (:meth:`fused`). Both give the same outputs and gradients.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None, fuse: str = "auto",
                 **decorrelation: Any) -> None:
        require_int("DecorrelatedLinear", "in_features", in_features)
        require_int("DecorrelatedLinear", "out_features", out_features)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if fuse not in FUSE:
            raise ConfigError(f"fuse must be one of {list(FUSE)}, got {fuse!r}")
        self.fuse = fuse
        self.decorrelator = Decorrelator(in_features, device=device, dtype=dtype, **decorrelation)
        self._fuse_choices: dict[tuple[int, bool, bool, bool, bool], bool] = {}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fuse={self.fuse!r}"

    @classmethod
    def from_linear(cls, layer: nn.Linear, **options: Any) -> DecorrelatedLinear:
        """A decorrelated layer sharing ``layer``'s weight and bias Parameters (R = I)."""
        new = cls(layer.in_features, layer.out_features, layer.bias is not None,
                  device=layer.weight.device, dtype=layer.weight.dtype, **options)
        new.weight = layer.weight
        new.bias = layer.bias
        new.train(layer.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        dec = self.decorrelator
        rows = x.reshape(-1, self.in_features)
        mu = dec.mean(rows)
        index = None
        if dec.updating():
            index = dec.sample_index(rows.shape[0], rows.device)
        feedback = self._buffers.get("feedback")  # set by feedback alignment
        grad = torch.is_grad_enabled()
        if self.fused(rows.shape[0], grad and x.requires_grad, grad and self.weight.requires_grad,
                      feedback is not None, index is not None):
            if index is not None:
                dec.record(rows.detach()[index], mu)  # detach first: no autograd node
            weight = dec.right_multiply(self.weight)  # a = x W_eff^T + (b - W_eff mu)
            if feedback is None:
                return F.linear(x, weight, centring_bias(self.bias, weight, None, mu))
            feedback = dec.right_multiply(feedback)
            bias = centring_bias(self.bias, weight, feedback, mu)
            return linear_with_feedback(x, weight, bias, feedback)
        z = dec.apply(centre(rows, mu))
        if index is not None:
            dec.record(rows.detach()[index], mu, z.detach()[index])
        z = z.reshape(x.shape)
        if feedback is None:
            return F.linear(z, self.weight, self.bias)
        return linear_with_feedback(z, self.weight, self.bias, feedback)

    def fused(self, batch: int, input_grad: bool, weight_grad: bool, feedback: bool,
              recording: bool) -> bool:
        """Whether to fuse ``W_eff = W R``: the option with fewer multiply-adds.

        Fused: ``W R`` (``out`` rows), ``dW = dW_eff R^T`` if ``W`` needs a gradient (``out``),
        ``B R`` for feedback alignment (``out``) and the update sample's ``z_s = R (x_s - mu)``
        (``k``). Unfused: ``(x - mu) R^T`` (``batch``), and ``dz R`` if the input needs a
        gradient (``batch``). Each product of ``m`` rows costs
        :meth:`Decorrelator.product_cost` (``m d^2``, or ``m d b`` for blocks of ``b``, weighted
        by their slower rate, unless the product is small enough to be done densely).
        """
        if self.fuse != "auto":
            return self.fuse == "always"
        key = (batch, input_grad, weight_grad, feedback, recording)
        choice = self._fuse_choices.get(key)
        if choice is None:
            choice = self._fewer_macs_fused(*key)
            if len(self._fuse_choices) < 64:  # a few batch sizes per run
                self._fuse_choices[key] = choice
        return choice

    def _fewer_macs_fused(self, batch: int, input_grad: bool, weight_grad: bool,
                          feedback: bool, recording: bool) -> bool:
        cost = self.decorrelator.product_cost
        fused = cost(self.out_features) * (1 + weight_grad + feedback)
        if recording:
            fused += cost(self.decorrelator.sample_count(batch))
        return fused < cost(batch) * (2 if input_grad else 1)

    @torch.no_grad()
    def decorrelated_input(self, x: Tensor) -> Tensor:
        """``z = R (x - mu)`` for inputs ``x`` (no recording)."""
        rows = x.reshape(-1, self.in_features)
        mu = rows.mean(0) if (self.decorrelator.center and self.training) else (
            self.decorrelator.running_mean if self.decorrelator.center else 0.0)
        return self.decorrelator.apply(rows - mu).reshape(x.shape)


class DecorrelatedConv2d(nn.Conv2d):
    """``nn.Conv2d`` on decorrelated patches: kernel ``W R``, ``d = C_in k_h k_w``, groups=1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None,
                 **decorrelation: Any) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        if groups != 1:
            raise ConfigError("DecorrelatedConv2d supports groups=1 only")
        if padding_mode != "zeros" or isinstance(self.padding, str):
            raise ConfigError("DecorrelatedConv2d supports numeric zero padding only")
        self.patch_features = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.decorrelator = Decorrelator(self.patch_features, device=device, dtype=dtype,
                                         **decorrelation)

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, **options: Any) -> DecorrelatedConv2d:
        """A decorrelated conv sharing ``layer``'s weight and bias Parameters (R = I)."""
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                  layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                  layer.padding_mode, device=layer.weight.device, dtype=layer.weight.dtype,
                  **options)
        new.weight = layer.weight
        new.bias = layer.bias
        new.train(layer.training)
        return new

    def patches(self, x: Tensor) -> Tensor:
        """Unfolded patches as rows ``(N * L, C_in k_h k_w)``."""
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        return cols.transpose(1, 2).reshape(-1, self.patch_features)

    def forward(self, x: Tensor) -> Tensor:
        dec = self.decorrelator
        mu = None
        if dec.center:
            if dec._fixed_mean is not None:
                mu = dec._fixed_mean.to(x.dtype)
            elif self.training:
                mean_image = x.sum(0, keepdim=True) * (1.0 / x.shape[0])  # see Decorrelator.mean
                mu = self.patches(mean_image).mean(0)
                if not under_transform():  # a torch.func transform must stay pure
                    dec._last_mean = mu.detach()
                    if dec.recording:
                        with torch.no_grad():
                            dec.running_mean.lerp_(mu.detach().to(dec.running_mean.dtype),
                                                   dec.momentum)
            else:
                mu = dec.running_mean
        if dec.updating():
            images = x[dec.sample_index(x.shape[0], x.device)]
            sample_mu = mu if mu is not None else torch.zeros_like(dec.running_mean)
            dec.record(self.patches(images.detach()), sample_mu)
        shape = self.weight.shape
        weight = dec.right_multiply(self.weight.reshape(shape[0], -1))
        feedback = self._buffers.get("feedback")  # set by feedback alignment
        if feedback is not None:
            feedback = dec.right_multiply(feedback.reshape(shape[0], -1))
        bias = self.bias
        if mu is not None:
            bias = centring_bias(bias, weight, feedback, mu)
        if feedback is None:
            return F.conv2d(x, weight.reshape(shape), bias, self.stride, self.padding,
                            self.dilation)
        return conv2d_with_feedback(x, weight.reshape(shape), bias, feedback.reshape(shape),
                                    self.stride, self.padding, self.dilation)

    @torch.no_grad()
    def decorrelated_input(self, x: Tensor) -> Tensor:
        """Decorrelated patches ``z = R (p - mu)`` as rows (no recording)."""
        rows = self.patches(x)
        dec = self.decorrelator
        mu = (rows.mean(0) if self.training else dec.running_mean) if dec.center else 0.0
        return dec.apply(rows - mu)

