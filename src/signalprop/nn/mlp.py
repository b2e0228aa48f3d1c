"""A plain fully connected network of any depth, the baseline the methods are compared with."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from signalprop.config import require_int
from signalprop.errors import ConfigError
from signalprop.nn.activations import ACTIVATIONS as REGISTRY
from signalprop.nn.activations import make_activation

#: Activation module classes by name, from :mod:`signalprop.nn.activations`.
ACTIVATIONS: dict[str, type[nn.Module]] = {name: spec.module for name, spec in REGISTRY.items()}


class MLP(nn.Module):
    """``depth`` layers ``h_{l+1} = phi(W_l h_l + b_l)`` of equal ``width``, then a linear head.

    Weights are drawn from ``N(0, gain^2 / fan_in)`` and biases are zero, so ``gain`` sets how
    close the network is to the edge of chaos (1 for tanh is the classic LeCun scale).
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int,
        activation: str = "tanh",
        gain: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("width", width), ("depth", depth),
                            ("out_features", out_features)):
            require_int("MLP", name, value)
        if not (isinstance(gain, int | float) and math.isfinite(gain) and gain > 0):
            raise ConfigError(f"MLP gain must be a finite number > 0, got {gain!r}")
        self.gain = float(gain)
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        features = in_features
        for _ in range(depth):
            layers += [nn.Linear(features, width, **factory), make_activation(activation)]
            features = width
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(features, out_features, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=self.gain / math.sqrt(module.in_features))
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.hidden(x.flatten(1)))

    def extra_repr(self) -> str:
        return f"gain={self.gain:g}"
