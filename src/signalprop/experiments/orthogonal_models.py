"""Models shared by the random orthogonal additive filter experiments (Ceni, arXiv 2210.01245).

The filter updates a state as ``h' = a O h + b tanh(W h + U x + c)`` with ``O`` a random
orthogonal matrix, ``a = 1 - b``: layer by layer in the deep MLP
(``orthogonal-deep-mlp``), step by step in the RNN (``orthogonal-psmnist``,
``orthogonal-long-memory``). This module holds the RNN classifiers both sequence experiments
build and the deep MLP's controls without depth: without its nonlinear branch the filter net is
the fixed linear map ``h_L = a^L O^L h_0``, a linear classifier of rank ``width``; a deep net
no better than that rotation net (or logistic regression) did no work with its depth.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from signalprop.config import in_range, one_of, positive
from signalprop.errors import ConfigError
from signalprop.experiments.registry import Model
from signalprop.nn.lem import LEM
from signalprop.nn.orthogonal import AdditiveFilterMLP, AdditiveFilterStack
from signalprop.nn.orthogonal_rnn import FILTERS, AdditiveFilterRNN, LastStepClassifier

PAPER = "Ceni 2022, Random orthogonal additive filters, arXiv 2210.01245 (IEEE TNNLS 2025)"


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---------------------------------------------------------------- RNNs
#: "lem" is the positive control of orthogonal-long-memory (:class:`~signalprop.nn.lem.LEM`)
RNN_KINDS = ("filter", "frozen", "rnn", "lstm", "lem")


@dataclass(frozen=True)
class RNNModel:
    """``model.*`` of the RNN experiments: ``hidden`` units; the filter RNN's ``b`` (``beta``),
    readout scale (0: ``h_T / b``) and filter ``O``; the baselines trained beside it."""

    hidden: int = 128
    beta: float = 0.05
    readout_scale: float = 0.0
    baselines: tuple[str, ...] = ("lstm",)
    filter: str = "haar"  # or haar-det+1/-1, haar-no-fixed, permutation, cycle, identity

    def __post_init__(self) -> None:
        positive("model.hidden", self.hidden)
        in_range("model.beta", self.beta, 0.0, 1.0)
        if self.readout_scale < 0:
            raise ConfigError(f"model.readout_scale must be >= 0, got {self.readout_scale}")
        one_of("model.filter", self.filter, FILTERS)
        for name in self.baselines:
            if name not in ("rnn", "lstm"):
                raise ConfigError(f"model.baselines: unknown {name!r}; choose rnn, lstm")


def rnn_classifier(kind: str, inputs: int, classes: int, m: RNNModel, beta: float
                   ) -> LastStepClassifier:
    """``filter``: the additive-filter RNN with ``b = beta`` read out at ``h_T * readout_scale``
    (0: ``h_T / b``, the state's natural scale being ``b``); ``frozen``: the same with its
    recurrent layer frozen (only the readout trains); ``rnn``/``lstm``: ``nn.RNN`` (tanh) or
    ``nn.LSTM``; ``lem``: :class:`~signalprop.nn.lem.LEM` (Rusch et al. 2022, ``Δt = 1``); every
    one of ``m.hidden`` units, read out at the last step."""
    if kind == "lem":
        return LastStepClassifier(LEM(inputs, m.hidden), classes)
    if kind in ("rnn", "lstm"):
        return baseline_classifier(kind, inputs, classes, m.hidden)
    rnn = AdditiveFilterRNN(inputs, m.hidden, beta=beta, filter=m.filter)
    model = LastStepClassifier(rnn, classes, scale=m.readout_scale or 1.0 / beta)
    if kind == "frozen":
        model.rnn.requires_grad_(False)
    return model


def baseline_classifier(kind: str, inputs: int, classes: int, hidden: int) -> LastStepClassifier:
    cls = nn.RNN if kind == "rnn" else nn.LSTM
    return LastStepClassifier(cls(inputs, hidden, batch_first=True), classes)


RNN_BASELINES = {kind: Model(f"the {kind.upper()} baseline (model.hidden units)",
                             lambda cfg, splits, kind=kind: baseline_classifier(
                                 kind, splits.input_shape[-1], splits.num_classes,
                                 cfg.model.hidden)) for kind in ("rnn", "lstm")}


# ---------------------------------------------------------------- controls without depth
def linear_part(stack: AdditiveFilterStack) -> Tensor:
    """The stack with its nonlinear branch removed, as one matrix: ``a^L O^L`` (or ``I``)."""
    if stack.skip == "none":
        return torch.zeros(stack.width, stack.width, dtype=stack.weight.dtype)
    if stack.skip == "identity":
        return torch.eye(stack.width, dtype=stack.weight.dtype)
    power = torch.linalg.matrix_power(stack.filter.detach().double(), stack.depth)
    return (power * stack.a ** stack.depth).to(stack.weight.dtype)


class RotationControl(nn.Module):
    """``y = R (a^L O^L) P x``: the filter net's input ``P``, filter and readout ``R``, without the
    nonlinear branch. ``P`` and ``R`` train; the middle is a fixed buffer."""

    def __init__(self, filter_net: AdditiveFilterMLP) -> None:
        super().__init__()
        self.input, self.head = filter_net.input, filter_net.head
        self.register_buffer("rotation", linear_part(filter_net.stack))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.input(x.flatten(1)) @ self.rotation.t())


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on the flattened inputs."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


@torch.no_grad()
def nonlinear_share(model: AdditiveFilterMLP, x: Tensor) -> float:
    """How much of the stack's output the nonlinear branches make: ``||h_L - M h_0|| / ||h_L||``
    with ``M`` the stack's :func:`linear_part`, on the batch ``x`` (1.0 for a plain MLP)."""
    h0 = model.input(x.flatten(1))
    h_final = model.stack(h0)
    linear = h0 @ linear_part(model.stack).to(h0).t()
    return float(torch.linalg.vector_norm(h_final - linear)
                 / torch.linalg.vector_norm(h_final).clamp_min(1e-30))
