"""LEM's hand-written BPTT (``impl="bptt"``) against its autograd loop: the recurrence's outputs
and every gradient (inputs, input maps, y0, z0, state maps, ``z_to_y``, every bias) equal to
1e-6 in float64, with the Python time loops, the C++ loops of ATen calls and the hand-fused C++
kernels (both skipped where they cannot be built), at several hidden sizes (not multiples of 8
among them) and batch sizes (1 and odd); float32 to float32 rounding; a ``gradcheck`` on a tiny
case; the module's outputs unchanged; and the dispatch that runs the fused kernels for a small
CPU model by default."""

from __future__ import annotations

import pytest
import torch

from signalprop.nn import filter_bptt_native, lem_bptt_native
from signalprop.nn.lem import _LEMBPTT, LEM, lem_recurrence
from signalprop.nn.lem_bptt_native import loop_kind, native_loops

ENV = filter_bptt_native.ENV
FUSED_ENV = filter_bptt_native.FUSED_ENV


@pytest.fixture(params=["python", "aten", "fused"])
def loops(request, monkeypatch):
    """Which time loops the Function runs: the Python ones, the C++ loops of ATen calls or the
    hand-fused C++ kernels (forced at every size)."""
    if request.param == "python":
        monkeypatch.setenv(ENV, "0")
        assert native_loops() is None
        return request.param
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv(FUSED_ENV, "1" if request.param == "fused" else "0")
    if native_loops() is None:
        pytest.skip("LEM's C++ loops could not be built on this machine")
    if request.param == "fused" and not native_loops().fused_available():
        pytest.skip("LEM's fused kernels need GCC or clang")
    return request.param


def _reference(x2d, w_in, b_in, y, z, ws, bs, wy, by, dt):
    """The recurrence as LEMCell.step writes it, under autograd."""
    projected = torch.nn.functional.linear(x2d, w_in, b_in).view(-1, *y.shape[:1],
                                                                 w_in.shape[0])
    outputs = []
    for p in projected.unbind(0):
        u_dt, u_dt_bar, u_y, u_z = p.chunk(4, dim=-1)
        s_dt, s_dt_bar, s_z = torch.nn.functional.linear(y, ws, bs).chunk(3, dim=-1)
        z = torch.lerp(z, torch.tanh(u_z + s_z), dt * torch.sigmoid(u_dt + s_dt))
        y = torch.lerp(y, torch.tanh(torch.nn.functional.linear(z, wy, by) + u_y),
                       dt * torch.sigmoid(u_dt_bar + s_dt_bar))
        outputs.append(y)
    return torch.stack(outputs), y, z


def _inputs(steps=13, batch=4, n=5, seed=0, features=3, dtype=torch.float64):
    """``lem_recurrence``'s tensors: time-major inputs (T B, features), input map and bias,
    y0, z0, state maps and bias, ``z_to_y`` and bias."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(
            dtype).requires_grad_()

    return (rand(steps * batch, features), rand(4 * n, features, scale=0.7),
            rand(4 * n, scale=0.3), rand(batch, n, scale=0.5), rand(batch, n, scale=0.5),
            rand(3 * n, n, scale=n ** -0.5), rand(3 * n, scale=0.3), rand(n, n, scale=n ** -0.5),
            rand(n, scale=0.3))


def _loss(outs, weights):
    return sum((w * o.sin()).sum() for w, o in zip(weights, outs, strict=True) if w is not None)


def _weights(theirs, used):
    """Loss weights on (every y_t, y_T, z_T): all three, every y_t only, or the final state."""
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)
               for t in theirs]
    if used == "every_y":
        weights[1] = weights[2] = None
    elif used == "last":
        weights[0] = None
    return weights


def _check_against_reference(inputs, dt, used, atol):
    ours = lem_recurrence(*inputs, dt)
    theirs = _reference(*inputs, dt)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    weights = _weights(theirs, used)
    grads = torch.autograd.grad(_loss(ours, weights), inputs)
    expected = torch.autograd.grad(_loss(theirs, weights), inputs)
    assert len(grads) == 9
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize("dt", [1.0, 0.6])
@pytest.mark.parametrize("used", ["all", "every_y", "last"])
def test_function_matches_the_autograd_loop_in_float64(loops, dt, used):
    _check_against_reference(_inputs(), dt, used, 1e-6)


@pytest.mark.parametrize("used", ["all", "last"])
@pytest.mark.parametrize(("n", "batch"), [(1, 1), (7, 3), (8, 1), (13, 5), (16, 2), (32, 3),
                                          (33, 1), (70, 3)])
def test_fused_kernels_match_the_autograd_loop_in_float64(monkeypatch, n, batch, used):
    """Hidden sizes below, at and across the kernels' column blocks (16 doubles), ones that are
    not multiples of 8, one above the default size limit (forced); batch 1 and odd."""
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv(FUSED_ENV, "1")
    if native_loops() is None or not native_loops().fused_available():
        pytest.skip("LEM's fused kernels could not be built on this machine")
    _check_against_reference(_inputs(steps=9, batch=batch, n=n, seed=n), 0.7, used, 1e-6)


@pytest.mark.parametrize("n", [13, 32, 40])
def test_fused_kernels_match_the_autograd_loop_in_float32(monkeypatch, n):
    """float32 (the kernels' own exp; one and two blocks of 32 columns) to float32 rounding."""
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv(FUSED_ENV, "1")
    if native_loops() is None or not native_loops().fused_available():
        pytest.skip("LEM's fused kernels could not be built on this machine")
    _check_against_reference(_inputs(steps=9, batch=3, n=n, dtype=torch.float32), 0.8, "all",
                             2e-5)


def test_gradcheck_on_a_tiny_case(loops):
    inputs = _inputs(steps=3, batch=2, n=2, seed=3, features=2)
    assert torch.autograd.gradcheck(lambda *args: lem_recurrence(*args, 0.8), inputs)


@pytest.mark.parametrize("batch_first", [True, False])
def test_module_outputs_and_gradients_unchanged(loops, batch_first):
    torch.manual_seed(2)
    model = LEM(3, 6, dt=0.9, batch_first=batch_first, dtype=torch.float64)
    x = torch.randn(5, 11, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(1, 5 if batch_first else 11, 6, dtype=torch.float64,
                              requires_grad=True) for _ in range(2))
    results = {}
    for impl in ("bptt", "loop"):
        model.impl = impl
        out, (y_n, z_n) = model(x, state)
        loss = out.cos().sum() + y_n.square().sum() + z_n.sum()
        results[impl] = [out, y_n, z_n, *torch.autograd.grad(
            loss, [x, *state, *model.parameters()])]
        with torch.no_grad():  # the forward alone, without the Function
            results[impl].append(model(x, state)[0])
    for a, b in zip(*results.values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_a_second_backward_with_retain_graph(loops):
    torch.manual_seed(3)
    model = LEM(2, 4, dtype=torch.float64)
    out, _ = model(torch.randn(3, 7, 2, dtype=torch.float64))
    loss = out.square().sum()
    first = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(model.parameters()))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_the_function_refuses_vmap_and_the_module_falls_back():
    model = LEM(2, 4, dtype=torch.float64)
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    looped = torch.stack([model(x[i:i + 1])[0][0] for i in range(3)])
    mapped = torch.func.vmap(lambda xi: model(xi.unsqueeze(0))[0][0])(x)
    torch.testing.assert_close(mapped, looped)
    rest = [t.detach() for t in _inputs(n=2)[1:]]
    with pytest.raises(Exception, match="vmap"):
        torch.func.vmap(lambda x2d: _LEMBPTT.apply(x2d, rest[0], rest[1], *rest[2:5], rest[6],
                                                   1.0)[0])(
            torch.randn(2, 13 * 4, 3, dtype=torch.float64))


def test_an_unknown_impl_is_refused():
    from signalprop.errors import ConfigError

    with pytest.raises(ConfigError, match="impl"):
        LEM(1, 4, impl="fast")


def test_loop_kind_picks_the_fused_kernels_for_small_cpu_float_tensors(monkeypatch):
    monkeypatch.delenv(FUSED_ENV, raising=False)
    monkeypatch.setenv(ENV, "1")
    if native_loops() is None:
        pytest.skip("LEM's C++ loops could not be built on this machine")
    small = lem_bptt_native.FUSED_MAX_HIDDEN
    for dtype in (torch.float32, torch.float64):
        assert loop_kind(small, torch.zeros(2, dtype=dtype)) == "fused"
        assert loop_kind(small + 1, torch.zeros(2, dtype=dtype)) == "aten"
    monkeypatch.setenv(FUSED_ENV, "0")
    assert loop_kind(8, torch.zeros(2)) == "aten"
    monkeypatch.setenv(ENV, "0")
    assert loop_kind(8, torch.zeros(2)) == "python"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_training_step_at_hidden_32_runs_the_fused_kernels(monkeypatch, dtype):
    """By default (no environment switch) both time loops of a small CPU model are the fused
    kernels (backward with the weight gradients accumulated inside), each called once per
    training step."""
    monkeypatch.delenv(FUSED_ENV, raising=False)
    monkeypatch.setenv(ENV, "1")
    native = native_loops()
    if native is None:
        pytest.skip("LEM's C++ loops could not be built on this machine")
    calls: list[str] = []
    for name in ("forward_fused", "backward_fused", "backward_fused_grads", "forward_loop",
                 "backward_loop"):
        original = getattr(native, name)

        def counted(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(native, name, counted)
    model = LEM(2, 32, dtype=dtype)
    out, (y_n, z_n) = model(torch.randn(5, 30, 2, dtype=dtype))
    (out.sum() + y_n.sum() + z_n.sum()).backward()
    assert calls == ["forward_fused", "backward_fused_grads"]
