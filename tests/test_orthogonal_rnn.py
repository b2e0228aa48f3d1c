"""Additive-filter RNN: nn.RNN calling convention, naive reference loop, hand-written BPTT."""

from __future__ import annotations

import pytest
import torch

from signalprop.errors import ConfigError
from signalprop.nn.orthogonal_rnn import (
    AdditiveFilterRNN,
    AdditiveFilterRNNCell,
    LastStepClassifier,
    _AdditiveFilterBPTT,
)


def _reference(rnn: AdditiveFilterRNN, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The defining equation, one example and one step at a time, no shared code paths."""
    c = rnn.cell
    out = torch.empty(x.shape[0], x.shape[1], c.hidden_size, dtype=x.dtype)
    for n in range(x.shape[0]):
        h = h0[0, n]
        for t in range(x.shape[1]):
            z = c.weight_hh @ h + c.weight_ih @ x[n, t] + c.bias
            h = c.a * (c.filter @ h) + c.b * torch.tanh(z)
            out[n, t] = h
    return out


@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("impl", ["bptt", "loop"])
def test_layer_matches_naive_reference(impl, filt):
    torch.manual_seed(0)
    rnn = AdditiveFilterRNN(3, 5, beta=0.3, impl=impl, filter=filt).double()
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    h0 = torch.randn(1, 4, 5, dtype=torch.float64)
    output, h_n = rnn(x, h0)
    assert output.shape == (4, 9, 5) and h_n.shape == (1, 4, 5)
    with torch.no_grad():
        expected = _reference(rnn, x, h0)
    assert torch.allclose(output, expected, atol=1e-12)
    assert torch.allclose(h_n[0], expected[:, -1], atol=1e-12)


def test_default_h0_is_zero_and_time_major_works():
    torch.manual_seed(0)
    rnn = AdditiveFilterRNN(2, 4, beta=0.2).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    out_default, _ = rnn(x)
    out_zero, _ = rnn(x, torch.zeros(1, 3, 4, dtype=torch.float64))
    assert torch.allclose(out_default, out_zero)
    rnn.batch_first = False
    out_tm, _ = rnn(x.transpose(0, 1))
    assert torch.allclose(out_tm.transpose(0, 1), out_default)


def test_cell_matches_layer_step():
    torch.manual_seed(0)
    rnn = AdditiveFilterRNN(2, 4, beta=0.4).double()
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    h1 = rnn.cell(x[:, 0])
    h2 = rnn.cell(x[:, 1], h1)
    out, _ = rnn(x)
    assert torch.allclose(out[:, 1], h2)


def test_custom_bptt_gradcheck():
    torch.manual_seed(0)
    cell = AdditiveFilterRNNCell(2, 5, beta=0.3).double()
    x = torch.randn(6, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def f(x, h0, w_ih, bias, w_hh):
        return _AdditiveFilterBPTT.apply(x, h0, w_ih, bias, w_hh, cell.filter, cell.a, cell.b,
                                         "tanh")

    assert torch.autograd.gradcheck(f, (x, h0, cell.weight_ih, cell.bias, cell.weight_hh))


def test_permutation_bptt_gradcheck_and_filter_is_a_permutation():
    torch.manual_seed(0)
    cell = AdditiveFilterRNNCell(2, 5, beta=0.3, filter="permutation").double()
    assert torch.equal(cell.filter.sum(0), torch.ones(5, dtype=torch.float64))
    assert torch.equal(cell.filter.T @ cell.filter, torch.eye(5, dtype=torch.float64))
    x = torch.randn(6, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def f(x, h0, w_ih, bias, w_hh):
        return _AdditiveFilterBPTT.apply(x, h0, w_ih, bias, w_hh, cell.permutation, cell.a,
                                         cell.b, "tanh")

    assert torch.autograd.gradcheck(f, (x, h0, cell.weight_ih, cell.bias, cell.weight_hh))


@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("bias", [True, False])
def test_bptt_gradients_equal_autograd_loop(filt, bias):
    torch.manual_seed(0)
    rnn = AdditiveFilterRNN(3, 7, beta=0.1, filter=filt, bias=bias).double()
    x = torch.randn(4, 20, 3, dtype=torch.float64)
    h0 = torch.randn(1, 4, 7, dtype=torch.float64)
    grads = []
    for impl in ("bptt", "loop"):
        rnn.impl = impl
        rnn.zero_grad()
        xi, hi = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, h_n = rnn(xi, hi)
        (out.square().sum() + h_n.sin().sum()).backward()
        grads.append([xi.grad, hi.grad] + [p.grad.clone() for p in rnn.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_classifier_head_on_last_state_works_with_torch_rnns():
    x = torch.randn(2, 5, 1)
    for rnn in (AdditiveFilterRNN(1, 4), torch.nn.RNN(1, 4, batch_first=True),
                torch.nn.LSTM(1, 4, batch_first=True)):
        assert LastStepClassifier(rnn, 3)(x).shape == (2, 3)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        AdditiveFilterRNN(1, 4, beta=0.0)
    with pytest.raises(ConfigError):
        AdditiveFilterRNN(1, 4, impl="cuda")
    with pytest.raises(ConfigError):
        AdditiveFilterRNN(0, 4)
    with pytest.raises(ConfigError):
        AdditiveFilterRNN(1, 4, filter="householder")


def test_cycle_filter_shifts_the_state_by_one():
    cell = AdditiveFilterRNNCell(1, 5, beta=0.5, filter="cycle")
    h = torch.arange(5.0).unsqueeze(0)
    assert torch.equal(h @ cell.filter.t(), torch.tensor([[4.0, 0.0, 1.0, 2.0, 3.0]]))
    rnn = AdditiveFilterRNN(1, 5, beta=0.5, filter="cycle").double()
    x = torch.randn(2, 6, 1, dtype=torch.float64)
    ref = _reference(rnn, x, torch.zeros(1, 2, 5, dtype=torch.float64))
    assert torch.allclose(rnn(x)[0], ref, atol=1e-12)
    with pytest.raises(ValueError):
        AdditiveFilterRNN(1, 4)(torch.randn(2, 3, 1), torch.zeros(2, 4))


@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("read", ["output_last", "h_n"])
def test_bptt_last_state_only_gradients_equal_autograd_loop(filt, activation, read):
    """A loss on the last state only: through ``output[:, -1]`` the other steps' gradients are
    zero; through ``h_n`` the output gets no gradient at all (the BPTT's fast path)."""
    torch.manual_seed(0)
    rnn = AdditiveFilterRNN(2, 6, beta=0.2, filter=filt, activation=activation).double()
    x = torch.randn(3, 15, 2, dtype=torch.float64)
    grads = []
    for impl in ("bptt", "loop"):
        rnn.impl = impl
        rnn.zero_grad()
        xi = x.clone().requires_grad_()
        out, h_n = rnn(xi)
        last = out[:, -1] if read == "output_last" else h_n[0]
        last.tanh().sum().backward()
        grads.append([xi.grad] + [p.grad.clone() for p in rnn.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_bptt_second_backward_with_retain_graph_gives_the_same_gradients():
    """Backward overwrites its activation buffer; a second backward must rebuild it."""
    torch.manual_seed(2)
    rnn = AdditiveFilterRNN(2, 5, beta=0.3).double()
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    out, h_n = rnn(x)
    loss = out.sum() + h_n.pow(3).sum()
    first = torch.autograd.grad(loss, list(rnn.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(rnn.parameters()))
    for a, b in zip(first, second, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_no_grad_forward_equals_training_forward_and_reuses_buffers():
    torch.manual_seed(3)
    rnn = AdditiveFilterRNN(1, 8, beta=0.1)
    x = torch.randn(2, 30, 1)
    out, h_n = rnn(x)
    with torch.no_grad():
        out2, h_n2 = rnn(x)
        out3, _ = rnn(x)  # takes the buffer the previous no-grad call gave back
    assert torch.equal(out.detach(), out2) and torch.equal(h_n.detach(), h_n2)
    assert torch.equal(out2, out3)


def test_classifier_scale_multiplies_the_last_state():
    torch.manual_seed(4)
    rnn = AdditiveFilterRNN(1, 4, beta=0.5)
    plain, scaled = LastStepClassifier(rnn, 3), LastStepClassifier(rnn, 3, scale=3.0)
    scaled.head.load_state_dict(plain.head.state_dict())
    x = torch.randn(2, 5, 1)
    _, h_n = rnn(x)
    assert torch.allclose(scaled(x), plain.head(3.0 * h_n[-1]))


def test_bptt_skips_gradients_nobody_asked_for():
    torch.manual_seed(5)
    rnn = AdditiveFilterRNN(2, 5, beta=0.3).double()
    rnn.cell.weight_ih.requires_grad_(False)
    x = torch.randn(3, 8, 2, dtype=torch.float64)  # no grad for the input either
    grads = []
    for impl in ("bptt", "loop"):
        rnn.impl = impl
        rnn.zero_grad()
        _, h_n = rnn(x)
        h_n.sum().backward()
        assert rnn.cell.weight_ih.grad is None
        grads.append([rnn.cell.weight_hh.grad.clone(), rnn.cell.bias.grad.clone()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
