"""The networks of the three target-space experiments (Fairbank, Samothrakis & Citi, "Deep
Learning in Target Space", JMLR 2022, arXiv 2006.01578), each in weight space or in target
space.

In target space a layer's weights are not parameters: the parameters are the layer's targets
``T`` on a fixed minibatch ``X̄`` of inputs, and the weights are the least-squares solution
``W = argmin ||X̄ W − T||² + λ||W||²`` recomputed in every forward pass (section 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from signalprop.config import in_range, one_of, positive, positive_fields
from signalprop.data.splits import Splits, tensors
from signalprop.errors import ConfigError
from signalprop.experiments.registry import Model
from signalprop.nn.target_space import (
    MODES,
    ShortcutMLP,
    TargetConv2d,
    TargetLinear,
    TargetSpaceMLP,
    TargetSpaceSequential,
    target_minibatch,
)
from signalprop.nn.target_space_rnn import ElmanRNN, TargetSpaceRNN

PAPER = "Fairbank, Samothrakis & Citi, Deep Learning in Target Space, JMLR 2022 (arXiv 2006.01578)"
SPACES = ("target", "weight")


def space_models(net: str, build: Callable[[str, Any, Splits], nn.Module],
                 note: str = "") -> dict[str, Model]:
    """One model per space (:data:`SPACES`): "the ``net`` trained in <side> space``note``",
    made by ``build(side, config, splits)``."""
    return {side: Model(f"the {net} trained in {side} space{note}",
                        lambda cfg, splits, side=side: build(side, cfg, splits))
            for side in SPACES}


def x_bar(splits: Splits, n_bar: int) -> torch.Tensor:
    """The target minibatch X̄: the first ``n_bar`` training inputs (all, when fewer)."""
    x_train = tensors(splits.train)[0]
    return target_minibatch(x_train, min(n_bar, x_train.shape[0]))


# ------------------------------------------------------------------------------ spirals
@dataclass(frozen=True)
class SpiralsModel:
    """The paper's narrow MLP: ``depth`` layers of ``width`` with dense shortcuts; in target
    space solved with ridge ``ridge`` by ``mode``."""

    width: int = 5
    depth: int = 3
    shortcuts: bool = True
    activation: str = "tanh"
    ridge: float = 1e-3
    mode: str = "scu"

    def __post_init__(self) -> None:
        positive_fields(self, "model", "width", "depth")
        in_range("model.ridge", self.ridge, 0.0, 1e6)
        one_of("model.mode", self.mode, MODES)


def spirals_model(side: str, x: torch.Tensor, m: SpiralsModel) -> nn.Module:
    """The shortcut MLP in weight space, or in target space with X̄ = ``x``."""
    if side == "target":  # X̄ = the whole training set (section 3.1, two spirals)
        return TargetSpaceMLP(x, m.width, m.depth, 2, activation=m.activation,
                              shortcuts=m.shortcuts, ridge=m.ridge, mode=m.mode)
    return ShortcutMLP(2, m.width, m.depth, 2, m.activation, m.shortcuts)


# ------------------------------------------------------------------------------ images
@dataclass(frozen=True)
class ImagesModel:
    """An MLP (``mlp_depth`` tanh layers of ``mlp_width``) and a CNN (stride-2 convolutions of
    ``cnn_channels``, leaky ReLU), with the authors' ridge λ per architecture."""

    mlp_width: int = 100
    mlp_depth: int = 2
    cnn_channels: tuple[int, ...] = (16, 32)
    kernel: int = 3
    n_bar: int = 100
    mlp_ridge: float = 1e-3
    cnn_ridge: float = 0.1
    cnn_init_std: float = 0.1

    def __post_init__(self) -> None:
        positive_fields(self, "model", "mlp_width", "mlp_depth", "kernel", "n_bar")
        in_range("model.mlp_ridge", self.mlp_ridge, 0.0, 1e6)
        in_range("model.cnn_ridge", self.cnn_ridge, 0.0, 1e6)
        positive("model.cnn_init_std", self.cnn_init_std)
        if not self.cnn_channels:
            raise ConfigError("model.cnn_channels must not be empty")


def _to_target(layer: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        return TargetConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                            layer.stride, layer.padding)
    if isinstance(layer, nn.Linear):
        return TargetLinear(layer.in_features, layer.out_features)
    return layer


def cnn_layers(in_shape: tuple[int, ...], cfg: ImagesModel, classes: int) -> list[nn.Module]:
    """Conv stack (stride 2, leaky ReLU as in the paper's CNNs) then a dense output layer.

    A 1-D input (the MNIST-1D fallback) is treated as a 1 x L image with 1 x k kernels.
    """
    image = len(in_shape) == 3
    channels = in_shape[0] if image else 1
    kernel, stride = ((cfg.kernel, cfg.kernel), (2, 2)) if image else ((1, cfg.kernel), (1, 2))
    padding = (cfg.kernel // 2, cfg.kernel // 2) if image else (0, cfg.kernel // 2)
    layers: list[nn.Module] = [] if image else [nn.Unflatten(1, (1, 1, in_shape[-1]))]
    for out in cfg.cnn_channels:
        layers += [nn.Conv2d(channels, out, kernel, stride, padding), nn.LeakyReLU(0.01)]
        channels = out
    features = nn.Sequential(*layers)(torch.zeros(1, *in_shape)).flatten(1).shape[1]
    return [*layers, nn.Flatten(), nn.Linear(features, classes)]


def mlp_layers(in_features: int, cfg: ImagesModel, classes: int, target: bool
               ) -> list[nn.Module]:
    """Flatten, ``mlp_depth`` x (dense, tanh), a dense output layer (target-space dense layers
    for ``target``)."""
    dense = TargetLinear if target else nn.Linear
    layers: list[nn.Module] = [nn.Flatten()]
    features = in_features
    for _ in range(cfg.mlp_depth):
        layers += [dense(features, cfg.mlp_width), nn.Tanh()]
        features = cfg.mlp_width
    return [*layers, dense(features, classes)]


def images_model(arch: str, side: str, splits: Splits, cfg: ImagesModel) -> nn.Module:
    """The MLP or CNN in weight space, or in target space with X̄ = the first ``n_bar``
    training inputs (every Linear/Conv2d swapped for its target-space layer)."""
    shape, classes = tuple(splits.input_shape), int(splits.num_classes)
    target = side == "target"
    if arch == "mlp":
        layers = mlp_layers(math.prod(shape), cfg, classes, target)
        ridge, init_std = cfg.mlp_ridge, 1.0
    else:
        layers = cnn_layers(shape, cfg, classes)
        layers = [_to_target(m) for m in layers] if target else layers
        ridge, init_std = cfg.cnn_ridge, cfg.cnn_init_std
    if not target:
        return nn.Sequential(*layers)
    return TargetSpaceSequential(x_bar(splits, cfg.n_bar), layers, ridge=ridge,
                                 init_std=init_std)


# ------------------------------------------------------------------------------ recall
@dataclass(frozen=True)
class RecallModel:
    """The tanh RNN with ``k + extra_hidden`` units (the paper's k + 3); in target space its
    X̄ is ``n_bar`` training sequences and its ridge ``ridge``."""

    extra_hidden: int = 3
    n_bar: int = 100
    ridge: float = 0.1

    def __post_init__(self) -> None:
        positive_fields(self, "model", "extra_hidden", "n_bar")
        in_range("model.ridge", self.ridge, 0.0, 1e6)


def recall_model(side: str, splits: Splits, cfg: RecallModel, k: int) -> nn.Module:
    hidden = k + cfg.extra_hidden
    if side == "weight":
        return ElmanRNN(1, hidden, 2)
    return TargetSpaceRNN(x_bar(splits, cfg.n_bar), hidden, 2, ridge=cfg.ridge)
