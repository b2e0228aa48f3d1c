"""A registry of signalprop's public modules, each with a small instance and an example input.

``MODULES[name]`` is a :class:`ModuleSpec`; ``spec.build(device=..., dtype=...)`` constructs a
tiny instance (factory arguments passed through, as for ``torch.nn`` modules) and
``spec.example(device=..., dtype=...)`` an input for it. ``spec.autocast_dtype`` is the dtype of
the output under ``torch.autocast("cpu", dtype=torch.bfloat16)`` for a float32 module: bfloat16
where the last op is a matrix product, float32 where the module computes in float32 by policy
(:mod:`signalprop.nn.precision`). The conventions these modules follow, and the one test that
checks all of them, are described in docs/modules.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.nn.activations import ShiftedSigmoid
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear
from signalprop.nn.decorrelation import Decorrelator
from signalprop.nn.elman import ElmanRNN
from signalprop.nn.gated import Gate, GatedMLP, variant_options
from signalprop.nn.gated_conv import GatedConvNet
from signalprop.nn.lem import LEM, LEMCell
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterBlock, AdditiveFilterMLP, AdditiveFilterStack
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN, AdditiveFilterRNNCell
from signalprop.nn.readout import LastStepClassifier
from signalprop.nn.resnet import BasicBlock, ResNet
from signalprop.nn.target_space import (
    ShortcutMLP,
    TargetConv2d,
    TargetLinear,
    TargetSpaceMLP,
    TargetSpaceSequential,
)
from signalprop.nn.target_space_rnn import TargetSpaceRNN, WeightSpaceElmanRNN
from signalprop.nn.vit import SmallViT

Factory = Callable[..., Any]
BF16, F32 = torch.bfloat16, torch.float32


@dataclass(frozen=True)
class ModuleSpec:
    """How to build a small instance of a public module and what to feed it."""

    cls: type[nn.Module]
    build: Factory  # build(device=None, dtype=None) -> nn.Module
    example: Factory  # example(device=None, dtype=None) -> Tensor
    autocast_dtype: torch.dtype  # output dtype under CPU bfloat16 autocast
    fullgraph: bool = False  # torch.compile(fullgraph=True) traces it without a graph break
    vmap: bool = True  # torch.func.vmap over the batch works (False: torch.nn.RNN has no rule)
    jvp: bool = True  # forward-mode AD works (False: CPU flash attention has no forward AD)
    # BatchNorm updates its running statistics in place, which torch.func cannot transform in
    # training mode (a torch limitation); such modules are transformed in eval mode.
    batch_norm: bool = False


def _data(*shape: int) -> Factory:
    def example(device: Any = None, dtype: Any = None) -> Tensor:
        g = torch.Generator().manual_seed(1)
        return torch.randn(*shape, generator=g, dtype=dtype or torch.get_default_dtype()).to(
            device or torch.empty(0).device)
    return example


def _x_bar(*shape: int, device: Any = None, dtype: Any = None) -> Tensor:
    return _data(*shape)(device, dtype)


def _target_cnn(device: Any = None, dtype: Any = None) -> nn.Module:
    layers = [TargetConv2d(1, 2, 3, device=device, dtype=dtype), nn.Tanh(), nn.Flatten(),
              TargetLinear(8, 3, device=device, dtype=dtype)]
    return TargetSpaceSequential(_x_bar(6, 1, 4, 4, device=device, dtype=dtype), layers,
                                 device=device, dtype=dtype)


def _with_feedback(layer: nn.Module) -> nn.Module:
    """``layer`` with a fixed random feedback buffer ``B`` (what feedback alignment attaches):
    its input gradient goes through ``B R`` (:mod:`signalprop.nn.feedback`)."""
    weight = layer.weight
    g = torch.Generator().manual_seed(2)
    feedback = torch.randn(weight.shape, generator=g, dtype=weight.dtype).to(weight.device)
    layer.register_buffer("feedback", feedback)
    return layer


MODULES: dict[str, ModuleSpec] = {
    "MLP": ModuleSpec(MLP, lambda **f: MLP(4, 6, 2, 3, **f), _data(5, 4), BF16, True),
    "ElmanRNN": ModuleSpec(ElmanRNN, lambda **f: ElmanRNN(2, 5, **f), _data(3, 4, 2), BF16,
                           True),
    "LastStepClassifier": ModuleSpec(
        LastStepClassifier,
        lambda **f: LastStepClassifier(AdditiveFilterRNN(2, 6, **f), 3, **f), _data(3, 4, 2),
        BF16, True),
    "AdditiveFilterStack": ModuleSpec(
        AdditiveFilterStack, lambda **f: AdditiveFilterStack(6, 5, segment=2, **f),
        _data(4, 6), F32, True),
    "AdditiveFilterMLP": ModuleSpec(
        AdditiveFilterMLP, lambda **f: AdditiveFilterMLP(4, 6, 5, 3, segment=2, **f),
        _data(4, 4), BF16, True),
    "AdditiveFilterBlock": ModuleSpec(AdditiveFilterBlock,
                                      lambda **f: AdditiveFilterBlock(6, **f), _data(4, 6), F32,
                                      True),
    "AdditiveFilterRNNCell": ModuleSpec(
        AdditiveFilterRNNCell, lambda **f: AdditiveFilterRNNCell(2, 6, **f), _data(4, 2), F32,
        True),
    "AdditiveFilterRNN": ModuleSpec(AdditiveFilterRNN, lambda **f: AdditiveFilterRNN(2, 6, **f),
                                    _data(3, 4, 2), F32, True),
    "AdditiveFilterRNN-permutation": ModuleSpec(
        AdditiveFilterRNN, lambda **f: AdditiveFilterRNN(2, 6, filter="permutation", **f),
        _data(3, 4, 2), F32, True),
    "AdditiveFilterRNN-loop": ModuleSpec(
        AdditiveFilterRNN, lambda **f: AdditiveFilterRNN(2, 6, impl="loop", **f),
        _data(3, 4, 2), F32, True),
    "LEM": ModuleSpec(LEM, lambda **f: LEM(2, 6, **f), _data(3, 4, 2), F32, True),
    "LEM-loop": ModuleSpec(LEM, lambda **f: LEM(2, 6, impl="loop", **f), _data(3, 4, 2), F32,
                           True),
    "LEMCell": ModuleSpec(LEMCell, lambda **f: LEMCell(2, 6, **f), _data(4, 2), F32, True),
    "Decorrelator": ModuleSpec(Decorrelator, lambda **f: Decorrelator(4, lr=1e-2, **f),
                               _data(6, 4), BF16),
    "Decorrelator-foldiak": ModuleSpec(
        Decorrelator, lambda **f: Decorrelator(4, rule="foldiak", lr=1e-2, **f), _data(6, 4),
        BF16),
    "DecorrelatedLinear": ModuleSpec(DecorrelatedLinear,
                                     lambda **f: DecorrelatedLinear(4, 3, **f), _data(6, 4), BF16),
    "DecorrelatedConv2d": ModuleSpec(
        DecorrelatedConv2d, lambda **f: DecorrelatedConv2d(2, 3, 3, padding=1, **f),
        _data(2, 2, 5, 5), BF16),
    "DecorrelatedLinear-feedback": ModuleSpec(
        DecorrelatedLinear, lambda **f: _with_feedback(DecorrelatedLinear(4, 3, **f)),
        _data(6, 4), BF16),
    "DecorrelatedConv2d-feedback": ModuleSpec(
        DecorrelatedConv2d,
        lambda **f: _with_feedback(DecorrelatedConv2d(2, 3, 3, padding=1, **f)),
        _data(2, 2, 5, 5), BF16),
    "Gate": ModuleSpec(Gate, lambda **f: Gate("soft"), _data(4, 5), F32, True),
    "ShiftedSigmoid": ModuleSpec(ShiftedSigmoid, lambda **f: ShiftedSigmoid(), _data(4, 5), F32,
                                 True),
    "GatedMLP": ModuleSpec(GatedMLP,
                           lambda **f: GatedMLP(4, 6, 2, 3, **variant_options("dlgn"), **f),
                           _data(5, 4), BF16, True),
    "GatedMLP-relu": ModuleSpec(GatedMLP, lambda **f: GatedMLP(4, 6, 2, 3, **f), _data(5, 4),
                                BF16, True),
    "GatedConvNet": ModuleSpec(
        GatedConvNet,
        lambda **f: GatedConvNet(1, 3, channels=(2, 2), dense=(4,), **variant_options("dlnpf"),
                                 **f),
        _data(2, 1, 5, 5), BF16, True),
    "ShortcutMLP": ModuleSpec(ShortcutMLP,
                              lambda **f: ShortcutMLP(3, 5, 2, 2, shortcuts=True, **f),
                              _data(4, 3), BF16, True),
    "TargetSpaceMLP": ModuleSpec(
        TargetSpaceMLP,
        lambda **f: TargetSpaceMLP(_x_bar(8, 3, **f), 5, 2, 2, shortcuts=True, **f),
        _data(4, 3), BF16),
    "TargetSpaceSequential": ModuleSpec(TargetSpaceSequential, _target_cnn, _data(3, 1, 4, 4),
                                        BF16),
    "TargetSpaceRNN": ModuleSpec(
        TargetSpaceRNN, lambda **f: TargetSpaceRNN(_x_bar(3, 4, 2, **f), 4, 2, **f),
        _data(2, 5, 2), BF16),
    "BasicBlock": ModuleSpec(BasicBlock, lambda **f: BasicBlock(2, 3, stride=2, **f),
                             _data(2, 2, 6, 6), BF16, True, batch_norm=True),
    "ResNet": ModuleSpec(ResNet, lambda **f: ResNet((1, 1), 3, 1, width=2, **f),
                         _data(2, 1, 8, 8), BF16, True, batch_norm=True),
    "SmallViT": ModuleSpec(
        SmallViT, lambda **f: SmallViT(8, 4, 1, 3, dim=8, depth=1, heads=2, mlp_dim=16, **f),
        _data(2, 1, 8, 8), BF16, jvp=False),
    "WeightSpaceElmanRNN": ModuleSpec(WeightSpaceElmanRNN,
                                      lambda **f: WeightSpaceElmanRNN(2, 4, 2, **f),
                                      _data(2, 5, 2), BF16, vmap=False),
}

#: Public nn.Module classes of ``signalprop.nn`` that are not standalone modules, and why.
NOT_STANDALONE: dict[str, str] = {
    "CellLayer": "base class of LEM and AdditiveFilterRNN (a cell run over a sequence)",
    "GatedNetwork": "base class of GatedMLP and GatedConvNet",
    "TargetLayer": "base class of the target-space layers",
    "TargetLinear": "a layer of TargetSpaceSequential, solved by it (no forward of its own)",
    "TargetConv2d": "a layer of TargetSpaceSequential, solved by it (no forward of its own)",
    "TargetSpaceModule": "base class of the target-space networks",
}


def output_tensor(output: Any) -> Tensor:
    """The main tensor of a module's output (``output`` of an RNN's ``(output, h_n)``)."""
    return output[0] if isinstance(output, tuple) else output
