"""Additive-filter MLP: orthogonal filter, checkpointed custom backward, memory, grad norms."""

from __future__ import annotations

import math

import pytest
import torch

from signalprop.diagnostics.gradients import GradNormRecorder
from signalprop.errors import ConfigError
from signalprop.nn.orthogonal import (
    AdditiveFilterBlock,
    AdditiveFilterMLP,
    AdditiveFilterStack,
    _CheckpointedStack,
    random_orthogonal,
)


def test_random_orthogonal_is_orthogonal_and_random():
    q1 = random_orthogonal(24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q2 = random_orthogonal(24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(q1.T @ q1, torch.eye(24, dtype=torch.float64), atol=1e-12)
    assert (q1 - q2).abs().max() > 0.1


def test_haar_sign_correction_gives_zero_mean_diagonal():
    # without the sign correction, QR of a Gaussian has a biased (positive) diagonal of Q
    gen = torch.Generator().manual_seed(0)
    diag = torch.stack([random_orthogonal(4, generator=gen).diagonal() for _ in range(2000)])
    assert abs(float(diag.mean())) < 0.03


@pytest.mark.parametrize("skip", ["orthogonal", "identity", "none"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_custom_backward_matches_gradcheck(skip, activation):
    torch.manual_seed(0)
    stack = AdditiveFilterStack(4, 7, beta=0.3 if skip != "none" else None, skip=skip,
                                activation=activation, segment=3).double()
    h = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)

    def f(h, w, c):
        return _CheckpointedStack.apply(h, w, c, stack.filter, stack.a, stack.b, stack.skip,
                                        stack.activation, stack.segment)

    assert torch.autograd.gradcheck(f, (h, stack.weight, stack.bias))


def test_checkpointed_equals_plain_autograd():
    torch.manual_seed(0)
    stack = AdditiveFilterStack(8, 50, beta=0.2, segment=6).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    grads = []
    for checkpoint in (True, False):
        stack.checkpoint = checkpoint
        stack.zero_grad()
        inp = x.clone().requires_grad_()
        out = stack(inp)
        (out.sin().sum()).backward()
        grads.append((out.detach(), inp.grad, stack.weight.grad.clone(), stack.bias.grad.clone()))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_layer_formula_matches_block():
    torch.manual_seed(0)
    block = AdditiveFilterBlock(6, beta=0.25).double()
    h = torch.randn(3, 6, dtype=torch.float64)
    expected = 0.75 * h @ block.filter.T + 0.25 * torch.tanh(block.linear(h))
    assert torch.allclose(block(h), expected)


def _saved_activation_bytes(model, x) -> int:
    params = {p.data_ptr() for p in model.parameters()} | {b.data_ptr() for b in model.buffers()}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in params:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out.sum().backward()
    return total


def test_memory_stays_bounded_at_depth_2000():
    torch.manual_seed(0)
    width, batch, depth = 16, 8, 2000
    stack = AdditiveFilterStack(width, depth)
    x = torch.randn(batch, width)
    saved = _saved_activation_bytes(stack, x)
    per_state = batch * width * 4
    assert saved <= (math.ceil(math.sqrt(depth)) + 2) * per_state  # ~45 states, not 2000
    assert torch.isfinite(stack.weight.grad).all() and stack.weight.grad.abs().sum() > 0
    stack.checkpoint = False
    plain = _saved_activation_bytes(stack, x)
    assert plain >= depth * per_state  # plain autograd keeps every layer


def test_grad_norm_recorder_reports_each_stacked_layer():
    torch.manual_seed(0)
    model = AdditiveFilterMLP(5, 6, 1200, 3)
    recorder = GradNormRecorder(model, max_layers=500)
    norms = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        model(torch.randn(4, 5)).square().sum().backward()
        recorder.record()
        g = model.stack
        norms.append(torch.sqrt(g.weight.grad.square().sum((1, 2)) + g.bias.grad.square().sum(1)))
    expected = (norms[0] + norms[1]) / 2
    got = recorder.pop_means()
    keys = list(got)
    assert keys[0] == "input" and keys[-1] == "head"  # forward order, first and last kept
    stack = [k for k in keys if k.startswith("stack.")]
    assert 490 <= len(stack) <= 502
    indices = [int(k.split(".")[1]) for k in stack]
    assert indices == sorted(indices) and indices[-1] >= 1195  # evenly spread over the depth
    for key in stack:
        assert got[key] == pytest.approx(float(expected[int(key.split(".")[1])]), rel=1e-5)
    assert torch.allclose(model.stack.layer_grad_norms(), norms[1])
    assert recorder.pop_means() == {}
    recorder.remove()


def test_beta_defaults_to_one_over_depth():
    stack = AdditiveFilterStack(4, 400, beta_scale=2.0)
    assert stack.b == pytest.approx(2.0 / 400) and stack.a + stack.b == pytest.approx(1.0)
    assert AdditiveFilterStack(4, 10, skip="identity", beta=0.5).a == 1.0
    assert AdditiveFilterStack(4, 10, skip="none").b == 1.0


@pytest.mark.parametrize("kwargs", [
    {"width": 0, "depth": 3}, {"width": 3, "depth": 0}, {"width": 3, "depth": 3, "beta": 0.0},
    {"width": 3, "depth": 3, "beta": 1.5}, {"width": 3, "depth": 3, "skip": "bogus"},
    {"width": 3, "depth": 3, "activation": "gelu"}, {"width": 3, "depth": 3, "gain": -1.0},
])
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        AdditiveFilterStack(**kwargs)


def test_mlp_trains_a_little():
    torch.manual_seed(0)
    x = torch.randn(64, 10)
    y = (x[:, 0] > 0).long()
    model = AdditiveFilterMLP(10, 8, 300, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
