"""The additive-filter RNN's C++ time loops against the Python loops they replace (issue 28.4):
states and every gradient equal to 1e-6 in float64, for both activations and both kinds of
filter (a matrix and a permutation), with and without gradients on every state, for the loops
of ATen calls and for the hand-fused kernels (several hidden sizes, batch 1 and odd batches);
and the dispatch that picks the fused kernels for small hidden sizes."""

from __future__ import annotations

import pytest
import torch

from signalprop.nn import filter_bptt_native, native_build
from signalprop.nn.filter_bptt_native import ENV, FUSED_ENV, loop_kind, native_loops
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


def _native_against_python(monkeypatch, fused: str, filt: str, activation: str, hidden: int,
                           batch: int, every_state: bool, dtype: torch.dtype = torch.float64,
                           atol: float = 1e-6) -> None:
    """Outputs and the gradients of x, h0, U, W and c from the C++ loops (``fused``: the
    value of ``SIGNALPROP_FUSED_BPTT``) equal those of the Python loops."""
    torch.manual_seed(hidden + batch)
    rnn = AdditiveFilterRNN(3, hidden, beta=0.2, filter=filt, activation=activation,
                            batch_first=True, dtype=dtype)
    x = torch.randn(batch, 25, 3, dtype=dtype, requires_grad=True)
    h0 = torch.randn(1, batch, hidden, dtype=dtype, requires_grad=True)
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv(FUSED_ENV, fused)
    native = _run(rnn, x, h0, every_state)
    monkeypatch.setenv(ENV, "0")
    assert native_loops() is None
    python = _run(rnn, x, h0, every_state)
    assert len(native) == len(python) == 6
    for a, b in zip(native, python, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize("fused", ["0", "1"])
@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("every_state", [True, False])
def test_native_loops_match_the_python_loops_in_float64(monkeypatch, fused, filt, activation,
                                                         every_state):
    _native_against_python(monkeypatch, fused, filt, activation, 6, 4, every_state)


@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize(("hidden", "batch"), [(1, 1), (13, 1), (16, 5), (33, 3), (70, 2)])
def test_fused_loops_match_the_python_loops_in_float64(monkeypatch, filt, activation, hidden,
                                                        batch):
    """Hidden sizes below, at and across the kernels' column blocks (16 doubles), one that is
    not a multiple of 8 and one above the default size limit (forced)."""
    _native_against_python(monkeypatch, "1", filt, activation, hidden, batch, True)


@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fused_loops_match_the_python_loops_in_float32(monkeypatch, filt, activation):
    """float32 (its own exp, two blocks of 32 columns at hidden 40) to float32 rounding."""
    _native_against_python(monkeypatch, "1", filt, activation, 40, 3, True, torch.float32,
                           atol=2e-5)


def test_loop_kind_picks_the_fused_kernels_for_small_cpu_float_tensors(monkeypatch):
    monkeypatch.delenv(FUSED_ENV, raising=False)
    small = filter_bptt_native.FUSED_MAX_HIDDEN
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(2, 3, dtype=dtype)
        assert loop_kind(small, x, None) == "fused"
        assert loop_kind(small + 1, x) == "aten"
    assert loop_kind(8, torch.zeros(2, dtype=torch.float16)) == "aten"
    assert loop_kind(8, torch.zeros(2), torch.zeros(2, dtype=torch.float64)) == "aten"
    monkeypatch.setenv(FUSED_ENV, "1")
    assert loop_kind(small + 1, torch.zeros(2)) == "fused"
    monkeypatch.setenv(FUSED_ENV, "0")
    assert loop_kind(8, torch.zeros(2)) == "aten"
    monkeypatch.setenv(ENV, "0")
    assert loop_kind(8, torch.zeros(2)) == "python"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("filt", ["haar", "permutation"])
def test_a_training_step_at_hidden_32_runs_the_fused_kernels(monkeypatch, dtype, filt):
    """By default (no environment switch) both time loops of a small float model are the fused
    kernels, each called once per training step."""
    monkeypatch.delenv(FUSED_ENV, raising=False)
    monkeypatch.setenv(ENV, "1")
    native = native_loops()
    calls: list[str] = []
    for name in ("forward_fused", "backward_fused", "forward_loop", "backward_loop"):
        original = getattr(native, name)

        def counted(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(native, name, counted)
    rnn = AdditiveFilterRNN(2, 32, filter=filt, dtype=dtype)
    out, last = rnn(torch.randn(5, 30, 2, dtype=dtype))
    (out.sum() + last.sum()).backward()
    assert calls == ["forward_fused", "backward_fused"]


def test_a_native_cpu_build_is_cached_under_the_cpu_tag():
    tag = native_build.cpu_tag()
    assert len(tag) == 10 and tag == native_build.cpu_tag()
    assert native_build.build_name("x", ["-O3", "-march=native"]) == f"x_{tag}"
    assert native_build.build_name("x", ["-O2"]) == "x"
    assert native_loops().__name__ in (filter_bptt_native.NAME,
                                       f"{filter_bptt_native.NAME}_{tag}")


def test_switching_the_native_loops_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    assert native_loops() is None
    monkeypatch.setenv(ENV, "1")
    assert native_loops() is not None


def test_the_pip_ninja_is_put_on_path_when_none_is_there(monkeypatch):
    ninja = pytest.importorskip("ninja")

    monkeypatch.setattr(native_build.shutil, "which", lambda name: None)
    monkeypatch.setenv("PATH", "/nowhere")
    native_build._ninja_on_path()
    assert native_build.os.environ["PATH"].split(":")[0] == ninja.BIN_DIR
