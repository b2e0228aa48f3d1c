"""Run one cell of the combination matrix (:mod:`signalprop.learning.combinations`).

:func:`run_cell` builds the family's tiny model, lets the rule convert and attach to it, and
trains it for a few steps on one batch the way ``fit`` does (the rule's ``compute_gradients``
or backprop under the precision's autocast, an Adam step, every rule's ``after_step``), then
detaches the rules. It records what a test needs to tell a cell that trains from one that
silently does part of the job:

* the loss on the batch before and after (float32, recording paused);
* ``unreached``: trainable layers (but the last) whose first-step gradient equals exact
  backprop's, for rules that replace the gradient (FA, DFA, NP): such a layer would still be
  trained by backprop;
* ``unchanged``: trainable parameters that training left as they were, and what the rule's
  local update should have changed but did not (SAL: each adjusted layer's weight;
  decorrelation: each ``R``);
* ``leftovers``: what the rules left on the model after ``detach`` (a replaced ``forward``,
  hooks, an additive-filter tap, state-dict keys a freshly built model would not have).

A rule that raises :class:`~signalprop.errors.ConfigError` while converting or attaching gives
a refusal with its message.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule
from signalprop.learning.combinations import FAMILIES, RULES
from signalprop.learning.coverage import trainable_layers
from signalprop.learning.decorrelation_rule import DecorrelationRule
from signalprop.learning.sensitivity import SensitivityAdjustment
from signalprop.nn.decorrelation import decorrelators, recording_paused
from signalprop.nn.orthogonal import AdditiveFilterStack

GRADIENT_RULES = ("FA", "DFA", "NP")


@dataclass
class CellResult:
    """What happened in one cell; ``error`` is the refusal's message (None when it trained)."""

    error: str | None = None
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    unreached: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def _loss(output: Tensor, target: Tensor) -> Tensor:
    if output.dim() == 3:
        output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
    return nn.functional.cross_entropy(output.float(), target)


def _autocast(precision: str) -> contextlib.AbstractContextManager[object]:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _batch_loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with recording_paused(model):
        return float(_loss(model(x), y))


def _gradients(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def _backprop_gradients(model: nn.Module, x: Tensor, y: Tensor, precision: str
                        ) -> dict[str, Tensor]:
    """Exact backprop's gradients at the current weights, on a copy (no state changes)."""
    twin = copy.deepcopy(model)
    with recording_paused(twin), _autocast(precision):
        loss = _loss(twin(x), y)
    loss.backward()
    return _gradients(twin)


def _unreached(model: nn.Module, rule_grads: dict[str, Tensor],
               exact: dict[str, Tensor]) -> list[str]:
    """Trainable layers but the last whose every own gradient equals backprop's."""
    names = {id(p): n for n, p in model.named_parameters()}
    found = []
    for layer, module in list(trainable_layers(model))[:-1]:
        own = [names[id(p)] for p in module.parameters(recurse=False) if p.requires_grad]
        same = [n in rule_grads and n in exact and torch.allclose(
            rule_grads[n].float(), exact[n].float(), rtol=1e-4, atol=1e-7) for n in own]
        if own and all(same):
            found.append(layer)
    return found


def _local_targets(model: nn.Module, rules: tuple[LearningRule, ...]) -> dict[str, Tensor]:
    """What the rules' ``after_step`` should change: SAL's layers' weights, every ``R``."""
    targets: dict[str, Tensor] = {}
    for rule in rules:
        if isinstance(rule, SensitivityAdjustment) and rule.probe is not None:
            targets.update({f"SAL {layer.name}": layer.module.weight if layer.kind == "linear"
                            else layer.module.weight_hh_l0 for layer in rule.probe.layers})
        if isinstance(rule, DecorrelationRule):
            targets.update({f"R {name}": dec.R for name, dec in decorrelators(model)})
    return targets


def _leftovers(model: nn.Module, fresh_keys: set[str]) -> list[str]:
    found = []
    for name, module in model.named_modules():
        label = name or type(model).__name__
        if "forward" in module.__dict__:
            found.append(f"{label}: replaced forward")
        if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._load_state_dict_pre_hooks):
            found.append(f"{label}: hooks")
        if isinstance(module, AdditiveFilterStack) and module.tap is not None:
            found.append(f"{label}: stack tap")
    extra = set(model.state_dict()) - fresh_keys
    found += [f"state_dict key {key}" for key in sorted(extra)]
    return found


def run_cell(family: str, rule: str, precision: str = "fp32", steps: int = 60,
             lr: float = 1e-2) -> CellResult:
    """Train ``FAMILIES[family]`` with ``RULES[rule]`` for ``steps`` steps (see module doc)."""
    torch.manual_seed(0)
    spec = FAMILIES[family]
    model = spec.build()
    x, y = spec.batch()
    try:
        rules = RULES[rule](model)
        torch.manual_seed(0)
        fresh = spec.build()
        RULES[rule](fresh)  # converted the same way: its keys are the plain model's
        fresh_keys = set(fresh.state_dict())
        exact = _backprop_gradients(model, x, y, precision)
        for r in rules:
            r.attach(model)
    except ConfigError as exc:
        return CellResult(error=str(exc))
    result = CellResult(loss_before=_batch_loss(model, x, y))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    targets = _local_targets(model, rules)
    changed = dict.fromkeys(targets, False)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    try:
        model.train()
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            computed = None
            with _autocast(precision):
                for r in rules:
                    computed = r.compute_gradients(model, x, y, _loss)
                    if computed is not None:
                        break
                if computed is None:
                    loss = _loss(model(x), y)
            if computed is None:
                loss.backward()
            if step == 0 and rule in GRADIENT_RULES:
                result.unreached = _unreached(model, _gradients(model), exact)
            optimizer.step()
            before = {k: v.detach().clone() for k, v in targets.items()}
            for r in rules:
                r.after_step(model)
            for key, value in targets.items():
                changed[key] = changed[key] or not torch.equal(before[key], value)
        result.loss_after = _batch_loss(model, x, y)
    finally:
        for r in rules:
            r.detach()
    params = dict(model.named_parameters())
    result.unchanged = [name for name, value in start.items() if torch.equal(value, params[name])]
    result.unchanged += [key for key, moved in changed.items() if not moved]
    result.leftovers = _leftovers(model, fresh_keys)
    return result
