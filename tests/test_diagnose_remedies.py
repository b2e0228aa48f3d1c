"""Issue 21.9: diagnose's remedies keep the user's model, and following them works."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from signalprop.diagnose import thresholds as th
from signalprop.diagnose.core import diagnose
from signalprop.diagnose.fixes import AdditiveFilterWrapper, add_additive_filter, add_layer_norm
from signalprop.errors import ConfigError
from signalprop.nn.mlp import MLP


class Block(nn.Module):
    """A ReLU residual block ``x + relu(W x + c)`` with He-initialised ``W``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.fc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), *[Block(32) for _ in range(16)], nn.Linear(32, 4))


BATCH = (torch.randn(64, 16, generator=torch.Generator().manual_seed(1)),
         torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(2)))


@pytest.fixture(scope="module")
def exploding():
    model = _resnet()
    d = diagnose(model, BATCH, jacobian=False)
    assert d.verdict == "exploding" and d.gain_first > th.EXPLODING_RATIO
    return model, d


def test_exploding_resnet_remedies_keep_the_architecture(exploding):
    _, d = exploding
    remedies = [s.remedy for s in d.suggestions if s.problem == "exploding"]
    names = " | ".join(r.name for r in remedies)
    for wanted in ("rescale the initial weights", "additive filter around your 16 blocks",
                   "add normalisation", "gradient clipping", "lower the learning rate"):
        assert wanted in names
    for remedy in (s.remedy for s in d.suggestions):  # nothing replaces the user's model
        assert "MLP(" not in remedy.code and "gated_mlp" not in remedy.code, remedy.code


@pytest.mark.parametrize("which", ["rescale", "additive filter", "normalisation"])
def test_following_a_printed_remedy_stops_the_explosion(exploding, which):
    model, d = exploding
    remedy = next(s.remedy for s in d.suggestions
                  if s.problem == "exploding" and which in s.remedy.name)
    fixed = copy.deepcopy(model)
    exec(remedy.code, {"model": fixed})  # the code exactly as printed, only `model` defined
    after = diagnose(fixed, BATCH, jacobian=False)
    assert after.gain_first < th.EXPLODING_RATIO, (remedy.code, after.gain_first)
    assert "exploding" not in after.verdicts.values(), str(after)


def test_ratio_beside_exploding_explains_itself(exploding):
    _, d = exploding
    assert d.grad_ratio_first_to_last < 1  # smaller first-layer |dL/dW| despite exploding
    text = str(d)
    assert "(|dL/dW| of 0 over 17)" in text
    assert "note: the ratio" in text and "does not contradict 'exploding'" in text


def test_vanishing_tanh_mlp_rescale_remedy_works():
    torch.manual_seed(0)
    model = MLP(40, 64, 12, 10, activation="tanh", gain=0.5)
    batch = (torch.randn(64, 40), torch.randint(0, 10, (64,)))
    d = diagnose(model, batch, jacobian=False)
    assert d.verdict == "vanishing"
    first = d.suggestions[0].remedy
    assert first.name == "rescale the initial weights of 13 layers by 2.03"  # head too
    exec(first.code, {"model": model})
    assert diagnose(model, batch, jacobian=False).verdict == "healthy"


def test_lstm_says_why_it_has_no_sensitivity():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = nn.LSTM(3, 16, batch_first=True), nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    d = diagnose(Net(), torch.randn(4, 20, 3))
    lay = d.layer("rnn")
    assert lay.sensitivity_mean is None and "product of gates" in lay.sensitivity_note
    rnn_row = next(line for line in d.table().splitlines() if line.split()[1:2] == ["rnn"])
    assert " n/a " in rnn_row
    assert "sens n/a for rnn (LSTM): " in str(d)


def test_fixes_refuse_what_they_cannot_do():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match="has no layer 'nope'"):
        add_layer_norm(model, ["nope"])
    with pytest.raises(ConfigError, match="not a Linear or conv layer"):
        add_layer_norm(model, ["1"])
    with pytest.raises(ConfigError, match="does not keep its width"):
        add_additive_filter(model, ["0"])
    wrapped = AdditiveFilterWrapper(nn.Linear(4, 4), 4, beta=0.25)
    x = torch.randn(3, 4)
    expected = 0.75 * x @ wrapped.filter.t() + 0.25 * wrapped.block(x)
    assert torch.allclose(wrapped(x), expected)
    assert torch.allclose(wrapped.filter @ wrapped.filter.t(), torch.eye(4), atol=1e-6)
    assert math.isclose(wrapped.beta, 0.25)


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.head = nn.GRU(3, 32, batch_first=True), nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_a_gru_keeps_its_architecture_first_and_its_healthy_head():
    """Issue 30.3: no SAL (it finds no neuron in a GRU), no rescale of the healthy head, and the
    remedy that keeps the GRU (its gate biases) comes before replacing it; it works."""
    torch.manual_seed(0)
    model, x = GRUNet(), torch.randn(64, 32, 3)
    d = diagnose(model, x)
    assert d.verdicts == {"rnn": "vanishing", "head": "healthy"}
    codes = [s.remedy.code for s in d.suggestions]
    assert "chrono_init(model, ['rnn'], steps=32)" in codes[0]
    assert "AdditiveFilterRNN" in codes[-1]
    assert not any("SensitivityAdjustment" in c or "rescale(" in c for c in codes), codes
    exec(codes[0], {"model": model})
    assert diagnose(model, x).verdict == "healthy"


def test_sal_is_not_offered_where_it_finds_no_neuron():
    """Issue 30.3: activations called functionally (torch.relu in forward) are invisible to SAL,
    so its remedy would fail with "no sensitive layers found"; it is not offered."""
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(12))
            self.head = nn.Linear(16, 4)
            for layer in self.layers:
                nn.init.normal_(layer.weight, std=0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = torch.relu(layer(x))
            return self.head(x)

    torch.manual_seed(0)
    d = diagnose(Functional(), (BATCH[0], BATCH[1]), jacobian=False)
    assert d.verdict == "vanishing"
    assert not any("SensitivityAdjustment" in s.remedy.code for s in d.suggestions)
    tanh_mlp = MLP(40, 64, 12, 10, activation="tanh", gain=0.5)  # Linear -> Tanh pairs: SAL
    d = diagnose(tanh_mlp, (torch.randn(64, 40), torch.randint(0, 10, (64,))), jacobian=False)
    assert any("SensitivityAdjustment" in s.remedy.code for s in d.suggestions)


@pytest.mark.parametrize("case", ["mlp", "resnet", "gru"])
def test_every_printed_remedy_runs_with_only_model_defined(case, exploding):
    """Issue 30.3: no placeholder (`d`, `train_x`, `in_features`, `fit(...)`) a user lacks."""
    torch.manual_seed(0)
    if case == "mlp":
        model, batch = MLP(40, 64, 12, 10, activation="tanh", gain=0.5), (
            torch.randn(64, 40), torch.randint(0, 10, (64,)))
        d = diagnose(model, batch)
    elif case == "resnet":
        model, d = exploding
    else:
        model = GRUNet()
        d = diagnose(model, torch.randn(64, 32, 3))
    assert d.suggestions
    for suggestion in d.suggestions:
        exec(suggestion.remedy.code, {"model": copy.deepcopy(model)})
