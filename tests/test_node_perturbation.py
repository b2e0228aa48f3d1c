"""Node perturbation: its expected update aligns with the true gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from signalprop.learning.perturbation import NodePerturbation, per_sample_loss
from signalprop.nn.decorrelation_policy import decorrelate


def _net(decorrelated: bool) -> nn.Sequential:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
    if decorrelated:
        decorrelate(model, center=False, lr=0.0)
        model[0].decorrelator.R.copy_(torch.eye(6) + 0.1 * torch.randn(6, 6))
    return model


def _flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("decorrelated", [False, True])
def test_expected_np_update_aligns_with_gradient(decorrelated):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 4, (32,), generator=g)
    model = _net(decorrelated)
    F.cross_entropy(model(x), y).backward()
    true = _flat_grads(model)
    model.zero_grad()
    rule = NodePerturbation(sigma=1e-6)
    rule.attach(model)
    torch.manual_seed(0)
    total = torch.zeros_like(true)
    single = []
    draws = 600
    for _ in range(draws):
        model.zero_grad()
        rule.compute_gradients(model, x, y, F.cross_entropy)
        estimate = _flat_grads(model)
        total += estimate
        single.append(F.cosine_similarity(estimate, true, dim=0))
    mean = total / draws
    assert F.cosine_similarity(mean, true, dim=0) > 0.98
    assert 0.85 < float(mean.norm() / true.norm()) < 1.15
    # one draw is a much noisier estimate than the average
    assert float(torch.stack(single).mean()) < 0.9


def test_np_on_conv_layer_aligns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    x, y = torch.randn(16, 1, 5, 5), torch.randint(0, 3, (16,))
    F.cross_entropy(model(x), y).backward()
    true = _flat_grads(model)
    rule = NodePerturbation(sigma=1e-5)
    rule.attach(model)
    total = torch.zeros_like(true)
    for _ in range(400):
        model.zero_grad()
        rule.compute_gradients(model, x, y, F.cross_entropy)
        total += _flat_grads(model)
    assert F.cosine_similarity(total, true, dim=0) > 0.95


def test_per_sample_loss_matches_loop():
    out, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    expected = torch.stack([F.cross_entropy(out[i : i + 1], y[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(per_sample_loss(F.cross_entropy, out, y), expected)
