"""Which learning rule trains which model family: the combination matrix, in one table.

Every learning rule (SAL, FA, DFA, NP, decorrelation) meets every model family (tiny
instances of the architectures in :mod:`signalprop.nn`). A cell either **trains** (the rule's
own parameters change and the loss falls on a tiny batch, under float32 and under bfloat16
autocast) or **refuses**: the rule raises one :class:`~signalprop.errors.ConfigError` line that
names the layer it cannot train and why. No cell does part of the job silently.

:data:`EXPECTED` is the table; ``tests/test_combinations.py`` runs every cell
(:func:`signalprop.learning.combination_cell.run_cell`) and checks it against the table, and
:func:`render_markdown` writes the table that ``docs/modules.md`` shows (a test checks the page
holds exactly that text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from signalprop.learning.base import LearningRule
from signalprop.learning.decorrelation_rule import DecorrelationRule
from signalprop.learning.feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from signalprop.learning.perturbation import NodePerturbation
from signalprop.learning.sensitivity import SensitivityAdjustment
from signalprop.nn.elman import ElmanRNN
from signalprop.nn.gated import GatedMLP, variant_options
from signalprop.nn.gated_conv import GatedConvNet
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterMLP
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN
from signalprop.nn.readout import LastStepClassifier
from signalprop.nn.resnet import ResNet
from signalprop.nn.target_space import (
    TargetConv2d,
    TargetLinear,
    TargetSpaceMLP,
    TargetSpaceSequential,
)
from signalprop.nn.target_space_rnn import TargetSpaceRNN
from signalprop.nn.vit import SmallViT

Batch = tuple[Tensor, Tensor]


def _data(*shape: int, classes: int = 3, steps: int | None = None) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    y_shape = (shape[0],) if steps is None else (shape[0], steps)
    return x, torch.randint(0, classes, y_shape, generator=g)


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(48, 8), nn.Tanh(), nn.Linear(8, 3))


def _target_cnn() -> nn.Module:
    x_bar = _data(6, 1, 4, 4)[0]
    return TargetSpaceSequential(x_bar, [TargetConv2d(1, 2, 3), nn.Tanh(), nn.Flatten(),
                                         TargetLinear(8, 3)])


@dataclass(frozen=True)
class Family:
    """A model family: a tiny instance, a training batch, and the registry entries it covers
    (:data:`signalprop.nn.registry.MODULES`)."""

    build: Callable[[], nn.Module]
    batch: Callable[[], Batch]
    covers: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "MLP": Family(lambda: MLP(6, 8, 2, 3), lambda: _data(16, 6), ("MLP",)),
    "CNN": Family(_cnn, lambda: _data(16, 1, 4, 4)),
    "ElmanRNN": Family(lambda: LastStepClassifier(ElmanRNN(2, 8), 3), lambda: _data(16, 5, 2),
                       ("ElmanRNN",)),
    "AdditiveFilterMLP": Family(lambda: AdditiveFilterMLP(6, 8, 4, 3, segment=2),
                                lambda: _data(16, 6), ("AdditiveFilterMLP",
                                                       "AdditiveFilterStack")),
    "AdditiveFilterRNN": Family(
        lambda: LastStepClassifier(AdditiveFilterRNN(2, 8), 3), lambda: _data(16, 5, 2),
        ("AdditiveFilterRNN", "AdditiveFilterRNN-permutation", "AdditiveFilterRNN-loop",
         "AdditiveFilterRNNCell", "LastStepClassifier")),
    "GatedMLP (DLGN)": Family(lambda: GatedMLP(6, 8, 2, 3, **variant_options("dlgn")),
                              lambda: _data(16, 6), ("GatedMLP", "GatedMLP-relu", "Gate")),
    "GatedMLP (FRNPF, fixed gates)": Family(
        lambda: GatedMLP(6, 8, 2, 3, **variant_options("frnpf-di")), lambda: _data(16, 6)),
    "GatedConvNet": Family(
        lambda: GatedConvNet(1, 3, channels=(2, 2), dense=(4,), **variant_options("dlnpf")),
        lambda: _data(16, 1, 5, 5), ("GatedConvNet",)),
    "TargetSpaceMLP": Family(lambda: TargetSpaceMLP(_data(8, 6)[0], 5, 2, 3),
                             lambda: _data(16, 6), ("TargetSpaceMLP",)),
    "TargetSpaceSequential (CNN)": Family(_target_cnn, lambda: _data(16, 1, 4, 4),
                                          ("TargetSpaceSequential",)),
    "TargetSpaceRNN": Family(lambda: TargetSpaceRNN(_data(3, 4, 2)[0], 4, 2),
                             lambda: _data(16, 4, 2, classes=2, steps=4),
                             ("TargetSpaceRNN",)),
    "ResNet-18 layout": Family(lambda: ResNet((1, 1), 3, 1, width=2), lambda: _data(16, 1, 8, 8),
                               ("ResNet", "BasicBlock")),
    "ViT": Family(lambda: SmallViT(8, 4, 1, 3, dim=8, depth=1, heads=2, mlp_dim=16),
                  lambda: _data(16, 1, 8, 8), ("SmallViT",)),
}

#: Registry entries that are not model families of their own, and why.
NOT_FAMILIES: dict[str, str] = {
    "Decorrelator": "the decorrelation rule's own layer (the decorrelation column)",
    "Decorrelator-foldiak": "the decorrelation rule's own layer (the decorrelation column)",
    "DecorrelatedLinear": "what decorrelate() puts in a family (the decorrelation column)",
    "DecorrelatedConv2d": "what decorrelate() puts in a family (the decorrelation column)",
    "DecorrelatedLinear-feedback": "a decorrelated layer under FA (FA x decorrelated MLP test)",
    "DecorrelatedConv2d-feedback": "a decorrelated layer under FA (FA x decorrelated CNN test)",
    "AdditiveFilterBlock": "one filter layer; the stack in AdditiveFilterMLP is the family",
    "ShiftedSigmoid": "an activation",
    "ShortcutMLP": "the weight-space export of TargetSpaceMLP: Linear layers, as MLP",
    "WeightSpaceElmanRNN": "the weight-space export of TargetSpaceRNN: an nn.RNN, as ElmanRNN",
    "LEM": "the long-memory positive control (Rusch et al. 2022), trained by backprop only; "
           "not yet in the matrix",
    "LEMCell": "one step of LEM (see LEM)",
    "LEM-loop": "LEM with its autograd time loop (impl='loop'; see LEM)",
}


def _decorrelation(model: nn.Module) -> tuple[LearningRule, ...]:
    from signalprop.nn.decorrelation_policy import decorrelate

    decorrelate(model, lr=1e-2)
    return (DecorrelationRule(),)


#: rule name -> builder; a builder may convert the model (decorrelation) and may refuse.
RULES: dict[str, Callable[[nn.Module], tuple[LearningRule, ...]]] = {
    # every neuron adjusted each step (gate "none"), so a layer SAL skipped would show
    "SAL": lambda model: (SensitivityAdjustment(gate="none"),),
    "FA": lambda model: (FeedbackAlignment(seed=0),),
    "DFA": lambda model: (DirectFeedbackAlignment(seed=0),),
    "NP": lambda model: (NodePerturbation(sigma=1e-3),),
    "decorrelation": _decorrelation,
}


@dataclass(frozen=True)
class Trains:
    """The rule trains the family; ``note`` says how, where it is not the obvious way."""

    note: str = ""


@dataclass(frozen=True)
class Refuses:
    """The rule raises a one-line ConfigError naming ``layer``; ``reason`` is a phrase of it."""

    layer: str
    reason: str


Outcome = Trains | Refuses

_SAL_CONV = "a convolution, while SAL's neurons are dense units o = f(w.x + theta)"
_SAL_LINEAR = "not followed by an activation module in its container"
_RECURRENT = "its recurrent weights act inside the recurrence, which the rule has no path into"
_RECURRENT_R = "recurrent products run inside its recurrence, where no R can be put"
_SEQUENTIAL = "needs the Linear/Conv2d layers applied one after another"
_TARGETS = "solved by least squares from targets on x_bar"
_ATTENTION = "nn.MultiheadAttention applies its projections"
_BATCHNORM = "the noisy pass's batch statistics mix every sample's noise"


def _family(family: str, usual: Outcome, **exceptions: Outcome) -> dict[tuple[str, str], Outcome]:
    """``family``'s row of the matrix: ``usual`` under every rule of :data:`RULES` but those
    named in ``exceptions`` (``SAL=Refuses(...)``)."""
    unknown = set(exceptions) - set(RULES)
    if unknown:
        raise ValueError(f"{family}: no rule {sorted(unknown)}; the rules are {list(RULES)}")
    return {(family, rule): exceptions.get(rule, usual) for rule in RULES}


_DLGN_SAL = Refuses("value_layers.0", _SAL_LINEAR)
_DFA_SEQUENTIAL = Refuses("the model", _SEQUENTIAL)
EXPECTED: dict[tuple[str, str], Outcome] = {
    **_family("MLP", Trains()),
    **_family("CNN", Trains(), SAL=Refuses("0", _SAL_CONV)),
    **_family("ElmanRNN", Refuses("rnn", _RECURRENT), SAL=Trains("the paper's recurrent neurons"),
              decorrelation=Refuses("rnn", _RECURRENT_R)),
    **_family("AdditiveFilterMLP", Trains(), SAL=Refuses("input", _SAL_LINEAR),
              FA=Trains("B_l per stack layer, filter O exact"),
              DFA=Trains("B_l e injected at every stack layer"),
              NP=Trains("noise on every stack layer's branch sum"),
              decorrelation=Trains("R_l in every layer's nonlinear branch")),
    **_family("AdditiveFilterRNN", Refuses("rnn.cell", _RECURRENT),
              decorrelation=Refuses("rnn.cell", _RECURRENT_R)),
    **_family("GatedMLP (DLGN)", Trains("value and gating networks"), SAL=_DLGN_SAL,
              DFA=_DFA_SEQUENTIAL, decorrelation=Trains()),
    **_family("GatedMLP (FRNPF, fixed gates)", Trains(), SAL=_DLGN_SAL,
              FA=Trains("value network; gates stay fixed"), DFA=_DFA_SEQUENTIAL,
              NP=Trains("value network; no noise on fixed gates"),
              decorrelation=Trains("value network; frozen gating layers left plain")),
    **_family("GatedConvNet", Trains(), SAL=Refuses("value_layers.0", _SAL_CONV),
              DFA=_DFA_SEQUENTIAL),
    **_family("TargetSpaceMLP", Refuses("linears.0", _TARGETS)),
    **_family("TargetSpaceSequential (CNN)", Refuses("layers.0", _TARGETS)),
    **_family("TargetSpaceRNN", Refuses("recurrent", _TARGETS)),
    **_family("ResNet-18 layout", Trains(), SAL=Refuses("conv1", _SAL_CONV), DFA=_DFA_SEQUENTIAL,
              NP=Refuses("bn1", _BATCHNORM), decorrelation=Trains("BatchNorm left plain")),
    **_family("ViT", Refuses("encoder.layers.0.self_attn", _ATTENTION),
              SAL=Refuses("patch_embed", _SAL_CONV),
              decorrelation=Trains("attention and LayerNorm left plain, reported")),
}

PRECISIONS = ("fp32", "bf16")


def render_markdown() -> str:
    """The matrix as a markdown table (families as rows, rules as columns), a numbered list of
    the refusals' reasons (phrases of their messages), then the counts."""
    rules = list(RULES)
    reasons: list[str] = []
    lines = ["| model family | " + " | ".join(rules) + " |",
             "|---|" + "---|" * len(rules)]
    for family in FAMILIES:
        cells = []
        for rule in rules:
            outcome = EXPECTED[(family, rule)]
            if isinstance(outcome, Trains):
                cells.append("trains" + (f" ({outcome.note})" if outcome.note else ""))
                continue
            if outcome.reason not in reasons:
                reasons.append(outcome.reason)
            cells.append(f"refuses `{outcome.layer}` [{reasons.index(outcome.reason) + 1}]")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    trains = sum(isinstance(o, Trains) for o in EXPECTED.values())
    lines.append("")
    lines += [f"{i}. \"... {reason} ...\"" for i, reason in enumerate(reasons, 1)]
    lines.append("")
    lines.append(f"{len(EXPECTED)} pairings, each under {' and '.join(PRECISIONS)}: "
                 f"{trains} train, {len(EXPECTED) - trains} refuse.")
    return "\n".join(lines)
