"""The activation registry: closed-form derivatives against autograd, peak slopes, modules, and
clear errors for unknown names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signalprop.diagnostics.sensitivity import activation_derivatives, activation_of, peak_slope
from signalprop.errors import ConfigError
from signalprop.nn.activations import (
    ACTIVATIONS,
    SATURATING,
    get_activation,
    make_activation,
    name_of,
    require_activation,
)
from signalprop.nn.elman import ElmanRNN
from signalprop.nn.mlp import MLP

NAMES = sorted(ACTIVATIONS)


def _grid() -> torch.Tensor:
    """[-5, 5] in float64, off the kinks of relu, softsign (0) and hardtanh (+-1)."""
    u = torch.linspace(-5.0, 5.0, 401, dtype=torch.float64) + 1e-3
    return u[((u.abs() - 1).abs() > 1e-6) & (u.abs() > 1e-6)]


def _autograd_derivatives(fn, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = u.clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    if not d1.requires_grad:  # piecewise linear: f'' = 0
        return d1.detach(), torch.zeros_like(u)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    return d1.detach(), d2


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_equal_autograd(name):
    spec = get_activation(name)
    u = _grid()
    g1, g2 = _autograd_derivatives(spec.function, u)
    d1, d2 = spec.derivatives(u)
    torch.testing.assert_close(d1, g1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d2, g2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(spec.derivative(u), g1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(spec.second_derivative(u), g2, rtol=1e-10, atol=1e-12)
    if spec.derivative_from_output is not None:
        torch.testing.assert_close(spec.derivative_from_output(spec.function(u)), g1,
                                   rtol=1e-10, atol=1e-12)
    # the sensitivity diagnostics use the same closed forms, bit for bit
    for ours, theirs in zip(activation_derivatives(name, u), (d1, d2), strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", NAMES)
def test_peak_slope_is_the_largest_slope(name):
    spec = get_activation(name)
    u = torch.linspace(-8.0, 8.0, 160_001, dtype=torch.float64)  # step 1e-4, 0 on the grid
    grid_max = float(spec.derivative(u).max())
    assert spec.peak_slope == pytest.approx(grid_max, rel=1e-7)
    assert spec.peak_slope >= grid_max - 1e-12
    assert peak_slope(name) == spec.peak_slope


@pytest.mark.parametrize("name", NAMES)
def test_module_computes_the_function_and_is_recognised(name):
    spec = get_activation(name)
    module = make_activation(name)
    assert type(module) is spec.module
    u = torch.randn(3, 7, dtype=torch.float64)
    torch.testing.assert_close(module(u), spec.function(u), rtol=0, atol=0)
    assert name_of(module) == name
    assert activation_of(module) == name
    assert (name in SATURATING) == spec.saturating


def test_modules_with_other_options_are_not_the_registry_function():
    for module in (nn.GELU(approximate="tanh"), nn.Hardtanh(-2.0, 2.0)):
        assert name_of(module) is None
        assert activation_of(module) is module  # autograd path of the diagnostics
    assert name_of(nn.Linear(2, 2)) is None and activation_of(nn.Linear(2, 2)) is None
    assert name_of(nn.ReLU(inplace=True)) == "relu"


@pytest.mark.parametrize("bad", ["cubic", "Tanh", None, 3])
def test_unknown_names_list_the_choices(bad):
    choices = str(sorted(ACTIVATIONS))
    for build in (get_activation, make_activation):
        with pytest.raises(ConfigError) as info:
            build(bad)
        assert f"unknown activation {bad!r}" in str(info.value)
        assert choices in str(info.value)
    with pytest.raises(ConfigError, match="unknown activation"):
        MLP(2, 3, 1, 1, activation=bad)


def test_arguments_limited_to_some_activations_name_the_argument_and_the_choices():
    assert require_activation("X", "activation", "tanh", ("tanh", "relu")) is ACTIVATIONS["tanh"]
    with pytest.raises(ConfigError, match=r"X activation must be one of \['tanh', 'relu'\], "
                                          r"got 'gelu'"):
        require_activation("X", "activation", "gelu", ("tanh", "relu"))
    with pytest.raises(ConfigError, match=r"ElmanRNN nonlinearity must be one of \[.*'tanh'\]"):
        ElmanRNN(2, 3, nonlinearity="gelu")


def test_mlp_accepts_every_registered_activation():
    for name in NAMES:
        model = MLP(3, 4, 2, 1, activation=name)
        assert type(model.hidden[1]) is ACTIVATIONS[name].module
