"""The additive-filter RNN's C++ time loops against the Python loops they replace (issue 28.4):
states and every gradient equal to 1e-6 in float64, for both activations and both kinds of
filter (a matrix and a permutation), with and without gradients on every state."""

from __future__ import annotations

import pytest
import torch

from signalprop.nn.filter_bptt_native import ENV, native_loops
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN

pytestmark = pytest.mark.skipif(native_loops() is None,
                                reason="the C++ loops could not be built on this machine")


def _run(rnn: AdditiveFilterRNN, x: torch.Tensor, h0: torch.Tensor, every_state: bool
         ) -> list[torch.Tensor]:
    rnn.zero_grad()
    x.grad = h0.grad = None
    out, last = rnn(x, h0)
    loss = last.square().sum() + (out.sin().sum() if every_state else 0.0)
    loss.backward()
    grads = [p.grad.clone() for p in rnn.parameters() if p.grad is not None]
    return [out.detach().clone(), x.grad.clone(), h0.grad.clone(), *grads]


@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("every_state", [True, False])
def test_native_loops_match_the_python_loops_in_float64(monkeypatch, filt, activation,
                                                         every_state):
    torch.manual_seed(0)
    rnn = AdditiveFilterRNN(3, 6, beta=0.2, filter=filt, activation=activation,
                            batch_first=True).double()
    x = torch.randn(4, 25, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 4, 6, dtype=torch.float64, requires_grad=True)
    monkeypatch.setenv(ENV, "1")
    native = _run(rnn, x, h0, every_state)
    monkeypatch.setenv(ENV, "0")
    assert native_loops() is None
    python = _run(rnn, x, h0, every_state)
    assert len(native) == len(python) >= 5
    for a, b in zip(native, python, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_switching_the_native_loops_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    assert native_loops() is None
    monkeypatch.setenv(ENV, "1")
    assert native_loops() is not None


def test_the_pip_ninja_is_put_on_path_when_none_is_there(monkeypatch):
    ninja = pytest.importorskip("ninja")
    from signalprop.nn import filter_bptt_native

    monkeypatch.setattr(filter_bptt_native.shutil, "which", lambda name: None)
    monkeypatch.setenv("PATH", "/nowhere")
    filter_bptt_native._ninja_on_path()
    assert filter_bptt_native.os.environ["PATH"].split(":")[0] == ninja.BIN_DIR
