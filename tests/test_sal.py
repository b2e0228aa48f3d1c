"""Sensitivity adjustment learning: the step direction, the gate, the saturation guard."""

import math

import pytest
import torch
from torch import nn

from signalprop.diagnostics.sensitivity import SensitivityProbe
from signalprop.errors import ConfigError, DivergenceError
from signalprop.learning.sensitivity import SensitivityAdjustment, sal_update
from signalprop.nn.elman import ElmanRNN
from signalprop.storage import read_jsonl
from signalprop.train import TrainConfig, fit


def _two_neuron_layer() -> nn.Sequential:
    """Neuron 0: tiny weights (s ~ 0.1); neuron 1: ||w|| = 3, U small (s ~ 3)."""
    layer = nn.Sequential(nn.Linear(3, 2), nn.Tanh()).double()
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[0.05, -0.08, 0.03], [2.0, -2.0, 1.0]]))
        layer[0].bias.zero_()
    return layer


def _mean_s(layer: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    probe = SensitivityProbe(layer)
    layer(x)
    s = probe.sensitivities()["0"].mean(0)
    probe.remove()
    return s


def test_sal_raises_low_sensitivity_and_leaves_high_alone():
    layer = _two_neuron_layer()
    x = 0.1 * torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = _mean_s(layer, x)
    assert before[0] < 1 < before[1]
    w1 = layer[0].weight[1].detach().clone()
    b1 = layer[0].bias[1].detach().clone()
    rule = SensitivityAdjustment(lr=0.05, beta=0.99)  # s_bar lags: neuron 0 stays gated
    rule.attach(layer)
    for _ in range(20):
        layer(x)
        metrics = rule.after_step(layer)
    after = _mean_s(layer, x)
    assert after[0] > before[0] + 0.5
    torch.testing.assert_close(layer[0].weight[1], w1, rtol=0, atol=0)
    torch.testing.assert_close(layer[0].bias[1], b1, rtol=0, atol=0)
    assert metrics["sal_gated_frac"] == pytest.approx(0.5)
    assert metrics["sal_saturated_frac"] == 0.0
    assert metrics["sal_mean_s"] == pytest.approx(float(after.mean()), rel=0.05)


def _autograd_sal(weight, bias, x, objective):
    w = weight.detach().clone().requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True)
    s = (1 - torch.tanh(x @ w.T + b) ** 2) * torch.linalg.vector_norm(w, dim=1)
    value = s.log().mean(0).sum() if objective == "log_s" else s.mean(0).sum()
    return torch.autograd.grad(value, (w, b))


@pytest.mark.parametrize("objective", ["s", "log_s"])
def test_sal_step_is_the_gradient_of_sensitivity(objective):
    g = torch.Generator().manual_seed(1)
    weight = 0.3 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    step = sal_update(weight, bias, x, "tanh", 0.1, objective=objective,
                      saturation_guard=False, gate="none")
    gw, gb = _autograd_sal(weight, bias, x, objective)
    torch.testing.assert_close(step.d_weight, 0.1 * gw)
    torch.testing.assert_close(step.d_bias, 0.1 * gb)


def test_rnn_sal_splits_the_step_between_input_and_recurrent_weights():
    torch.manual_seed(2)
    rnn = ElmanRNN(2, 4, gain=0.2, input_gain=0.2).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    rule = SensitivityAdjustment(lr=0.1, gate="none", saturation_guard=False)
    rule.attach(rnn)
    with torch.no_grad():
        rnn(x)
    rows = rule.probe.inputs("rnn").clone()
    weight = torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], 1).detach().clone()
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().clone()
    gw, gb = _autograd_sal(weight, bias, rows, "s")
    old_ih, old_hh = rnn.weight_ih_l0.detach().clone(), rnn.weight_hh_l0.detach().clone()
    old_b = rnn.bias_hh_l0.detach().clone()
    rule.after_step(rnn)
    torch.testing.assert_close(rnn.weight_ih_l0 - old_ih, 0.1 * gw[:, :2])
    torch.testing.assert_close(rnn.weight_hh_l0 - old_hh, 0.1 * gw[:, 2:])
    torch.testing.assert_close(rnn.bias_hh_l0 - old_b, 0.1 * gb)


def test_saturation_guard_revives_a_saturated_neuron():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)

    def saturated_layer():
        layer = nn.Sequential(nn.Linear(3, 1), nn.Tanh()).double()
        with torch.no_grad():
            layer[0].weight.fill_(0.1)
            layer[0].bias.fill_(6.0)  # U ~ 6: tanh'(U) ~ 2.5e-5, s ~ 4e-6
        return layer

    plain, guarded = saturated_layer(), saturated_layer()
    plain_rule = SensitivityAdjustment(lr=0.05, saturation_guard=False)
    guard_rule = SensitivityAdjustment(lr=0.05, saturation_guard=True)
    plain_rule.attach(plain)
    guard_rule.attach(guarded)
    for _ in range(60):
        plain(x)
        plain_metrics = plain_rule.after_step(plain)
        guarded(x)
        guard_rule.after_step(guarded)
    assert plain_metrics["sal_saturated_frac"] == 1.0
    assert float(plain[0].bias.detach()) == pytest.approx(6.0, abs=1e-3)  # stuck: ds/dw ~ 0
    assert float(guarded[0].bias.detach()) < 3.0  # pulled back out of saturation
    assert _mean_s(guarded, x)[0] > 100 * _mean_s(plain, x)[0]


def test_divergence_names_the_layer():
    layer = _two_neuron_layer().float()
    rule = SensitivityAdjustment(lr=1e38, gate="none")  # float32 overflows within a few steps
    rule.attach(layer)
    with pytest.raises(DivergenceError, match="layer 0"):
        for _ in range(20):
            layer(torch.ones(4, 3))
            rule.after_step(layer)
    layer = _two_neuron_layer()
    rule.attach(layer)
    layer(torch.full((4, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(DivergenceError, match="inputs of layer 0"):
        rule.after_step(layer)


def test_rule_validates_and_needs_attach():
    with pytest.raises(ConfigError, match="lr"):
        SensitivityAdjustment(lr=-1)
    with pytest.raises(ConfigError, match="objective"):
        SensitivityAdjustment(objective="ln")
    with pytest.raises(ConfigError, match="gate"):
        SensitivityAdjustment(gate="soft")
    with pytest.raises(ConfigError, match="attach"):
        SensitivityAdjustment().after_step(nn.Linear(2, 2))


def test_rule_runs_inside_fit_logs_metrics_and_checkpoints_its_average(tmp_path, blobs):
    train, test = blobs
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 3))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.2)
    rule = SensitivityAdjustment(lr=0.02, beta=0.9)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, log_every=2)
    fit(model, train, test, cfg, tmp_path, rules=(rule,))
    steps = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "step"]
    assert {"sal_mean_s", "sal_log_rms_s", "sal_gated_frac", "sal_saturated_frac"} <= set(steps[0])
    assert steps[-1]["sal_log_rms_s"] > steps[0]["sal_log_rms_s"]
    assert all(math.isfinite(r["sal_mean_s"]) for r in steps)
    fresh = SensitivityAdjustment()
    fresh.load_state_dict(rule.state_dict())
    torch.testing.assert_close(fresh.average.values["0"], rule.average.values["0"])
    assert fresh.average.beta == 0.9


def _sal_alone_on_deep_tanh_mlp(rule: SensitivityAdjustment, steps: int = 250) -> list[float]:
    """Mean sensitivity after each SAL step on a 100-layer tanh MLP started from gain 0.5."""
    from signalprop.nn.mlp import MLP

    torch.manual_seed(0)
    model = MLP(16, 32, 100, 4, activation="tanh", gain=0.5)
    rule.attach(model)
    x = torch.randn(64, 16)
    history = []
    for _ in range(steps):
        model(x)
        history.append(rule.after_step(model)["sal_mean_s"])
    rule.detach()
    return history


def test_default_sal_converges_to_the_target_without_overshoot_on_a_deep_net():
    history = _sal_alone_on_deep_tanh_mlp(SensitivityAdjustment())
    assert history[0] < 0.8  # it starts well below the target
    assert max(history) <= 1.02  # and never goes more than 2% past it
    assert history[-1] >= 0.98


@pytest.mark.slow
def test_a_slow_moving_average_overshoots_the_target():
    """The counter-case of the test above: beta = 0.99 (the old default) lags and overshoots."""
    history = _sal_alone_on_deep_tanh_mlp(SensitivityAdjustment(beta=0.99))
    assert max(history) > 1.15
