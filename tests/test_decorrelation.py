"""Decorrelation layer: the three local rules, the drop-in layers and the learning rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from signalprop.errors import ConfigError, DivergenceError
from signalprop.learning.decorrelation_rule import DecorrelationRule, decorrelation_step
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear
from signalprop.nn.decorrelation import Decorrelator, correlation_error
from signalprop.nn.decorrelation_policy import decorrelate

D = 16


def _mixing() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(D, D, generator=g) / D**0.5 + 0.5 * torch.eye(D)


def _correlated(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g) @ _mixing().T + 0.5


def _train(rule: str, lr: float, steps: int = 600, **kw) -> Decorrelator:
    dec = Decorrelator(D, rule=rule, lr=lr, sample_fraction=1.0, **kw)
    for step in range(steps):
        dec(_correlated(256, step + 1))
        dec.update()
    return dec


def test_inputs_are_correlated_to_begin_with():
    x = _correlated(20000, 0)
    assert correlation_error(torch.cov(x.T)) > 0.1


@pytest.mark.parametrize("rule,lr", [("decorrelate", 0.05), ("whiten", 0.05),
                                     ("normalised", 0.02)])
def test_rule_removes_correlations(rule, lr):
    dec = _train(rule, lr)
    cov = dec.output_covariance(_correlated(20000, 0))
    assert correlation_error(cov) < 0.03


def test_whitening_makes_covariance_identity():
    dec = _train("whiten", 0.05, kappa=0.5)
    cov = dec.output_covariance(_correlated(20000, 0))
    assert (cov - torch.eye(D)).abs().max() < 0.15


def test_normalised_rule_whitens_up_to_scale_and_keeps_norm():
    dec = _train("normalised", 0.02)
    x = _correlated(20000, 0)
    cov = dec.output_covariance(x)
    diag = cov.diagonal()
    assert diag.std() / diag.mean() < 0.1
    ratio = float(dec.eval()(x).norm(dim=1).mean() / x.norm(dim=1).mean())
    assert 0.9 < ratio < 1.1


def test_plain_rule_matches_hand_computed_step():
    dec = Decorrelator(4, rule="decorrelate", lr=0.1, sample_fraction=1.0, center=False)
    dec.R.copy_(torch.eye(4) + 0.1 * torch.arange(16.0).reshape(4, 4) / 16)
    r0 = dec.R.clone()
    x = torch.randn(8, 4)
    dec(x)
    dec.update()
    z = x @ r0.T
    c = z.T @ z / 8
    expected = r0 - 0.1 * (c - torch.diag(c.diagonal())) @ r0
    torch.testing.assert_close(dec.R, expected)


def test_normalised_rule_matches_hand_computed_step():
    dec = Decorrelator(4, rule="normalised", lr=0.1, sample_fraction=1.0, center=False)
    x = torch.randn(8, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0])
    dec(x)
    dec.update()
    c = x.T @ x / 8
    g = 1.0  # R = I, so ||z|| = ||x||
    torch.testing.assert_close(dec.R, g * (torch.eye(4) - 0.1 * c))


def test_update_uses_first_ten_percent_of_batch():
    dec = Decorrelator(D, sample_fraction=0.1)
    x = torch.randn(100, D)
    dec(x)
    rows = dec._sample[0]
    assert rows.shape[0] == 11
    torch.testing.assert_close(rows, x[:11])
    dec_random = Decorrelator(D, sample_fraction=0.1, subsample="random")
    dec_random(x)
    assert dec_random._sample[0].shape[0] == 11


def test_divergence_names_the_layer():
    model = nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 2))
    decorrelate(model, rule="decorrelate", lr=1e6, sample_fraction=1.0)
    with pytest.raises(DivergenceError, match=r"layer '0'"):
        for _ in range(20):
            model(_correlated(64, 1) * 100)
            decorrelation_step(model)


@pytest.mark.parametrize("kwargs", [{"rule": "pca"}, {"lr": -1.0}, {"kappa": 2.0},
                                    {"sample_fraction": 0.0}, {"subsample": "last"}])
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        Decorrelator(D, **kwargs)


@pytest.mark.parametrize("fuse", ["always", "never"])
def test_decorrelated_linear_matches_explicit_computation(fuse):
    layer = DecorrelatedLinear(D, 5, fuse=fuse)
    r = torch.eye(D) + 0.05 * torch.randn(D, D)
    layer.decorrelator.R.copy_(r)
    x = torch.randn(32, D)
    out = layer(x)
    z = (x - x.mean(0)) @ r.T
    torch.testing.assert_close(out, z @ layer.weight.T + layer.bias, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    torch.testing.assert_close(layer.weight.grad, grad_out.T @ z, rtol=1e-4, atol=1e-4)
    assert not layer.decorrelator.R.requires_grad


def test_eval_mode_uses_running_mean():
    layer = DecorrelatedLinear(D, 3, momentum=1.0)
    x = torch.randn(64, D) + 3.0
    layer(x)
    layer.eval()
    single = torch.randn(1, D)
    expected = (single - x.mean(0)) @ layer.weight.T + layer.bias
    torch.testing.assert_close(layer(single), expected, rtol=1e-5, atol=1e-5)


def test_decorrelated_conv_matches_decorrelated_patches():
    conv = DecorrelatedConv2d(3, 4, 3, stride=2, padding=1, dilation=1)
    d = conv.patch_features
    r = torch.eye(d) + 0.05 * torch.randn(d, d)
    conv.decorrelator.R.copy_(r)
    x = torch.randn(5, 3, 9, 9)
    out = conv(x)
    cols = F.unfold(x, 3, padding=1, stride=2)  # (N, d, L)
    patches = cols.transpose(1, 2).reshape(-1, d)
    z = (patches - patches.mean(0)) @ r.T
    expected = (z @ conv.weight.reshape(4, -1).T + conv.bias).reshape(5, -1, 4)
    expected = expected.transpose(1, 2).reshape(out.shape)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    rows = conv.decorrelator._sample[0]
    assert rows.shape[0] == 1 * 25  # floor(0.1 * 5) + 1 image, 5x5 positions


def test_decorrelate_converts_and_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    params = list(model.parameters())
    x = torch.randn(4, 1, 6, 6)
    before = model(x)
    decorrelate(model, center=False)
    assert isinstance(model[0], DecorrelatedConv2d) and isinstance(model[3], DecorrelatedLinear)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    torch.testing.assert_close(model(x), before)  # R = I, no centring: same function


def test_rule_in_fit_decorrelates_hidden_layers(tmp_path):
    from torch.utils.data import TensorDataset

    from signalprop.train import TrainConfig, fit

    x = _correlated(1024, 3)
    y = (x[:, 0] > x[:, 1]).long()
    model = decorrelate(nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2)),
                        lr=1e-2, sample_fraction=0.25)
    before = correlation_error(model[0].decorrelator.output_covariance(x))
    cfg = TrainConfig(epochs=4, batch_size=64, lr=1e-2, log_every=5)
    fit(model, TensorDataset(x, y), None, cfg, tmp_path / "run", rules=(DecorrelationRule(),))
    after = correlation_error(model[0].decorrelator.output_covariance(x))
    assert after < 0.5 * before
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "decor_offdiag_corr" in metrics


def test_rule_requires_decorrelated_layers():
    with pytest.raises(ConfigError, match="decorrelate"):
        DecorrelationRule().attach(nn.Linear(3, 2))


def test_batch_of_one_does_not_blow_up_normalised_rule():
    layer = DecorrelatedLinear(D, 3, lr=0.01)  # centred: z = 0 for a single sample
    for _ in range(3):
        layer(torch.randn(1, D))
        layer.decorrelator.update()
    torch.testing.assert_close(layer.decorrelator.R, torch.eye(D))


def test_fused_and_unfused_layers_make_the_same_update():
    x = _correlated(64, 5)
    layers = [DecorrelatedLinear(D, 4, fuse=fuse, lr=0.01) for fuse in ("always", "never")]
    for layer in layers:
        layer.decorrelator.R.copy_(torch.eye(D) + 0.02 * _mixing())
        layer(x)
        layer.decorrelator.update()
    torch.testing.assert_close(layers[0].decorrelator.R, layers[1].decorrelator.R)
    assert not torch.allclose(layers[0].decorrelator.R, torch.eye(D) + 0.02 * _mixing())


def test_foldiak_rule_decorrelates_through_the_inverse():
    before = correlation_error(torch.cov(_correlated(20000, 0).T))
    dec = _train("foldiak", 0.01)
    x = _correlated(20000, 0)
    assert correlation_error(dec.output_covariance(x)) < 0.4 * before
    dec.train()
    expected = (x - x.mean(0)) @ torch.linalg.inv(dec.R).T  # z = R^-1 (x - mu)
    torch.testing.assert_close(dec(x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dec.R, dec.R.T)  # lateral weights stay symmetric
    torch.testing.assert_close(dec.R.diagonal(), torch.ones(D))  # no self-connections


def test_foldiak_rule_matches_hand_computed_step():
    dec = Decorrelator(4, rule="foldiak", lr=0.1, sample_fraction=1.0, center=False)
    dec.R.copy_(torch.eye(4) + 0.05 * torch.ones(4, 4))
    r0 = dec.R.clone()
    x = torch.randn(8, 4)
    dec(x)
    dec.update()
    z = x @ torch.linalg.inv(r0).T
    c = z.T @ z / 8
    torch.testing.assert_close(dec.R, r0 + 0.1 * (c - torch.diag(c.diagonal())))
    torch.testing.assert_close(dec.matrix(), torch.linalg.inv(dec.R))  # cache follows R


@pytest.mark.parametrize("rule", ["decorrelate", "whiten", "normalised", "foldiak"])
@pytest.mark.parametrize("batch", [8, 64])  # k < d: Z^T (Z R); k > d: (Z^T Z) R
def test_local_update_equals_the_all_reduce_path(rule, batch):
    decs = [Decorrelator(D, rule=rule, lr=0.05, sample_fraction=1.0) for _ in range(2)]
    x = _correlated(batch, 7)
    for dec in decs:
        dec.R.copy_(torch.eye(D) + 0.1 * _mixing())
        dec(x)
    r0 = decs[0].R.clone()
    decs[0].update()
    decs[1].apply_statistics(decs[1].statistics())
    torch.testing.assert_close(decs[0].R, decs[1].R, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(decs[0].R, r0)


def _fused_pair(rule: str, out: int, feedback: bool) -> list[DecorrelatedLinear]:
    torch.manual_seed(3)
    layers = [DecorrelatedLinear(D, out, fuse=fuse, rule=rule) for fuse in ("always", "never")]
    layers[1].load_state_dict(layers[0].state_dict())
    r, b = torch.eye(D) + 0.1 * _mixing(), torch.randn(out, D)
    for layer in layers:
        layer.decorrelator.R.copy_(r)
        if feedback:
            layer.register_buffer("feedback", b.clone())
    return layers


@pytest.mark.parametrize("rule", ["normalised", "foldiak"])
@pytest.mark.parametrize("feedback", [False, True])
def test_fused_and_unfused_linear_give_same_outputs_and_gradients(rule, feedback):
    layers = _fused_pair(rule, 5, feedback)
    x = _correlated(32, 2)
    grad_out = torch.randn(32, 5)
    results = []
    for layer in layers:
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out.backward(grad_out)
        results.append((out, xi.grad, layer.weight.grad, layer.bias.grad))
    for fused, unfused in zip(*results, strict=True):
        torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)
    if feedback:  # the input gradient goes through B R, not W R
        m = layers[0].decorrelator.matrix()
        expected = grad_out @ layers[0].feedback @ m
        expected = expected - expected.mean(0)
        torch.testing.assert_close(results[0][1], expected, rtol=1e-5, atol=1e-5)


def test_auto_fuse_picks_the_cheaper_order():
    narrow, wide = DecorrelatedLinear(64, 4), DecorrelatedLinear(64, 128)
    assert narrow.fused(256, True, True, False, True)  # 2*4 + 26 < 2*256
    assert not wide.fused(256, False, True, False, True)  # 2*128 + 26 > 256
    assert wide.fused(1024, False, True, False, True)
    with pytest.raises(ConfigError, match="fuse"):
        DecorrelatedLinear(4, 2, fuse="yes")


def test_decorrelated_conv_gradients_match_decorrelated_patches():
    torch.manual_seed(4)
    conv = DecorrelatedConv2d(2, 3, 3, padding=1)
    d = conv.patch_features
    r = torch.eye(d) + 0.05 * torch.randn(d, d)
    conv.decorrelator.R.copy_(r)
    x = torch.randn(4, 2, 5, 5, requires_grad=True)
    grad_out = torch.randn(4, 3, 5, 5)
    conv(x).backward(grad_out)
    x2 = x.detach().clone().requires_grad_()
    weight = conv.weight.detach().clone().requires_grad_()
    patches = F.unfold(x2, 3, padding=1).transpose(1, 2).reshape(-1, d)
    z = (patches - patches.mean(0)) @ r.T
    out = (z @ weight.reshape(3, -1).T).reshape(4, 25, 3).transpose(1, 2).reshape(4, 3, 5, 5)
    out.backward(grad_out)
    torch.testing.assert_close(conv.weight.grad, weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_benchmark_counts_multiply_adds_of_the_chosen_order():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "decorrelation_cost.py"
    spec = importlib.util.spec_from_file_location("decorrelation_cost", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = decorrelate(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2)))
    counts = bench.multiply_adds(model, torch.randn(32, 8))  # k = 4 sampled rows
    # layer 0 unfused (x R^T: 32*8^2), layer 1 fused (W R, dW R^T, z_s: 2*2*16^2 + 4*16^2)
    assert counts["plain_madds"] == 32 * 8 * 16 * 2 + 32 * 16 * 2 * 3
    assert counts["apply_R_madds"] == 32 * 8**2 + (2 * 2 + 4) * 16**2
    assert counts["update_R_madds"] == 2 * 4 * 8**2 + 2 * 4 * 16**2


def test_decorrelated_conv_feedback_alignment_sends_centring_error_through_b():
    from signalprop.learning.feedback_alignment import linear_with_feedback

    torch.manual_seed(5)
    conv = DecorrelatedConv2d(2, 3, 3, padding=1)
    d = conv.patch_features
    r = torch.eye(d) + 0.05 * torch.randn(d, d)
    b = torch.randn(3, 2, 3, 3)
    conv.decorrelator.R.copy_(r)
    conv.register_buffer("feedback", b)
    x = torch.randn(4, 2, 5, 5, requires_grad=True)
    grad_out = torch.randn(4, 3, 5, 5)
    conv(x).backward(grad_out)
    x2 = x.detach().clone().requires_grad_()
    patches = F.unfold(x2, 3, padding=1).transpose(1, 2).reshape(-1, d)
    z = (patches - patches.mean(0)) @ r.T  # FA replaces only W: error goes through B, R^T, mu
    out = linear_with_feedback(z, conv.weight.detach().reshape(3, -1), None, b.reshape(3, -1))
    out.reshape(4, 25, 3).transpose(1, 2).reshape(4, 3, 5, 5).backward(grad_out)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_learning_config_builds_foldiak_layers_and_rejects_unknown_rules():
    from signalprop.learning.registry import LearningConfig, build_rules

    model = nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 2))
    rules = build_rules(LearningConfig(rule="np", decorrelation="foldiak"), model)
    assert [r.name for r in rules] == ["np", "decorrelation"]
    assert model[0].decorrelator.rule == "foldiak"
    with pytest.raises(ConfigError, match="decorrelation"):
        LearningConfig(decorrelation="foldiak2")
