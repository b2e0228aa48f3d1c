"""Lyapunov exponents of maps with a known spectrum."""

import math

import pytest
import torch

from signalprop.diagnostics.lyapunov import (
    largest_lyapunov_exponent,
    lyapunov_spectrum,
    rnn_lyapunov,
    rnn_step_function,
)
from signalprop.errors import ConfigError
from signalprop.nn.elman import ElmanRNN


def _linear(a: torch.Tensor):
    return lambda h, x: a @ h


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q


def test_diagonal_map_spectrum():
    d = torch.tensor([1.3, -0.9, 0.5, 0.05], dtype=torch.float64)
    inputs = torch.zeros(50, 1, dtype=torch.float64)
    h0 = torch.ones(4, dtype=torch.float64)
    for method in ("jvp", "jacrev"):
        spectrum = lyapunov_spectrum(_linear(torch.diag(d)), h0, inputs, method=method)
        torch.testing.assert_close(spectrum, torch.log(d.abs()).sort(descending=True).values)


def test_normal_map_spectrum_and_first_k():
    o = _orthogonal(6, 0)
    d = torch.tensor([1.5, 1.1, 0.8, -0.6, 0.3, 0.1], dtype=torch.float64)
    a = o @ torch.diag(d) @ o.T
    inputs = torch.zeros(400, 1, dtype=torch.float64)
    h0 = torch.randn(6, dtype=torch.float64)
    expected = torch.log(d.abs()).sort(descending=True).values
    spectrum = lyapunov_spectrum(_linear(a), h0, inputs, k=3, warmup=100)
    torch.testing.assert_close(spectrum, expected[:3], atol=2e-3, rtol=0)
    largest = largest_lyapunov_exponent(_linear(a), h0, inputs, warmup=100)
    assert largest == pytest.approx(math.log(1.5), abs=2e-3)


def test_orthogonal_times_diagonal_and_rotation_blocks():
    """A = O diag(d) O^T composed with rotations in invariant planes: |eig| = d."""
    r, theta = 0.8, 0.7
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                       dtype=torch.float64)
    block = torch.zeros(4, 4, dtype=torch.float64)
    block[:2, :2] = r * rot
    block[2:, 2:] = 1.2 * rot.T
    o = _orthogonal(4, 1)
    a = o @ block @ o.T
    inputs = torch.zeros(600, 1, dtype=torch.float64)
    spectrum = lyapunov_spectrum(_linear(a), torch.ones(4, dtype=torch.float64), inputs, warmup=50)
    expected = torch.tensor([math.log(1.2)] * 2 + [math.log(r)] * 2, dtype=torch.float64)
    torch.testing.assert_close(spectrum, expected, atol=5e-3, rtol=0)


def test_non_normal_map_converges_to_log_eigenvalues():
    g = torch.Generator().manual_seed(2)
    p = torch.eye(3, dtype=torch.float64) + 0.5 * torch.randn(3, 3, generator=g,
                                                             dtype=torch.float64)
    d = torch.tensor([1.1, 0.7, 0.2], dtype=torch.float64)
    a = p @ torch.diag(d) @ torch.linalg.inv(p)
    inputs = torch.zeros(800, 1, dtype=torch.float64)
    spectrum = lyapunov_spectrum(_linear(a), torch.ones(3, dtype=torch.float64), inputs,
                                 warmup=200)
    torch.testing.assert_close(spectrum, torch.log(d), atol=5e-3, rtol=0)


def test_rnn_at_its_zero_fixed_point_has_the_log_eigenvalues_of_w_hh():
    """With no input and zero bias, h = 0 is a fixed point with Jacobian W_hh (tanh'(0) = 1)."""
    torch.manual_seed(4)
    rnn = ElmanRNN(2, 5, gain=0.9, bias=False).double()
    inputs = torch.zeros(1500, 2, dtype=torch.float64)
    found = rnn_lyapunov(rnn, inputs, warmup=300, k=5)
    eig = torch.linalg.eigvals(rnn.weight_hh_l0.detach()).abs().log().sort(descending=True).values
    got = torch.tensor([found[f"lambda_{i + 1}"] for i in range(5)], dtype=torch.float64)
    torch.testing.assert_close(got, eig, atol=1e-2, rtol=0)
    row_norms = torch.linalg.vector_norm(torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], 1), dim=1)
    assert found["log_rms_sensitivity"] == pytest.approx(
        0.5 * math.log(float(row_norms.detach().pow(2).mean())))
    rec_norms = torch.linalg.vector_norm(rnn.weight_hh_l0.detach(), dim=1)
    assert found["log_rms_recurrent_sensitivity"] == pytest.approx(
        0.5 * math.log(float(rec_norms.pow(2).mean())))
    largest = rnn_lyapunov(rnn, inputs, warmup=300)["lambda_max"]
    assert largest == pytest.approx(float(eig[0]), abs=1e-2)


def test_step_function_matches_the_module():
    torch.manual_seed(5)
    rnn = ElmanRNN(3, 4, nonlinearity="shifted_sigmoid")
    x = torch.randn(1, 6, 3)
    out, _ = rnn(x)
    step = rnn_step_function(rnn)
    h = torch.zeros(4)
    for t in range(6):
        h = step(h, x[0, t])
    torch.testing.assert_close(h, out[0, -1])


def test_arguments_are_validated():
    h0, inputs = torch.zeros(3), torch.zeros(10, 1)
    step = _linear(torch.eye(3))
    with pytest.raises(ConfigError, match="k must be"):
        lyapunov_spectrum(step, h0, inputs, k=4)
    with pytest.raises(ConfigError, match="warmup"):
        lyapunov_spectrum(step, h0, inputs, warmup=10)
    with pytest.raises(ConfigError, match="method"):
        largest_lyapunov_exponent(step, h0, inputs, method="finite-diff")
    with pytest.raises(ConfigError, match="h0"):
        largest_lyapunov_exponent(step, torch.zeros(2, 3), inputs)
