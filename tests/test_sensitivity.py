"""Sensitivity s = f'(U)||w|| against autograd input gradients, and the Elman RNN."""

import math

import pytest
import torch
from torch import nn

from signalprop.diagnostics.sensitivity import (
    RunningSensitivity,
    SensitivityProbe,
    activation_derivatives,
    find_sensitive_layers,
    log_rms,
    neuron_sensitivity,
    peak_slope,
)
from signalprop.errors import ConfigError
from signalprop.nn.elman import ElmanRNN, LastStepClassifier, ShiftedSigmoid
from signalprop.nn.mlp import MLP


def _input_grad_norms(fn, x: torch.Tensor) -> torch.Tensor:
    """||d o_j / d x|| for every output j of fn at one input vector x (autograd Jacobian)."""
    jac = torch.autograd.functional.jacobian(fn, x)  # (N, M)
    return torch.linalg.vector_norm(jac, dim=1)


@pytest.mark.parametrize("act_module", [nn.Tanh(), ShiftedSigmoid(), nn.Sigmoid(), nn.GELU(),
                                        nn.Softsign()])
def test_linear_sensitivity_is_input_gradient_norm(act_module):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), act_module, nn.Linear(5, 2))
    x = torch.randn(4, 7, dtype=torch.float64)
    model.double()
    probe = SensitivityProbe(model)
    model(x)
    s = probe.sensitivities()["0"]
    assert s.shape == (4, 5)
    for row in range(4):
        expected = _input_grad_norms(lambda v: model[1](model[0](v)), x[row])
        torch.testing.assert_close(s[row], expected)


@pytest.mark.parametrize("nonlinearity", ["tanh", "shifted_sigmoid", "softsign"])
def test_rnn_sensitivity_is_gradient_wrt_input_and_previous_state(nonlinearity):
    torch.manual_seed(1)
    rnn = ElmanRNN(3, 6, nonlinearity=nonlinearity, gain=1.5).double()
    with torch.no_grad():
        rnn.bias_ih_l0.normal_()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    probe = SensitivityProbe(rnn)
    out, _ = rnn(x)
    s = probe.sensitivities()["rnn"]
    assert s.shape == (2 * 5, 6)
    for b in range(2):
        for t in range(5):
            prev = out[b, t - 1] if t else torch.zeros(6, dtype=torch.float64)
            z = torch.cat([x[b, t], prev]).detach()
            expected = _input_grad_norms(lambda v: rnn.cell(v[None, :3], v[None, 3:])[0], z)
            torch.testing.assert_close(s[b * 5 + t], expected)


def test_torch_rnn_with_initial_state_is_supported():
    torch.manual_seed(2)
    rnn = nn.RNN(2, 4, batch_first=True).double()
    x, h0 = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64)
    probe = SensitivityProbe(rnn)
    out, _ = rnn(x, h0)
    s = probe.sensitivities()["rnn"]
    cell = nn.RNNCell(2, 4).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in rnn.state_dict().items()})
    z = torch.cat([x[1, 0], h0[0, 1]])
    expected = _input_grad_norms(lambda v: cell(v[None, :2], v[None, 2:])[0], z)
    torch.testing.assert_close(s[4], expected)  # sample 1, step 0 uses h0
    z = torch.cat([x[2, 3], out[2, 2]]).detach()
    expected = _input_grad_norms(lambda v: cell(v[None, :2], v[None, 2:])[0], z)
    torch.testing.assert_close(s[2 * 4 + 3], expected)


def test_elman_matches_torch_rnn_for_tanh():
    torch.manual_seed(3)
    ours = ElmanRNN(3, 5, gain=1.2)
    with torch.no_grad():
        ours.bias_hh_l0.normal_()
    ref = nn.RNN(3, 5, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x, h0 = torch.randn(2, 7, 3), torch.randn(1, 2, 5)
    for a, b in zip(ours(x, h0), ref(x, h0), strict=True):
        torch.testing.assert_close(a, b)
    clf = LastStepClassifier(ours, 2)
    assert clf(x).shape == (2, 2)


def test_elman_validates_arguments():
    with pytest.raises(ConfigError, match="nonlinearity"):
        ElmanRNN(2, 3, nonlinearity="cubic")
    with pytest.raises(ConfigError, match="hidden_size"):
        ElmanRNN(2, 0)
    with pytest.raises(ConfigError, match="gain"):
        ElmanRNN(2, 3, gain=float("nan"))
    with pytest.raises(ConfigError, match="batch_first"):
        LastStepClassifier(nn.RNN(2, 3), 2)


def test_closed_form_derivatives_match_autograd():
    u = torch.linspace(-4, 4, 81, dtype=torch.float64)
    for name, fn in [("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                     ("shifted_sigmoid", lambda v: torch.sigmoid(v) - 0.5),
                     ("softsign", nn.functional.softsign)]:
        d1, d2 = activation_derivatives(name, u)
        g1, g2 = activation_derivatives(fn, u)  # autograd path
        torch.testing.assert_close(d1, g1)
        torch.testing.assert_close(d2, g2)
    assert peak_slope("tanh") == pytest.approx(1.0)
    assert peak_slope("shifted_sigmoid") == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="unknown activation"):
        activation_derivatives("cubic", u)


def test_layers_of_an_mlp_skip_the_head_and_eval_passes_are_not_captured():
    model = MLP(4, 8, 3, 2)
    layers = find_sensitive_layers(model)
    assert [layer.name for layer in layers] == ["hidden.0", "hidden.2", "hidden.4"]
    probe = SensitivityProbe(model)
    model.eval()
    model(torch.randn(5, 4))
    assert probe.sensitivities() == {}
    model.train()
    model(torch.randn(5, 4))
    assert set(probe.sensitivities()) == {"hidden.0", "hidden.2", "hidden.4"}
    probe.remove()
    probe.clear()
    model(torch.randn(5, 4))
    assert probe.sensitivities() == {}
    with pytest.raises(ConfigError, match="no sensitive layers"):
        SensitivityProbe(nn.Linear(3, 3))


def test_probe_subsamples_rows():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    probe = SensitivityProbe(model, max_rows=10)
    model(torch.randn(95, 2))
    assert probe.inputs("0").shape == (10, 2)


def test_running_average_and_log_rms():
    avg = RunningSensitivity(beta=0.5)
    first = avg.update("a", torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(first, torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(avg.update("a", torch.tensor([3.0, 1.0])), torch.tensor([2.0, 2.0]))
    assert avg.log_rms() == pytest.approx(math.log(2.0))
    other = RunningSensitivity()
    other.load_state_dict(avg.state_dict())
    torch.testing.assert_close(other.values["a"], torch.tensor([2.0, 2.0]))
    assert log_rms(torch.tensor([3.0, 4.0])) == pytest.approx(0.5 * math.log(12.5))
    with pytest.raises(ConfigError, match="beta"):
        RunningSensitivity(beta=1.0)


def test_neuron_sensitivity_formula():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    u = torch.tensor([[0.0, 1.0]])
    s = neuron_sensitivity(u, w, "tanh")
    torch.testing.assert_close(s, torch.tensor([[5.0, 0.5 * (1 - math.tanh(1.0) ** 2)]]))
