"""LEM (Rusch et al., ICLR 2022) against a direct re-implementation of its update."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

from signalprop.errors import ConfigError
from signalprop.nn.lem import LEM, LEMCell
from signalprop.nn.readout import LastStepClassifier


def _reference(model: LEM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's equations written out with named matrices, one step at a time."""
    n, cell = model.hidden_size, model.cell
    v = cell.input_maps.weight.split(n)
    c = cell.input_maps.bias.split(n)
    w = cell.state_maps.weight.split(n)
    d = cell.state_maps.bias.split(n)
    v1, v2, vy, vz = v
    b1, b2, by, bz = (c[0] + d[0], c[1] + d[1], c[2], c[3] + d[2])
    w1, w2, wz = w
    wy, by2 = cell.z_to_y.weight, cell.z_to_y.bias
    y = z = x.new_zeros(x.shape[0], n)
    for t in range(x.shape[1]):
        u = x[:, t]
        dt = cell.dt * torch.sigmoid(y @ w1.T + u @ v1.T + b1)
        dt_bar = cell.dt * torch.sigmoid(y @ w2.T + u @ v2.T + b2)
        z = (1 - dt) * z + dt * torch.tanh(y @ wz.T + u @ vz.T + bz)
        y = (1 - dt_bar) * y + dt_bar * torch.tanh(z @ wy.T + by2 + u @ vy.T + by)
    return y, z


def test_forward_and_gradients_match_the_equations_in_float64():
    torch.manual_seed(0)
    model = LEM(3, 5, dt=0.7, dtype=torch.float64)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    out, (y_n, z_n) = model(x)
    y_ref, z_ref = _reference(model, x)
    assert torch.allclose(y_n[0], y_ref, atol=1e-12) and torch.allclose(z_n[0], z_ref, atol=1e-12)
    assert torch.allclose(out[:, -1], y_ref, atol=1e-12) and out.shape == (4, 9, 5)
    params = dict(model.named_parameters())
    ours = torch.autograd.grad(y_n.square().sum(), list(params.values()))
    theirs = torch.autograd.grad(_reference(model, x)[0].square().sum(), list(params.values()))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_time_major_initial_state_and_cell_agree():
    torch.manual_seed(1)
    model = LEM(2, 4, batch_first=False)
    x = torch.randn(6, 3, 2)
    y0, z0 = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    out, (y_n, z_n) = model(x, (y0, z0))
    y, z = y0[0], z0[0]
    for t in range(6):
        y, z = model.cell(x[t], (y, z))
    assert torch.allclose(y, y_n[0], atol=1e-6) and torch.allclose(out[-1], y, atol=1e-6)
    with pytest.raises(ValueError, match="y0 must have shape"):
        model(x, (y0[:, :2], z0))


def test_works_as_a_classifier_under_torch_func_and_autocast():
    torch.manual_seed(2)
    net = LastStepClassifier(LEM(1, 8), 3)
    x, y = torch.randn(5, 7, 1), torch.randint(0, 3, (5,))

    def loss(params):
        return torch.nn.functional.cross_entropy(functional_call(net, params, (x,)), y)

    grads = grad(loss)(dict(net.named_parameters()))
    assert all(torch.isfinite(g).all() for g in grads.values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(net(x).float()).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="dt must be in"):
        LEMCell(1, 4, dt=0.0)
    with pytest.raises(ValueError, match="3-d input"):
        LEM(1, 4)(torch.randn(2, 3))
