"""``fit`` calls every rule's ``detach()`` when training ends, on success and on an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signalprop.errors import DivergenceError
from signalprop.learning.base import LearningRule
from signalprop.learning.feedback_alignment import DirectFeedbackAlignment
from signalprop.train import TrainConfig, fit, seed_everything

CFG = TrainConfig(epochs=1, batch_size=32, lr=1e-2, log_every=100)


def _model() -> nn.Module:
    seed_everything(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


class Counting(LearningRule):
    def __init__(self, poison: bool = False) -> None:
        self.detached = 0
        self.poison = poison

    def detach(self) -> None:
        self.detached += 1

    def after_step(self, model: nn.Module) -> dict[str, float]:
        if self.poison:
            with torch.no_grad():
                model[0].weight.fill_(float("nan"))
        return {}


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_fit_detaches_rules_after_training(tmp_path, blobs):
    train, test = blobs
    rule = Counting()
    dfa = DirectFeedbackAlignment()
    model = _model()
    fit(model, train, test, CFG, tmp_path, seed=0, rules=(dfa, rule))
    assert rule.detached == 1
    assert _hook_count(model) == 0  # DFA's injection hooks are gone


def test_fit_detaches_rules_when_training_fails(tmp_path, blobs):
    train, test = blobs
    rule = Counting(poison=True)
    with pytest.raises(DivergenceError):
        fit(_model(), train, test, CFG, tmp_path, seed=0, rules=(rule,))
    assert rule.detached == 1


def test_fit_detaches_rules_when_setup_fails_after_attach(tmp_path, blobs):
    """An error between attaching the rules and the first step (here: nothing to optimise)
    still detaches them."""
    train, test = blobs
    rule, dfa, model = Counting(), DirectFeedbackAlignment(), _model()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="empty parameter list"):
        fit(model, train, test, CFG, tmp_path, seed=0, rules=(dfa, rule))
    assert rule.detached == 1
    assert _hook_count(model) == 0


def test_detach_is_safe_before_attach_and_twice():
    for rule in (LearningRule(), DirectFeedbackAlignment()):
        rule.detach()
        rule.detach()
