"""LEM's hand-written BPTT (``impl="bptt"``) against its autograd loop: the Function's outputs
and every gradient (projected inputs, y0, z0, both weights and biases) equal to 1e-6 in float64,
with the Python time loops and with the C++ ones (skipped where they cannot be built), a
``gradcheck`` on a tiny case, and the module's outputs unchanged."""

from __future__ import annotations

import pytest
import torch

from signalprop.nn import filter_bptt_native
from signalprop.nn.lem import _LEMBPTT, LEM
from signalprop.nn.lem_bptt_native import native_loops

ENV = filter_bptt_native.ENV


@pytest.fixture(params=["python", "native"])
def loops(request, monkeypatch):
    """Which time loops the Function runs: the Python ones or the C++ ones."""
    if request.param == "native":
        monkeypatch.setenv(ENV, "1")
        if native_loops() is None:
            pytest.skip("LEM's C++ loops could not be built on this machine")
    else:
        monkeypatch.setenv(ENV, "0")
        assert native_loops() is None
    return request.param


def _reference(projected, y, z, ws, bs, wy, by, dt):
    """The recurrence as LEMCell.step writes it, under autograd."""
    outputs = []
    for p in projected.unbind(0):
        u_dt, u_dt_bar, u_y, u_z = p.chunk(4, dim=-1)
        s_dt, s_dt_bar, s_z = torch.nn.functional.linear(y, ws, bs).chunk(3, dim=-1)
        z = torch.lerp(z, torch.tanh(u_z + s_z), dt * torch.sigmoid(u_dt + s_dt))
        y = torch.lerp(y, torch.tanh(torch.nn.functional.linear(z, wy, by) + u_y),
                       dt * torch.sigmoid(u_dt_bar + s_dt_bar))
        outputs.append(y)
    return torch.stack(outputs), y, z


def _inputs(steps=13, batch=4, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    return (rand(steps, batch, 4 * n), rand(batch, n, scale=0.5), rand(batch, n, scale=0.5),
            rand(3 * n, n, scale=n ** -0.5), rand(3 * n, scale=0.3), rand(n, n, scale=n ** -0.5),
            rand(n, scale=0.3))


@pytest.mark.parametrize("dt", [1.0, 0.6])
@pytest.mark.parametrize("used", ["all", "every_y", "last"])
def test_function_matches_the_autograd_loop_in_float64(loops, dt, used):
    inputs = _inputs()
    ours = _LEMBPTT.apply(*inputs, dt)[:3]
    theirs = _reference(*inputs, dt)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in theirs]
    if used == "every_y":
        weights[1] = weights[2] = None
    elif used == "last":
        weights[0] = None
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    def loss(outs):
        return sum((w * o.sin()).sum() for w, o in zip(weights, outs, strict=True)
                   if w is not None)

    grads = torch.autograd.grad(loss(ours), inputs)
    expected = torch.autograd.grad(loss(theirs), inputs)
    assert len(grads) == 7
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_gradcheck_on_a_tiny_case(loops):
    inputs = _inputs(steps=3, batch=2, n=2, seed=3)
    assert torch.autograd.gradcheck(lambda *args: _LEMBPTT.apply(*args, 0.8)[:3], inputs)


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
    with pytest.raises(Exception, match="vmap"):
        torch.func.vmap(lambda p: _LEMBPTT.apply(p, *_inputs(n=2)[1:], 1.0)[0])(
            torch.randn(2, 13, 4, 8, dtype=torch.float64))


def test_an_unknown_impl_is_refused():
    from signalprop.errors import ConfigError

    with pytest.raises(ConfigError, match="impl"):
        LEM(1, 4, impl="fast")
