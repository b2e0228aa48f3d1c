"""Regression tests for the rows of issue 29's table: methods that failed, mostly silently,
when combined."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import signalprop
from signalprop.errors import ConfigError, DivergenceError
from signalprop.learning.base import LearningRule
from signalprop.learning.decorrelation_rule import DecorrelationRule, decorrelation_step
from signalprop.learning.feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from signalprop.learning.perturbation import NodePerturbation
from signalprop.learning.sensitivity import SensitivityAdjustment
from signalprop.nn.decorrelation_policy import decorrelate, decorrelation_summary
from signalprop.nn.feedback import linear_with_feedback
from signalprop.nn.gated import GatedMLP, variant_options
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterMLP
from signalprop.train import TrainConfig, fit

CFG = TrainConfig(epochs=1, batch_size=16, lr=1e-2, log_every=1, eval_batch_size=64)


def _data(n: int = 64, features: int = 6, classes: int = 3, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, features, generator=g),
                         torch.randint(0, classes, (n,), generator=g))


def _filter_mlp(**options) -> AdditiveFilterMLP:
    torch.manual_seed(0)
    return AdditiveFilterMLP(6, 5, 4, 3, segment=2, beta=0.5, **options)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


# --- SAL ------------------------------------------------------------------------------------
def test_sal_trains_under_bf16_autocast(tmp_path):
    """Was: ``mat1 and mat2 must have the same dtype`` in learning/sensitivity.py."""
    torch.manual_seed(0)
    model = MLP(6, 8, 2, 3)
    before = model.hidden[2].weight.detach().clone()
    result = fit(model, _data(), None, TrainConfig(**{**CFG.__dict__, "amp": "bf16"}),
                 tmp_path, rules=(SensitivityAdjustment(gate="none"),))
    assert result["train_loss"] == result["train_loss"]  # finite, no crash
    assert not torch.equal(before, model.hidden[2].weight)


def test_sal_reads_the_decorrelated_layers_true_pre_activation():
    """Was: SAL read ``W x + b`` on the raw input, not ``W R (x - mu) + b``."""
    torch.manual_seed(0)
    model = decorrelate(MLP(6, 8, 2, 3), lr=0.1)
    x = torch.randn(32, 6) @ torch.randn(6, 6)  # correlated inputs
    for _ in range(3):  # R moves away from the identity
        model(x)
        decorrelation_step(model)
    rule = SensitivityAdjustment()
    rule.attach(model)
    seen: dict[str, torch.Tensor] = {}
    layer = model.hidden[2]
    handle = layer.register_forward_hook(lambda m, a, out: seen.setdefault("u", out.detach()))
    model(x)
    handle.remove()
    probe_layer = next(entry for entry in rule.probe.layers if entry.module is layer)
    rows = rule.probe.inputs(probe_layer.name)
    torch.testing.assert_close(probe_layer.pre_activation(rows), seen["u"], rtol=1e-4,
                               atol=1e-5)
    rule.detach()


def test_sal_refuses_a_layer_it_would_skip():
    with pytest.raises(ConfigError, match=r"SAL cannot train '0' \(Conv2d\)"):
        SensitivityAdjustment().attach(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(),
                                                     nn.Flatten(), nn.Linear(8, 3)))


# --- the additive-filter stack under FA, DFA, NP and decorrelation ---------------------------
def test_decorrelate_wraps_every_layer_of_the_additive_filter_stack():
    """Was: only the input and head Linears were wrapped; the stack was untouched."""
    model = decorrelate(_filter_mlp(), lr=0.1)
    assert len(model.stack.decorrelators) == model.stack.depth
    assert [n for n, _ in decorrelation_summary(model).wrapped] == ["input", "stack", "head"]
    model(torch.randn(16, 6) @ torch.randn(6, 6))
    assert decorrelation_step(model) == model.stack.depth + 2
    assert all(not torch.equal(dec.R, torch.eye(5)) for dec in model.stack.decorrelators)


@pytest.mark.parametrize("checkpoint", [True, False])
def test_fa_sends_the_error_through_b_in_every_stack_layer(checkpoint):
    """Was: FA on input and head only; the stack was trained by exact backprop."""
    model = _filter_mlp(checkpoint=checkpoint)
    rule = FeedbackAlignment(seed=0)
    rule.attach(model)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    feedback = model.stack.feedback
    assert feedback.shape == model.stack.weight.shape
    reference = copy.deepcopy(model)
    rule.compute_gradients(model, x, y, nn.functional.cross_entropy)

    stack = reference.stack  # the same maths, written with the library's FA linear map
    h = linear_with_feedback(x, reference.input.weight, reference.input.bias,
                             reference.input.feedback)
    for layer in range(stack.depth):
        z = linear_with_feedback(h, stack.weight[layer], stack.bias[layer], feedback[layer])
        h = stack.a * h @ stack.filter.t() + stack.b * torch.tanh(z)
    out = linear_with_feedback(h, reference.head.weight, reference.head.bias,
                               reference.head.feedback)
    nn.functional.cross_entropy(out, y).backward()
    for (name, mine), theirs in zip(model.named_parameters(), reference.parameters(),
                                    strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6, msg=name)
    rule.detach()
    assert "feedback" not in model.stack._buffers


def test_dfa_injects_its_error_at_every_stack_layer():
    model = _filter_mlp()
    rule = DirectFeedbackAlignment(seed=0, derivative=False)
    rule.attach(model)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    rule.compute_gradients(model, x, y, nn.functional.cross_entropy)
    assert {f"stack.{i}" for i in range(4)} <= set(rule.feedback)
    with torch.no_grad():  # dL/dW_l = (e B_l^T)^T h_l with the injected error at z_l
        out = model(x)
        error = (torch.softmax(out, 1) - nn.functional.one_hot(y, 3)) / len(y)
        h = model.input(x)
        stack = model.stack
        for layer in range(stack.depth):
            direct = error @ rule.feedback[f"stack.{layer}"].T
            torch.testing.assert_close(stack.weight.grad[layer], direct.T @ h, rtol=1e-4,
                                       atol=1e-6)
            z = h @ stack.weight[layer].T + stack.bias[layer]
            h = stack.a * h @ stack.filter.t() + stack.b * torch.tanh(z)
    rule.detach()
    assert model.stack.tap is None


def test_np_estimates_the_stack_gradient():
    """Was: ``stack.weight`` and ``stack.bias`` never changed under NP."""
    model = _filter_mlp()
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    model.zero_grad()
    _loss(model, x, y).backward()
    exact = torch.cat([model.stack.weight.grad.flatten(), model.stack.bias.grad.flatten()])
    rule = NodePerturbation(sigma=1e-3)
    rule.attach(model)
    torch.manual_seed(0)
    total = torch.zeros_like(exact)
    for _ in range(300):  # unbiased to first order in sigma: the mean points along dL/dW
        model.zero_grad()
        rule.compute_gradients(model, x, y, nn.functional.cross_entropy)
        total += torch.cat([model.stack.weight.grad.flatten(), model.stack.bias.grad.flatten()])
    rule.detach()
    assert torch.nn.functional.cosine_similarity(total, exact, dim=0) > 0.6


# --- frozen layers ---------------------------------------------------------------------------
def test_decorrelation_leaves_fixed_random_gates_untouched(tmp_path):
    """Was: the frozen gating net's R was learnt, so the 'fixed' gates drifted."""
    torch.manual_seed(0)
    model = GatedMLP(6, 8, 2, 3, **variant_options("frnpf-di"))
    x = torch.randn(16, 6)
    gates = [g.clone() for g in model.gates(x)]
    decorrelate(model, lr=1e-2)
    assert all(type(layer) is nn.Linear for layer in model.feature_layers)
    assert ("feature_layers.0", "frozen: requires_grad=False, a learnt R would change what it "
            "computes") in decorrelation_summary(model).plain
    fit(model, _data(), None, CFG, tmp_path, rules=(DecorrelationRule(),))
    for before, after in zip(gates, model.gates(x), strict=True):
        assert torch.equal(before, after)


# --- rules leave the model as they found it --------------------------------------------------
def _plain_mlp() -> MLP:
    torch.manual_seed(0)
    return MLP(6, 8, 2, 3)


def test_fa_leaves_the_model_as_it_found_it_and_a_finished_run_reloads(tmp_path):
    """Was: forward stayed patched and feedback buffers stayed; re-running fit on a finished
    FA run and load_run failed with ``unexpected hidden.0.feedback``."""
    model = _plain_mlp()
    result = fit(model, _data(), _data(seed=1), CFG, tmp_path, rules=(FeedbackAlignment(),))
    assert not any("forward" in m.__dict__ or "feedback" in m._buffers for m in model.modules())
    _plain_mlp().load_state_dict(model.state_dict())  # strict: nothing extra
    again = _plain_mlp()
    assert fit(again, _data(), _data(seed=1), CFG, tmp_path,
               rules=(FeedbackAlignment(),)) == result
    torch.testing.assert_close(again.state_dict(), model.state_dict())
    rule = FeedbackAlignment(seed=5)
    signalprop.load_run(tmp_path, _plain_mlp(), rules=(rule,))
    assert set(rule.state_dict()["feedback"]) == {"hidden.0", "hidden.2", "head"}
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))  # later plain training is backprop
    twin = _plain_mlp()
    twin.load_state_dict(model.state_dict())
    model.zero_grad()
    _loss(model, x, y).backward()
    exact = torch.autograd.grad(_loss(twin, x, y), list(twin.parameters()))
    for mine, theirs in zip(model.parameters(), exact, strict=True):
        torch.testing.assert_close(mine.grad, theirs)


def test_fa_resumes_a_checkpoint_that_saved_b_with_the_model():
    """Checkpoints written before FA kept its matrices in its own state hold them as model
    keys (``hidden.0.feedback``); an attached rule takes them from there."""
    model = _plain_mlp()
    old = {**model.state_dict(), "hidden.0.feedback": torch.ones(8, 6)}
    rule = FeedbackAlignment()
    rule.attach(model)
    model.load_state_dict(old)
    torch.testing.assert_close(model.hidden[0].feedback, torch.ones(8, 6))
    rule.detach()
    assert not any(m._load_state_dict_pre_hooks for m in model.modules())


class _Poison(LearningRule):
    def after_step(self, model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            model.hidden[0].weight.fill_(float("nan"))
        return {}


def test_fa_is_detached_when_fit_raises(tmp_path):
    model = _plain_mlp()
    with pytest.raises(DivergenceError):
        fit(model, _data(), None, CFG, tmp_path, rules=(FeedbackAlignment(), _Poison()))
    assert not any("forward" in m.__dict__ or "feedback" in m._buffers for m in model.modules())


def test_load_run_loads_a_decorrelated_runs_weights_without_its_rules(tmp_path):
    """Was: refused unless the rules were passed."""
    model = decorrelate(_plain_mlp(), lr=1e-2)
    fit(model, _data(), None, CFG, tmp_path, rules=(DecorrelationRule(),))
    fresh = decorrelate(_plain_mlp())
    with pytest.warns(UserWarning, match="skipped the state of 1 learning rule"):
        info = signalprop.load_run(tmp_path, fresh)
    assert info["skipped_rule_state"] == ["decorrelation"]
    torch.testing.assert_close(fresh.state_dict(), model.state_dict())
    with pytest.raises(ConfigError, match="decorrelated: call .*decorrelate"):
        signalprop.load_run(tmp_path, _plain_mlp())


# --- decorrelate() says what it did ----------------------------------------------------------
class _MyLinear(nn.Linear):
    pass


@pytest.mark.parametrize(("layer", "kind"), [
    (nn.Conv1d(2, 2, 3), "Conv1d"), (nn.Conv3d(2, 2, 3), "Conv3d"), (_MyLinear(2, 2), "_MyLinear")])
def test_decorrelate_refuses_layers_it_cannot_wrap_by_name(layer, kind):
    """Was: silently left plain."""
    model = nn.Sequential(nn.Identity(), layer)
    with pytest.raises(ConfigError, match=rf"cannot decorrelate '1' \({kind}\).*exclude"):
        decorrelate(model)
    decorrelate(model, exclude="1")
    assert decorrelation_summary(model, exclude="1").plain == (("1", "excluded"),)


def test_decorrelation_summary_names_wrapped_and_plain_layers(capsys):
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    decorrelate(model, exclude="2", verbose=True)
    line = capsys.readouterr().err.strip()
    assert line == ("signalprop: decorrelate: 1 layer(s) decorrelated (0); 2 left plain: 1 "
                    "(normalisation); 2 (excluded)")
    table = str(decorrelation_summary(model, exclude="2"))
    assert table.splitlines()[1].split()[:3] == ["0", "yes", "DecorrelatedLinear"]
