"""Block-diagonal decorrelation (``block_size``): maths, rules, layers and config."""

from __future__ import annotations

import pytest
import torch

from signalprop.errors import ConfigError
from signalprop.learning.registry import LearningConfig, build_rules
from signalprop.nn.block_diagonal import (
    BLOCK_MAC_COST,
    apply_rows,
    block_groups,
    right_multiply,
)
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear
from signalprop.nn.decorrelation import Decorrelator, correlation_error

D, B = 14, 4  # three blocks of 4 and a remainder block of 2


def _block_mask(d: int = D, b: int = B) -> torch.Tensor:
    ids = torch.arange(d) // b
    return ids[:, None] == ids[None, :]


def _correlated(n: int, seed: int) -> torch.Tensor:
    """Inputs whose features are correlated within each block (and a little across blocks)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(D, D, generator=torch.Generator().manual_seed(0)) / D**0.5
    mix = mix * (_block_mask() + 0.1 * ~_block_mask()) + 0.5 * torch.eye(D)
    return torch.randn(n, D, generator=g) @ mix.T + 0.5


def _random_block_matrix() -> torch.Tensor:
    return (torch.eye(D) + 0.2 * torch.randn(D, D)) * _block_mask()


def test_groups_cover_the_features_with_a_remainder_block():
    assert block_groups(D, B) == ((0, 3, 4), (12, 1, 2))
    assert block_groups(8, 4) == ((0, 2, 4),)
    assert block_groups(8, None) == ((0, 1, 8),)
    assert block_groups(8, 16) == ((0, 1, 8),)


def test_block_products_equal_dense_products_with_a_block_diagonal_matrix():
    torch.manual_seed(0)
    m = _random_block_matrix()
    rows, weight = torch.randn(9, D), torch.randn(5, D)
    groups = block_groups(D, B)
    torch.testing.assert_close(apply_rows(rows, m, groups), rows @ m.T)
    torch.testing.assert_close(right_multiply(weight, m, groups), weight @ m)
    big_rows, big_weight = torch.randn(20000, D), torch.randn(20000, D)  # past DENSE_MACS
    torch.testing.assert_close(apply_rows(big_rows, m, groups), big_rows @ m.T)
    torch.testing.assert_close(right_multiply(big_weight, m, groups), big_weight @ m)
    grad_rows = big_rows.clone().requires_grad_()
    apply_rows(grad_rows, m, groups).sum().backward()
    torch.testing.assert_close(grad_rows.grad, torch.ones(20000, D) @ m)


def test_loading_a_dense_r_keeps_only_the_blocks():
    dense = Decorrelator(D)
    dense.R.copy_(torch.randn(D, D))
    blocked = Decorrelator(D, block_size=B)
    blocked.load_state_dict(dense.state_dict())
    torch.testing.assert_close(blocked.R, dense.R * _block_mask())


def _train(rule: str, lr: float, steps: int = 600, **kw) -> Decorrelator:
    dec = Decorrelator(D, rule=rule, lr=lr, sample_fraction=1.0, block_size=B, **kw)
    for step in range(steps):
        dec(_correlated(256, step + 1))
        dec.update()
    return dec


def _within_block_error(cov: torch.Tensor) -> float:
    return max(correlation_error(cov[s:s + B, s:s + B]) for s in range(0, D, B))


@pytest.mark.parametrize("rule,lr", [("decorrelate", 0.05), ("whiten", 0.05),
                                     ("normalised", 0.02), ("foldiak", 0.02)])
def test_rules_decorrelate_within_blocks_and_keep_r_block_diagonal(rule, lr):
    x = _correlated(20000, 0)
    before = _within_block_error(torch.cov(x.T))
    dec = _train(rule, lr)
    after = _within_block_error(dec.output_covariance(x))
    assert before > 0.1
    assert after < 0.03
    assert torch.count_nonzero(dec.R[~_block_mask()]) == 0
    assert torch.count_nonzero(dec.matrix()[~_block_mask()]) == 0


@pytest.mark.parametrize("rule", ["decorrelate", "whiten", "normalised", "foldiak"])
def test_equal_blocks_without_remainder_stay_block_diagonal(rule):
    dec = Decorrelator(12, rule=rule, lr=0.01, sample_fraction=0.1, block_size=4)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # k = 26 rows > block size, and k = 3 < block size
        for batch in (256, 20):
            dec(torch.randn(batch, 12, generator=g) @ torch.randn(12, 12, generator=g))
            dec.update()
    assert torch.count_nonzero(dec.R[~_block_mask(12, 4)]) == 0
    assert not torch.equal(dec.R, torch.eye(12))


def test_block_whitening_makes_covariance_identity_within_blocks():
    dec = _train("whiten", 0.05, kappa=0.5)
    cov = dec.output_covariance(_correlated(20000, 0))
    assert ((cov - torch.eye(D)) * _block_mask()).abs().max() < 0.15


@pytest.mark.parametrize("rule", ["decorrelate", "whiten", "normalised", "foldiak"])
@pytest.mark.parametrize("batch", [3, 64])  # k below and above the block size
def test_block_rule_equals_dense_rule_on_masked_statistics(rule, batch):
    """One block step equals the dense step with C restricted to the blocks; the all-reduce
    path (statistics/apply_statistics) gives the same R as the local update."""
    r = torch.eye(D) + 0.1 * _random_block_matrix()
    x = _correlated(batch, 7)
    local, reduced = (Decorrelator(D, rule=rule, lr=0.05, sample_fraction=1.0, block_size=B)
                      for _ in range(2))
    for dec in (local, reduced):
        dec.R.copy_(r)
        dec(x)
    z = (x - x.mean(0)) @ local.matrix().T
    c = (z.T @ z / batch) * _block_mask()
    local.update()
    reduced.apply_statistics(reduced.statistics())
    torch.testing.assert_close(local.R, reduced.R, rtol=1e-5, atol=1e-5)
    if rule == "decorrelate":
        expected = r - 0.05 * (c - torch.diag(c.diagonal())) @ r
        torch.testing.assert_close(local.R, expected, rtol=1e-5, atol=1e-5)
    if rule == "foldiak":
        torch.testing.assert_close(local.R, r + 0.05 * (c - torch.diag(c.diagonal())))


def _outputs_and_gradients(layer, x, grad_out):
    xi = x.clone().requires_grad_()
    out = layer(xi)
    out.backward(grad_out)
    return out, xi.grad, layer.weight.grad


@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("d,batch", [(D, 32), (500, 400)])  # small: dense matmuls; large: bmm
def test_block_linear_fused_and_unfused_agree_with_dense_computation(feedback, d, batch):
    torch.manual_seed(3)
    layers = [DecorrelatedLinear(d, 5, fuse=f, block_size=B) for f in ("always", "never")]
    layers[1].load_state_dict(layers[0].state_dict())
    r = (torch.eye(d) + 0.2 * torch.randn(d, d)) * _block_mask(d, B)
    for layer in layers:
        layer.decorrelator.R.copy_(r)
        if feedback:
            layer.register_buffer("feedback", torch.randn(5, d, generator=torch.Generator()))
    x, grad_out = torch.randn(batch, d) + 0.5, torch.randn(batch, 5)
    fused, unfused = (_outputs_and_gradients(layer, x, grad_out) for layer in layers)
    w = layers[0].weight.detach()
    expected = (x - x.mean(0)) @ r.T @ w.T + layers[0].bias.detach()
    for a, b in zip(fused, unfused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused[0], expected, rtol=1e-4, atol=1e-4)


def test_block_conv_matches_block_decorrelated_patches():
    torch.manual_seed(4)
    conv = DecorrelatedConv2d(2, 3, 3, padding=1, block_size=5)  # d = 18: 3 blocks of 5 + 3
    d = conv.patch_features
    mask = _block_mask(d, 5)
    r = (torch.eye(d) + 0.05 * torch.randn(d, d)) * mask
    conv.decorrelator.R.copy_(r)
    x = torch.randn(4, 2, 5, 5)
    out = conv(x)
    patches = conv.patches(x)
    z = (patches - patches.mean(0)) @ r.T
    ref = (z @ conv.weight.detach().reshape(3, -1).T + conv.bias.detach())
    ref = ref.reshape(4, 25, 3).transpose(1, 2).reshape(4, 3, 5, 5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.decorrelated_input(x), z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4"])
def test_bad_block_size_is_a_config_error(value):
    with pytest.raises(ConfigError, match="block_size"):
        Decorrelator(D, block_size=value)


def test_learning_config_sets_block_size_and_zero_means_dense():
    model = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    build_rules(LearningConfig(decorrelation="whiten", block_size=B), model)
    assert model[0].decorrelator.block_size == B
    assert model[2].decorrelator.block_size == B
    assert "block_size=4" in repr(model[0])
    dense = torch.nn.Sequential(torch.nn.Linear(D, 2))
    build_rules(LearningConfig(decorrelation="whiten"), dense)
    assert dense[0].decorrelator.block_size is None
    with pytest.raises(ConfigError, match="block_size"):
        LearningConfig(decorrelation="whiten", block_size=-1)


def test_product_cost_counts_blocks_and_small_dense_products():
    dec = Decorrelator(1024, block_size=16)  # 64 blocks
    assert dec.block_entries == 1024 * 16
    assert dec.product_macs(256) == 256 * 1024 * 16
    assert dec.product_macs(1) == 1024 * 16  # 1M dense multiply-adds: blocks are cheaper
    assert Decorrelator(512, block_size=16).product_macs(1) == 512**2  # small: one dense mm
    assert Decorrelator(1024).product_macs(256) == 256 * 1024**2


def _load_benchmark(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuse_choice_weighs_block_products_by_their_slower_rate():
    dec = Decorrelator(256, block_size=16)
    assert dec.product_cost(256) == BLOCK_MAC_COST * dec.product_macs(256)  # bmm over blocks
    assert dec.product_cost(2) == dec.product_macs(2) == 2 * 256**2  # small: one dense mm
    assert dec.product_cost(10) == BLOCK_MAC_COST * 10 * 256 * 16  # 0.66M dense: blocks
    assert Decorrelator(256).product_cost(256) == 256 * 256**2
    # the experiment MLP's classifier (256 -> 10, batch 256): W R, dW R^T (10 rows each) and
    # z_s (26 rows) cost 2 * 46 * 4096 = 0.38M weighted; unfused, x R^T and dz R over blocks are
    # 2.1M multiply-adds but 4.2M at the block rate, so the layer fuses; a 256-wide hidden layer
    # (fused: 2 * 538 * 4096 = 4.4M) does not
    assert DecorrelatedLinear(256, 10, block_size=16).fused(256, True, True, False, True)
    assert not DecorrelatedLinear(256, 256, block_size=16).fused(256, True, True, False, True)


def test_per_step_state_stays_out_of_the_state_dict():
    layer = DecorrelatedLinear(D, 3, block_size=B)
    keys = set(layer.state_dict())
    layer(_correlated(8, 0))
    dec = layer.decorrelator
    assert dec.has_sample() and dec._last_mean is not None
    assert set(layer.state_dict()) == keys == {"weight", "bias", "decorrelator.R",
                                               "decorrelator.running_mean"}
    dec.update()
    assert not dec.has_sample()


def test_benchmark_counts_block_multiply_adds():
    from signalprop.nn.decorrelation_policy import decorrelate

    bench = _load_benchmark("decorrelation_cost")
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.Tanh(),
                                torch.nn.Linear(1024, 2))
    counts = bench.multiply_adds(decorrelate(model, block_size=16), torch.randn(64, 1024))
    entries = 1024 * 16  # k = 7 sampled rows
    # layer 0: x R^T over blocks (64 rows). Layer 1 (1024 -> 2) fuses: W R and dW R^T (2 rows
    # each) and z_s (7 rows) over blocks cost less than the unfused x R^T and dz R (2 * 64 rows)
    assert model[2].fused(64, True, True, False, True)
    assert counts["apply_R_madds"] == 64 * entries + (2 * 2 + 7) * entries
    assert counts["update_R_madds"] == 2 * (2 * 7 * entries)


@pytest.mark.parametrize("fuse", ["always", "never"])
def test_block_layer_works_under_torch_func(fuse):
    torch.manual_seed(5)
    layer = DecorrelatedLinear(D, 3, block_size=B, fuse=fuse).eval()
    r = _random_block_matrix()
    layer.decorrelator.R.copy_(r)
    x = torch.randn(D)
    jac = torch.func.jacrev(lambda v: layer(v[None])[0])(x)
    torch.testing.assert_close(jac, layer.weight.detach() @ r, rtol=1e-5, atol=1e-5)


def test_block_divergence_names_the_layer():
    from signalprop.errors import DivergenceError
    from signalprop.learning.decorrelation_rule import decorrelation_step
    from signalprop.nn.decorrelation_policy import decorrelate

    model = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    decorrelate(model, rule="decorrelate", lr=1e6, sample_fraction=1.0, block_size=B)
    with pytest.raises(DivergenceError, match=r"layer '0'"):
        for _ in range(20):
            model(_correlated(64, 1) * 100)
            decorrelation_step(model)


def test_before_after_benchmark_imports_another_revision_beside_this_one(tmp_path):
    import importlib
    import sys

    ab = _load_benchmark("decorrelation_ab")
    package = ab.extract_revision("HEAD", tmp_path)
    assert "from signalprop." not in (package / "nn" / "decorrelated_layers.py").read_text()
    sys.path.insert(0, str(tmp_path))
    try:
        policy = importlib.import_module("signalprop_base.nn.decorrelation_policy")
        model = policy.decorrelate(torch.nn.Sequential(torch.nn.Linear(D, 2)), block_size=B)
        assert type(model[0]).__module__ == "signalprop_base.nn.decorrelated_layers"
        assert model(_correlated(5, 0)).shape == (5, 2)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.split(".")[0] == "signalprop_base"]:
            del sys.modules[name]
    with pytest.raises(SystemExit, match="cannot read revision 'no-such-rev'"):
        ab.extract_revision("no-such-rev", tmp_path / "other")


def test_benchmark_reports_the_spread_of_per_round_ratios(monkeypatch):
    bench = _load_benchmark("decorrelation_cost")
    build = lambda: torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(),  # noqa: E731
                                        torch.nn.Linear(8, 10))  # 10 classes, as the benchmark
    row = bench.compare("tiny", build, torch.randn(16, D), rounds=4, repeats=1, block_size=B)
    low, high = row["ratio_quartiles"]
    assert 0 < low <= row["ratio"] <= high
    monkeypatch.setattr("sys.argv", ["decorrelation_cost.py", "--rounds", "0"])
    with pytest.raises(SystemExit):
        bench.main()


def test_crossover_benchmark_times_the_block_product_it_describes(monkeypatch, capsys):
    bench = _load_benchmark("block_crossover")
    dec = Decorrelator(40, block_size=B)
    with torch.no_grad():
        dec.R.add_(0.1 * torch.randn(40, 40) * _block_mask(40, B))
    rows = torch.randn(5, 40)
    torch.testing.assert_close(bench.by_blocks(rows, dec), rows @ dec.R.T)
    monkeypatch.setattr(bench, "WIDTHS", (32,))
    monkeypatch.setattr(bench, "ROWS", (1, 4))
    monkeypatch.setattr("sys.argv", ["block_crossover.py", "--repeats", "1"])
    bench.main()
    assert "DENSE_MACS = " in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["block_crossover.py", "--repeats", "0"])
    with pytest.raises(SystemExit):
        bench.main()
