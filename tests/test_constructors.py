"""Malformed arguments to every public module and rule constructor give a clear ConfigError."""

from __future__ import annotations

import importlib

import pytest
import torch

from signalprop.errors import ConfigError

X_BAR = torch.randn(20, 4)

# (module, class, valid keyword arguments, arguments to spoil one at a time)
CASES = [
    ("nn.mlp", "MLP", dict(in_features=4, width=8, depth=3, out_features=2),
     ["in_features", "width", "depth", "out_features", "gain"]),
    ("nn.orthogonal", "AdditiveFilterMLP", dict(in_features=4, width=8, depth=3, out_features=2),
     ["in_features", "width", "depth", "out_features"]),
    ("nn.orthogonal", "AdditiveFilterStack", dict(width=8, depth=3), ["width", "depth", "beta"]),
    ("nn.orthogonal", "AdditiveFilterBlock", dict(width=8), ["width", "beta", "gain"]),
    ("nn.orthogonal_rnn", "AdditiveFilterRNN", dict(input_size=2, hidden_size=8),
     ["input_size", "hidden_size", "beta", "gain"]),
    ("nn.orthogonal_rnn", "AdditiveFilterRNNCell", dict(input_size=2, hidden_size=8),
     ["input_size", "hidden_size", "beta"]),
    ("nn.elman", "ElmanRNN", dict(input_size=2, hidden_size=8),
     ["input_size", "hidden_size", "gain"]),
    ("nn.decorrelation", "Decorrelator", dict(features=4), ["features", "lr", "sample_fraction"]),
    ("nn.decorrelated_layers", "DecorrelatedLinear", dict(in_features=4, out_features=3),
     ["in_features", "out_features"]),
    ("nn.gated", "GatedMLP", dict(in_features=4, width=8, depth=2, out_features=2),
     ["in_features", "width", "depth", "out_features"]),
    ("nn.target_space", "TargetSpaceMLP", dict(x_bar=X_BAR, width=8, depth=2, out_features=2),
     ["width", "depth", "out_features", "ridge"]),
    ("learning.sensitivity", "SensitivityAdjustment", dict(), ["lr", "beta", "target"]),
    ("learning.perturbation", "NodePerturbation", dict(), ["sigma"]),
    ("learning.feedback_alignment", "FeedbackAlignment", dict(), ["scale"]),
]

# values that are meaningful for that argument (documented in each constructor)
LEGAL = {
    ("AdditiveFilterStack", "beta", None),  # None: b = 1/depth
    ("ElmanRNN", "gain", 0),  # zero recurrent weights
    ("Decorrelator", "lr", 0),  # a frozen decorrelation matrix
    ("TargetSpaceMLP", "ridge", 0),  # exact least squares
    ("SensitivityAdjustment", "lr", 0),
    ("SensitivityAdjustment", "beta", 0),  # no averaging
}

BAD_VALUES = [0, -3, float("nan"), float("inf"), "abc", None]


def _params():
    for module, name, good, spoil in CASES:
        for key in spoil:
            for bad in BAD_VALUES:
                yield pytest.param(module, name, good, key, bad, id=f"{name}-{key}={bad!r}")


@pytest.mark.parametrize("module, name, good, key, bad", list(_params()))
def test_bad_constructor_argument_raises_config_error(module, name, good, key, bad):
    cls = getattr(importlib.import_module(f"signalprop.{module}"), name)
    cls(**good)  # the valid arguments work
    if (name, key, bad) in LEGAL:
        pytest.skip("a legal value here")
    with pytest.raises(ConfigError) as info:
        cls(**{**good, key: bad})
    assert key in str(info.value) or name in str(info.value)
