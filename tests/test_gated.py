"""Deep gated network variants behave as the NPF/DLGN papers specify."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signalprop.errors import ConfigError
from signalprop.nn.gated import Gate, GatedMLP, gated_mlp
from signalprop.nn.gated_conv import GatedConvNet, gated_conv_net
from signalprop.nn.mlp import MLP


def _relu_sequential(model: GatedMLP) -> nn.Sequential:
    layers: list[nn.Module] = []
    for layer in model.value_layers:
        copy = nn.Linear(layer.in_features, layer.out_features)
        copy.load_state_dict(layer.state_dict())
        layers += [copy, nn.ReLU()]
    head = nn.Linear(model.head.in_features, model.head.out_features)
    head.load_state_dict(model.head.state_dict())
    return nn.Sequential(*layers, head)


def test_relu_variant_equals_relu_mlp_output_and_gradients():
    torch.manual_seed(0)
    model = gated_mlp("relu", 7, 9, 4, 3)
    reference = _relu_sequential(model)
    x = torch.randn(11, 7)
    torch.testing.assert_close(model(x), reference(x))
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    ref_grads = [p.grad for p in reference.parameters()]
    torch.testing.assert_close([p.grad for p in model.parameters()], ref_grads)


def test_relu_conv_variant_equals_sequential_conv_relu_gap():
    torch.manual_seed(1)
    model = gated_conv_net("relu", 2, 5, channels=(3, 4), dense=(6,))
    convs = [m for m in model.value_layers if isinstance(m, nn.Conv2d)]
    dense = [m for m in model.value_layers if isinstance(m, nn.Linear)]
    reference = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense[0], nn.ReLU(),
                              model.head)
    x = torch.randn(3, 2, 8, 8)
    torch.testing.assert_close(model(x), reference(x))
    assert [g.shape[1] for g in model.gates(x)] == [3 * 64, 4 * 64, 6]


def test_fixed_random_gates_do_not_change_during_training():
    torch.manual_seed(2)
    model = gated_mlp("frnpf-di", 6, 8, 3, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    gates_before = [g.clone() for g in model.gates(x)]
    feature_before = {k: v.clone() for k, v in model.feature_parameters().items()}
    value_before = {k: v.clone() for k, v in model.value_parameters().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == len(value_before)
    opt = torch.optim.Adam(trainable, lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for k, v in model.feature_parameters().items():
        torch.testing.assert_close(v, feature_before[k], rtol=0, atol=0)
    for a, b in zip(model.gates(x), gates_before, strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(v, value_before[k]) for k, v in model.value_parameters().items())


def test_identical_init_gates_are_the_value_nets_relu_gates_at_init():
    torch.manual_seed(3)
    model = gated_mlp("frnpf-ii", 5, 6, 3, 2)
    for f, v in zip(model.feature_layers, model.value_layers, strict=True):
        assert torch.equal(f.weight, v.weight)
    x = torch.randn(9, 5)
    torch.testing.assert_close(model(x), _relu_sequential(model)(x))
    independent = gated_mlp("frnpf-di", 5, 6, 3, 2)
    assert not torch.equal(independent.feature_layers[0].weight, independent.value_layers[0].weight)


def test_copied_gates_equal_the_trained_relu_networks_gates():
    torch.manual_seed(4)
    relu = gated_mlp("relu", 5, 6, 3, 2)
    with torch.no_grad():
        for p in relu.parameters():
            p.add_(0.3 * torch.randn_like(p))  # pretend it was trained
    model = gated_mlp("flnpf", 5, 6, 3, 2, gates_from=relu)
    x = torch.randn(20, 5)
    for mine, theirs in zip(model.gates(x), relu.gates(x), strict=True):
        assert torch.equal(mine, theirs)
    relu_gates = []
    h = x
    for layer in relu.value_layers:
        h = layer(h)
        relu_gates.append((h > 0).float())
        h = h.relu()
    for mine, expected in zip(model.gates(x), relu_gates, strict=True):
        assert torch.equal(mine, expected)
    assert not torch.equal(model.value_layers[0].weight, relu.value_layers[0].weight)
    assert not any(p.requires_grad for p in model.feature_parameters().values())
    # gates can also come from a plain ReLU MLP
    mlp = MLP(5, 6, 3, 2, activation="relu")
    from_mlp = gated_mlp("flnpf", 5, 6, 3, 2, gates_from=mlp)
    expected = (mlp.hidden[0](x) > 0).float()
    assert torch.equal(from_mlp.gates(x)[0], expected)


def test_decoupled_gates_learn_and_hard_gates_pass_no_gradient():
    torch.manual_seed(5)
    x = torch.randn(8, 4)
    soft = gated_mlp("dlnpf", 4, 5, 2, 2)
    soft(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in soft.feature_parameters().values())
    hard = gated_mlp("frnpf-di", 4, 5, 2, 2, train_gates=True)
    hard(x).sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0
               for p in hard.feature_parameters().values())


def test_dlgn_gates_are_sigmoid_of_a_deep_linear_map():
    torch.manual_seed(6)
    model = gated_mlp("dlgn", 4, 5, 3, 2, bias=False)
    x = torch.randn(7, 4)
    product = torch.eye(4)
    for layer, gate in zip(model.feature_layers, model.gates(x), strict=True):
        product = layer.weight @ product
        torch.testing.assert_close(gate, torch.sigmoid(4.0 * x @ product.T))


def test_soft_gate_tends_to_hard_gate():
    q = torch.tensor([-2.0, -0.1, 0.1, 3.0])
    hard = Gate("hard")(q)
    assert hard.tolist() == [0.0, 0.0, 1.0, 1.0]
    torch.testing.assert_close(Gate("soft", beta=1e4)(q), hard)
    torch.testing.assert_close(Gate("soft", beta=4.0, scale=1.1)(q),
                               1.1 * torch.sigmoid(4.0 * q))


def test_constant_one_value_input():
    torch.manual_seed(7)
    model = gated_mlp("dlgn", 4, 5, 2, 2, value_input="ones", bias=False)
    x = torch.randn(3, 4)
    assert torch.equal(model.value_input_of(x), torch.ones(3, 4))
    h = model.value_layers[0](torch.ones(3, 4)) * model.gates(x)[0]
    h = model.value_layers[1](h) * model.gates(x)[1]
    torch.testing.assert_close(model(x), model.head(h))


def test_repr_and_reset_parameters():
    model = gated_mlp("dlnpf", 4, 5, 2, 3)
    text = repr(model)
    assert "width=5" in text and "kind=soft, beta=4, scale=1.1" in text
    before = model.value_layers[0].weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.value_layers[0].weight)
    assert "channels=(64, 64, 128, 128)" in repr(GatedConvNet(3, 10))


@pytest.mark.parametrize("kwargs", [
    {"width": 0}, {"depth": -1}, {"gate": "step"}, {"gating": "tied"}, {"beta": 0.0},
    {"gate_scale": float("nan")}, {"init": "he"}, {"value_input": "zeros"},
    {"feature_activation": "tanh"}, {"train_gates": "no"},
    {"gating": "shared", "train_gates": False}, {"gating": "shared", "identical_init": True},
    {"gating": "shared", "feature_activation": "linear"},
])
def test_bad_arguments_raise_config_error(kwargs):
    args = {"in_features": 3, "width": 4, "depth": 2, "out_features": 2}
    options = {k: v for k, v in kwargs.items() if k not in args}
    args.update({k: v for k, v in kwargs.items() if k in args})
    with pytest.raises(ConfigError):
        GatedMLP(**args, **options)


def test_variant_errors():
    with pytest.raises(ConfigError, match="unknown gated-network variant"):
        gated_mlp("galu", 3, 4, 2, 2)
    with pytest.raises(ConfigError, match="gates_from"):
        gated_mlp("flnpf", 3, 4, 2, 2)
    with pytest.raises(ConfigError, match="only used by"):
        gated_mlp("relu", 3, 4, 2, 2, gates_from=gated_mlp("relu", 3, 4, 2, 2))
    with pytest.raises(ConfigError, match="hidden layers"):
        gated_mlp("flnpf", 3, 4, 2, 2, gates_from=gated_mlp("relu", 3, 4, 3, 2))
    with pytest.raises(ConfigError, match="shapes differ"):
        gated_mlp("flnpf", 3, 4, 2, 2, gates_from=gated_mlp("relu", 3, 5, 2, 2))
    with pytest.raises(ConfigError):
        GatedConvNet(1, 10, kernel_size=2)
    with pytest.raises(ConfigError):
        GatedConvNet(1, 10, channels=())


def test_conv_fixed_learnt_gates_copy_and_stay_fixed():
    torch.manual_seed(9)
    relu = gated_conv_net("relu", 1, 4, channels=(3,), dense=(5,))
    model = gated_conv_net("flnpf", 1, 4, channels=(3,), dense=(5,), gates_from=relu)
    x, y = torch.randn(6, 1, 6, 6), torch.randint(0, 4, (6,))
    before = [g.clone() for g in model.gates(x)]
    for mine, theirs in zip(before, relu.gates(x), strict=True):
        assert torch.equal(mine, theirs)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for a, b in zip(model.gates(x), before, strict=True):
        assert torch.equal(a, b)
    from signalprop.diagnostics.path_kernel import ntk, path_kernel
    with pytest.raises(ConfigError, match="fully connected"):
        path_kernel(model, x)
    assert ntk(model, x).shape == (6, 6)
