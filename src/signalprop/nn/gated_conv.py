"""Convolutional deep gated network with global average pooling (the NPF paper's GCONV).

Gated 'same' convolutions, then global average pooling of both the value and the feature
path, then gated dense layers and a linear head (arXiv 2006.10529, Sec. 5; NPK of a
convolutional DGN with pooling: arXiv 2110.03403). Every hidden layer is gated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from signalprop.errors import ConfigError
from signalprop.nn.gated import GatedNetwork, build_variant, check_positive_int


class GatedConvNet(GatedNetwork):
    """``conv(channels[i], k×k, same) → gate`` for each entry of ``channels``, global average
    pooling, ``dense(width) → gate`` for each entry of ``dense``, then a linear head.

    Defaults are the paper's GCONV: channels (64, 64, 128, 128), dense (256, 256), 3×3.
    Options (gating, gate, ...) are those of :class:`~signalprop.nn.gated.GatedNetwork`.
    """

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        *,
        channels: Sequence[int] = (64, 64, 128, 128),
        dense: Sequence[int] = (256, 256),
        kernel_size: int = 3,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        factory = {"device": device, "dtype": dtype}
        check_positive_int("GatedConvNet", "in_channels", in_channels)
        check_positive_int("GatedConvNet", "out_features", out_features)
        check_positive_int("GatedConvNet", "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ConfigError(f"GatedConvNet kernel_size must be odd for 'same' padding, "
                              f"got {kernel_size}")
        channels, dense = tuple(channels), tuple(dense)
        if not channels:
            raise ConfigError("GatedConvNet needs at least one convolution in channels")
        for value in (*channels, *dense):
            check_positive_int("GatedConvNet", "channels/dense entry", value)
        self.in_channels, self.out_features, self.bias = in_channels, out_features, bias
        self.channels, self.dense, self.kernel_size = channels, dense, kernel_size

        def build() -> nn.ModuleList:
            layers: list[nn.Module] = []
            sizes = (in_channels, *channels)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                layers.append(nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2, bias=bias,
                                        **factory))
            sizes = (channels[-1], *dense)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                layers.append(nn.Linear(a, b, bias=bias, **factory))
            return nn.ModuleList(layers)

        self.value_layers = build()
        self.feature_layers = build() if self.gating == "separate" else nn.ModuleList()
        self.head = nn.Linear((channels + dense)[-1], out_features, bias=bias, **factory)
        self.pool_after = len(channels) - 1
        self.reset_parameters()

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_features={self.out_features}, "
                f"channels={self.channels}, dense={self.dense}, kernel_size={self.kernel_size}, "
                f"bias={self.bias}, " + super().extra_repr())


def gated_conv_net(
    variant: str,
    in_channels: int,
    out_features: int,
    *,
    gates_from: nn.Module | None = None,
    **overrides: Any,
) -> GatedConvNet:
    """A :class:`GatedConvNet` of a named variant (see :data:`signalprop.nn.gated.VARIANTS`).

    Constructor options other than the variant's (channels, dense, kernel_size, bias, ...) go
    in ``overrides``.
    """
    return build_variant(GatedConvNet, variant, (in_channels, out_features), gates_from,
                         overrides)
