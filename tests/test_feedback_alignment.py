"""Feedback alignment and direct feedback alignment use their fixed random matrices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from signalprop.errors import ConfigError
from signalprop.learning.feedback_alignment import (
    DirectFeedbackAlignment,
    FeedbackAlignment,
    conv2d_with_feedback,
)
from signalprop.learning.registry import LearningConfig, build_rules, make_rule
from signalprop.nn.decorrelated_layers import DecorrelatedLinear


def _net(seed: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 6, generator=g), torch.randint(0, 4, (32,), generator=g)


def _output_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    o = out.detach().requires_grad_()
    F.cross_entropy(o, y).backward()
    return o.grad


def test_fa_sends_error_through_fixed_feedback_matrix():
    x, y = _data()
    model = _net()
    rule = FeedbackAlignment(seed=3)
    rule.attach(model)
    feedback = model[2].feedback.clone()
    assert not torch.allclose(feedback, model[2].weight)
    loss, out = rule.compute_gradients(model, x, y, F.cross_entropy)
    h = torch.tanh(model[0](x)).detach()
    e = _output_error(out, y)
    delta = (e @ feedback) * (1 - h**2)
    torch.testing.assert_close(model[0].weight.grad, delta.T @ x, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[2].weight.grad, e.T @ h, rtol=1e-5, atol=1e-6)
    # and it differs from backprop's first-layer gradient
    bp = _net()
    F.cross_entropy(bp(x), y).backward()
    assert not torch.allclose(bp[0].weight.grad, model[0].weight.grad, atol=1e-4)


def test_fa_feedback_stays_fixed_during_training():
    x, y = _data()
    model = _net()
    rule = FeedbackAlignment(seed=0)
    rule.attach(model)
    feedback = model[2].feedback.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        rule.compute_gradients(model, x, y, F.cross_entropy)
        opt.step()
    torch.testing.assert_close(model[2].feedback, feedback)
    # the matrices live in the rule's state, not the model's: a plain model loads the weights
    assert "2.feedback" not in model.state_dict()
    torch.testing.assert_close(rule.state_dict()["feedback"]["2"], feedback)
    rule.detach()
    assert "forward" not in model[2].__dict__ and "feedback" not in model[2]._buffers


def test_fa_through_decorrelated_layer_uses_exact_r():
    for fuse in ("always", "never"):
        layer = DecorrelatedLinear(5, 3, fuse=fuse, center=False)
        r = torch.eye(5) + 0.1 * torch.randn(5, 5)
        layer.decorrelator.R.copy_(r)
        FeedbackAlignment(seed=1).attach(layer)
        x = torch.randn(7, 5, requires_grad=True)
        out = layer(x)
        grad = torch.randn_like(out)
        out.backward(grad)
        torch.testing.assert_close(x.grad, grad @ layer.feedback @ r, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.weight.grad, grad.T @ (x.detach() @ r.T),
                                   rtol=1e-4, atol=1e-5)


def test_fa_conv_input_gradient_uses_feedback_kernel():
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, 3, 3, 3)
    out = conv2d_with_feedback(x, w, None, b, 1, 1)
    torch.testing.assert_close(out, F.conv2d(x, w, None, 1, 1))
    grad = torch.randn_like(out)
    out.backward(grad)
    x2 = x.detach().requires_grad_()
    F.conv2d(x2, b, None, 1, 1).backward(grad)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_dfa_hidden_error_is_random_projection_of_output_error():
    x, y = _data()
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                          nn.Linear(8, 4))
    rule = DirectFeedbackAlignment(seed=0)
    rule.attach(model)
    _, out = rule.compute_gradients(model, x, y, F.cross_entropy)
    e = _output_error(out, y)
    h1 = torch.tanh(model[0](x)).detach()
    h2 = torch.tanh(model[2](h1)).detach()
    b1, b2 = rule.feedback["2"], rule.feedback["4"]  # injected at inputs of layers 2 and 4
    delta1 = (e @ b1.T) * (1 - h1**2)
    delta2 = (e @ b2.T) * (1 - h2**2)
    torch.testing.assert_close(model[0].weight.grad, delta1.T @ x, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model[2].weight.grad, delta2.T @ h1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model[4].weight.grad, e.T @ h2, rtol=1e-4, atol=1e-6)


def test_dfa_without_derivative_injects_at_pre_activation():
    x, y = _data()
    model = _net()
    rule = DirectFeedbackAlignment(seed=0, derivative=False)
    rule.attach(model)
    _, out = rule.compute_gradients(model, x, y, F.cross_entropy)
    e = _output_error(out, y)
    torch.testing.assert_close(model[0].weight.grad, (e @ rule.feedback["0"].T).T @ x,
                               rtol=1e-4, atol=1e-6)


def test_registry_names_and_config():
    model = _net()
    assert make_rule("bp", model).compute_gradients(model, *_data(), F.cross_entropy) is None
    assert isinstance(make_rule("fa", model), FeedbackAlignment)
    assert make_rule("np", model, sigma=1e-4).sigma == 1e-4
    with pytest.raises(ConfigError, match="did you mean"):
        make_rule("faa", model)
    with pytest.raises(ConfigError):
        make_rule("fa", model, bogus=1)
    with pytest.raises(ConfigError):
        LearningConfig(rule="np", decorrelation="pca")
    rules = build_rules(LearningConfig(rule="fa", decorrelation="whiten"), model)
    assert [r.name for r in rules] == ["fa", "decorrelation"]
    assert isinstance(model[0], DecorrelatedLinear)
    assert model[0].decorrelator.rule == "whiten"


def test_fa_with_decorrelation_trains(tmp_path):
    from torch.utils.data import TensorDataset

    from signalprop.train import TrainConfig, fit

    x, y = _data()
    model = _net()
    rules = build_rules(LearningConfig(rule="fa", decorrelation="normalised", decor_lr=1e-3),
                        model)
    result = fit(model, TensorDataset(x, y), TensorDataset(x, y), TrainConfig(epochs=100,
                 batch_size=32, lr=1e-2, log_every=50), tmp_path / "r", rules=rules)
    assert result["train_loss"] < 0.8 * torch.log(torch.tensor(4.0))
    assert not torch.allclose(model[0].decorrelator.R, torch.eye(6))


def test_feedback_matrices_survive_checkpoint_resume(tmp_path):
    from torch.utils.data import TensorDataset

    from signalprop.train import TrainConfig, fit

    data = TensorDataset(*_data())
    for make in (FeedbackAlignment, DirectFeedbackAlignment):
        run = tmp_path / make.name
        first = make(seed=0)
        model = _net()
        fit(model, data, None, TrainConfig(epochs=1, batch_size=16), run, rules=(first,))
        saved = (first.state_dict()["feedback"]["2"] if make is FeedbackAlignment
                 else first.feedback["2"])
        (run / "result.json").unlink()  # as if interrupted after the first checkpoint
        second = make(seed=9)
        resumed = _net(seed=5)
        fit(resumed, data, None, TrainConfig(epochs=2, batch_size=16), run, rules=(second,))
        now = (second.state_dict()["feedback"]["2"] if make is FeedbackAlignment
               else second.feedback["2"])
        torch.testing.assert_close(now, saved)
