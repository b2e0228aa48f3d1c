"""ResNet-18 (He et al. 2016, arXiv 1512.03385) for small images, laid out like torchvision's.

``resnet18(num_classes, in_channels)`` is ``torchvision.models.resnet18(num_classes=...)`` with
the stem adapted to 28x28 inputs (the usual CIFAR/MNIST adaptation): ``conv1`` is a 3x3,
stride-1 conv from ``in_channels`` and the stem max-pool is dropped. Module names, shapes and
initialisation follow torchvision (``conv1``, ``bn1``, ``layer1..4`` of two ``BasicBlock`` each
with ``downsample`` where the shape changes, ``fc``), so a state dict loads into torchvision's
model with the same stem. When torchvision is installed (``signalprop[vision]``),
``torchvision_resnet18`` builds its model with the same stem instead.

A basic block is ``y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError


def _conv3x3(cin: int, cout: int, stride: int = 1, **factory: Any) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False, **factory)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN stages and a residual shortcut (1x1 conv + BN when the shape changes)."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.cin, self.cout, self.stride = cin, cout, stride
        self.conv1 = _conv3x3(cin, cout, stride, **factory)
        self.bn1 = nn.BatchNorm2d(cout, **factory)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout, 1, **factory)
        self.bn2 = nn.BatchNorm2d(cout, **factory)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False, **factory),
                                            nn.BatchNorm2d(cout, **factory))

    def extra_repr(self) -> str:
        return f"cin={self.cin}, cout={self.cout}, stride={self.stride}"

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet with basic blocks and a small-image stem (3x3 conv, no max-pool)."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10,
                 in_channels: int = 1, width: int = 64, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or width < 1 or not layers:
            raise ConfigError(f"ResNet needs positive num_classes, in_channels and width and at "
                              f"least one stage, got {num_classes}, {in_channels}, {width}, "
                              f"{layers}")
        factory = {"device": device, "dtype": dtype}
        self.layers, self.num_classes = tuple(layers), num_classes
        self.in_channels, self.width = in_channels, width
        self.conv1 = _conv3x3(in_channels, width, 1, **factory)
        self.bn1 = nn.BatchNorm2d(width, **factory)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        cin = width
        for i, blocks in enumerate(layers):
            cout = width * 2**i
            stage = [BasicBlock(cin, cout, 1 if i == 0 else 2, **factory)]
            stage += [BasicBlock(cout, cout, 1, **factory) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            cin = cout
        self.stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes, **factory)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return (f"layers={self.layers}, num_classes={self.num_classes}, "
                f"in_channels={self.in_channels}, width={self.width}")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, in_channels: int = 1, width: int = 64,
             **factory: Any) -> ResNet:
    """ResNet-18 (11.2M parameters at width 64) for ``in_channels`` x 28 x 28 images."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, **factory)


def torchvision_resnet18(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """``torchvision.models.resnet18(num_classes=...)`` with the same small-image stem.

    Needs the ``vision`` extra; raises ``ConfigError`` when torchvision cannot be imported.
    """
    try:
        from torchvision.models import resnet18 as tv_resnet18
    except Exception as exc:  # a torchvision built for another torch raises RuntimeError
        raise ConfigError(f"torchvision is not usable ({type(exc).__name__}: {exc}); install "
                          "the extra: pip install 'signalprop[vision]'") from None
    model = tv_resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model
