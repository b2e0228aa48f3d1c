"""Sensitivity adjustment learning (SAL; Shibata, Ejima, Tokumaru & Matsuki, arXiv 2012.13134).

Each hidden neuron ``o = f(U)``, ``U = w.x + theta`` has sensitivity ``s = f'(U) ||w||``. SAL
raises ``s`` by gradient ascent, only for neurons whose moving average ``s_bar`` is below the
target 1 (the one-sided gate):

    dw     = eta * [ f'(U) w / ||w||  +  ||w|| f''(U) x ]       (= eta * ds/dw)
    dtheta = eta * ||w|| f''(U)                                   (= eta * ds/dtheta)

averaged over the rows (samples, time steps) of the last training batch. The first term grows
``||w||``; the second pulls ``U`` towards the steepest part of ``f``. It runs after every
optimiser step of backprop/BPTT (:class:`SensitivityAdjustment`, a
:class:`~signalprop.learning.base.LearningRule`), reusing the inputs that forward hooks
captured: no extra backward pass.

**Saturation guard.** A saturated neuron (mean slope ``f'(U)`` below ``saturation_threshold``
times the activation's peak slope) has ``ds/dw ~ 0`` (both terms carry ``f'`` or ``f''``), so
plain SAL can never revive it. With ``saturation_guard=True`` such a gated neuron instead
ascends ``ln f'(U)``: ``dw = eta (f''/f')(U) x``, ``dtheta = eta (f''/f')(U)``, which stays
finite in saturation (``-2 tanh(U)`` for tanh) and moves ``U`` back towards the steep region
without growing ``||w||`` (the ``w/||w||^2`` term of ``d ln s/dw`` would deepen saturation).
Once the slope recovers, the neuron returns to the plain SAL step.

The guard is this library's extension, not the paper's; ``saturation_guard=False`` gives the
paper's rule. Constants the brief could not confirm from the paper are options: ``lr`` (eta),
``beta`` (moving average of the gate; default 0, the current batch, because a slow average lags
and keeps pushing neurons past the target), ``target``, ``objective`` ("s" as transcribed, or
"log_s"), ``gate`` ("below_target" or "none").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.config import one_of, require_number
from signalprop.diagnostics.sensitivity import (
    RunningSensitivity,
    SensitiveLayer,
    SensitivityProbe,
    activation_derivatives,
    find_sensitive_layers,
    peak_slope,
)
from signalprop.errors import ConfigError, DivergenceError
from signalprop.learning.base import LearningRule
from signalprop.learning.coverage import refuse_unreached, why_unreached

OBJECTIVES = ("s", "log_s")
GATES = ("below_target", "none")


@dataclass
class SALStep:
    """The SAL update of one layer: weight and bias changes and per-neuron diagnostics."""

    d_weight: Tensor  # (N, M)
    d_bias: Tensor  # (N,)
    s_mean: Tensor  # (N,) batch-mean sensitivity at the current weights
    gated: Tensor  # (N,) bool: neuron adjusted this step
    saturated: Tensor  # (N,) bool: mean slope below the saturation threshold


@torch.no_grad()
def sal_update(
    weight: Tensor,
    bias: Tensor | None,
    inputs: Tensor,
    activation: Any,
    lr: float,
    s_bar: Tensor | Callable[[Tensor], Tensor] | None = None,
    *,
    target: float = 1.0,
    objective: str = "s",
    gate: str = "below_target",
    saturation_threshold: float = 0.05,
    saturation_guard: bool = True,
    peak: float | None = None,
) -> SALStep:
    """SAL step for neurons with weight rows ``weight`` (N, M) and input rows ``inputs`` (K, M).

    ``s_bar`` (N,) is the averaged sensitivity used by the gate: a tensor, a function that
    maps this batch's mean sensitivity to it (a moving average), or None for the batch mean.
    Returns the changes to add; nothing is modified. Equations in the module docstring.
    """
    one_of("objective", objective, OBJECTIVES)
    one_of("gate", gate, GATES)
    if inputs.dtype != weight.dtype:  # rows captured under autocast (bfloat16)
        inputs = inputs.to(weight.dtype)
    u = nn.functional.linear(inputs, weight, bias)
    d1, d2 = activation_derivatives(activation, u)
    sign = torch.where(d1 < 0, -1.0, 1.0).to(d1)  # s uses |f'|: d|f'|/dU = sign(f') f''
    d1, d2 = d1 * sign, d2 * sign
    norm = torch.linalg.vector_norm(weight, dim=1).clamp_min(1e-12)
    rows = inputs.shape[0]
    slope_mean = d1.mean(0)
    s_mean = slope_mean * norm
    level = s_bar(s_mean) if callable(s_bar) else (s_mean if s_bar is None else s_bar)
    gated = level < target if gate == "below_target" else torch.ones_like(s_mean, dtype=torch.bool)
    peak = peak_slope(activation) if peak is None else peak
    saturated = slope_mean < saturation_threshold * peak
    guard = saturated & gated if saturation_guard else torch.zeros_like(saturated)

    if objective == "log_s" or bool(guard.any()):
        # d ln f'(U) / dw = (f''/f') x: finite in saturation (-2 tanh(U) x for tanh).
        ratio = d2 / d1.clamp_min(1e-12)
        slope_grad_w = (ratio.T @ inputs) / rows
        slope_grad_b = ratio.mean(0)
    if objective == "log_s":  # d ln s / dw = w/||w||^2 + d ln f'(U) / dw
        step_w = weight / norm[:, None] ** 2 + slope_grad_w
        step_b = slope_grad_b
    else:  # ds/dw averaged over rows
        step_w = (slope_mean[:, None] * weight / norm[:, None]
                  + norm[:, None] * (d2.T @ inputs) / rows)
        step_b = norm * d2.mean(0)
    if bool(guard.any()):
        step_w = torch.where(guard[:, None], slope_grad_w, step_w)
        step_b = torch.where(guard, slope_grad_b, step_b)
    mask = gated.to(weight.dtype)
    return SALStep(lr * mask[:, None] * step_w, lr * mask * step_b, s_mean, gated, saturated)


def _why_not_sensitive(module: nn.Module) -> str:
    """Why SAL has no step for ``module`` (for the refusal)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "a convolution, while SAL's neurons are dense units o = f(w.x + theta)"
    if isinstance(module, nn.Linear):
        return ("not followed by an activation module in its container, so SAL does not know "
                "its neurons' f")
    return why_unreached(module)


class SensitivityAdjustment(LearningRule):
    """SAL alongside backprop/BPTT: after each optimiser step, a gated ascent step on ``s``.

    Usable on any model with ``Linear -> activation`` pairs (inside containers; for a
    decorrelated layer the neuron's input is ``z = R (x - mu)`` and ``U = W z + b``, its true
    pre-activation) or one-layer ``nn.RNN``/``ElmanRNN`` layers, whose other layers with
    trainable weights are only the readout (any other is refused by name): pass it to
    ``fit(..., rules=(rule,))``, or on your own loop call ``rule.attach(model)`` once and
    ``rule.after_step(model)`` after each ``optimizer.step()`` (the forward pass of that step
    supplies the inputs).

    Metrics per step: ``sal_mean_s`` (mean batch sensitivity over all neurons),
    ``sal_log_rms_s`` (mean over layers of ``ln RMS_j s_bar_j``), ``sal_gated_frac`` and
    ``sal_saturated_frac`` (fractions of neurons adjusted / saturated).
    """

    name = "sal"
    ddp_safe = False  # each rank's update comes from its own shard's inputs

    def __init__(
        self,
        lr: float = 0.01,
        beta: float = 0.0,
        target: float = 1.0,
        objective: str = "s",
        gate: str = "below_target",
        saturation_threshold: float = 0.05,
        saturation_guard: bool = True,
        max_rows: int = 4096,
        layers: Iterable[SensitiveLayer] | None = None,
    ) -> None:
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr >= 0):
            raise ConfigError(f"SAL lr must be a finite number >= 0, got {lr!r}")
        require_number("SensitivityAdjustment", "beta", beta, low=0.0, high=1.0)
        require_number("SensitivityAdjustment", "target", target, low=0.0, open_low=True)
        if not (isinstance(target, int | float) and target > 0):
            raise ConfigError(f"SAL target must be > 0, got {target!r}")
        if not 0.0 <= saturation_threshold < 1.0:
            raise ConfigError(
                f"SAL saturation_threshold must be in [0, 1), got {saturation_threshold!r}"
            )
        one_of("SAL objective", objective, OBJECTIVES)
        one_of("SAL gate", gate, GATES)
        self.lr, self.target, self.objective, self.gate = float(lr), float(target), objective, gate
        self.saturation_threshold, self.saturation_guard = saturation_threshold, saturation_guard
        self.max_rows = max_rows
        self.average = RunningSensitivity(beta)
        self._layers = None if layers is None else list(layers)
        self.probe: SensitivityProbe | None = None
        self._peaks: dict[str, float] = {}

    def attach(self, model: nn.Module) -> None:
        """Hook the layers SAL adjusts; any other layer with trainable weights except the last
        (the readout) is refused by name, since SAL would silently skip it."""
        if self.probe is not None:
            self.probe.remove()
            self.probe = None
        layers = find_sensitive_layers(model) if self._layers is None else self._layers
        refuse_unreached(
            "SAL", model, {id(layer.module) for layer in layers}, exempt_last=True,
            consequence="would get no sensitivity adjustment", why=_why_not_sensitive,
            hint="SAL adjusts Linear layers followed by an activation module and one-layer "
                 "nn.RNN/ElmanRNN layers; pass layers= to choose some explicitly")
        self.probe = SensitivityProbe(model, layers, max_rows=self.max_rows)
        self._peaks = {layer.name: peak_slope(layer.activation) for layer in self.probe.layers}

    def detach(self) -> None:
        """Remove the forward hooks."""
        if self.probe is not None:
            self.probe.remove()
            self.probe = None

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> dict[str, float]:
        if self.probe is None:
            raise ConfigError("SensitivityAdjustment.after_step called before attach(model)")
        sums, neurons = [], 0
        for layer in self.probe.layers:
            rows = self.probe.inputs(layer.name)
            if rows is None:
                continue
            step = sal_update(
                layer.weight(), layer.bias(), rows, layer.activation, self.lr,
                lambda s, name=layer.name: self.average.update(name, s),
                target=self.target, objective=self.objective, gate=self.gate,
                saturation_threshold=self.saturation_threshold,
                saturation_guard=self.saturation_guard, peak=self._peaks[layer.name],
            )
            self._apply(layer, rows, step)
            sums.append(torch.stack([step.s_mean.sum(), step.gated.sum().to(step.s_mean),
                                     step.saturated.sum().to(step.s_mean)]).double())
            neurons += step.s_mean.numel()
        self.probe.clear()
        if not neurons:
            return {}
        total_s, gated, saturated = (torch.stack(sums).sum(0) / neurons).tolist()
        return {
            "sal_mean_s": total_s, "sal_log_rms_s": self.average.log_rms(),
            "sal_gated_frac": gated, "sal_saturated_frac": saturated,
        }

    @staticmethod
    def _apply(layer: SensitiveLayer, rows: Tensor, step: SALStep) -> None:
        finite = torch.stack([torch.isfinite(step.s_mean).all(),
                              torch.isfinite(step.d_weight).all(),
                              torch.isfinite(step.d_bias).all()])
        if not bool(finite.all()):
            if not bool(torch.isfinite(rows).all()):
                raise DivergenceError(f"SAL: inputs of layer {layer.name} contain NaN/Inf")
            what = "sensitivity" if not bool(finite[0]) else "update"
            raise DivergenceError(
                f"SAL: {what} of layer {layer.name} is NaN/Inf (weight norm "
                f"{float(torch.linalg.vector_norm(layer.weight())):.3g}); lower the SAL lr"
            )
        module = layer.module
        if layer.kind == "linear":
            targets = [(module.weight, step.d_weight)]
            if module.bias is not None:
                targets.append((module.bias, step.d_bias))
        else:
            n_in = module.weight_ih_l0.shape[1]
            targets = [(module.weight_ih_l0, step.d_weight[:, :n_in]),
                       (module.weight_hh_l0, step.d_weight[:, n_in:])]
            if module.bias_ih_l0 is not None:  # ds/db_ih = ds/db_hh = ds/dtheta
                targets += [(module.bias_ih_l0, step.d_bias), (module.bias_hh_l0, step.d_bias)]
        for param, delta in targets:
            param.add_(delta.to(param))
        if not bool(torch.stack([torch.isfinite(p).all() for p, _ in targets]).all()):
            raise DivergenceError(
                f"SAL drove the weights of layer {layer.name} to NaN/Inf; lower the SAL lr"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "average" in state:
            self.average.load_state_dict(state["average"])

    def __repr__(self) -> str:
        return (f"SensitivityAdjustment(lr={self.lr}, beta={self.average.beta}, "
                f"target={self.target}, objective={self.objective!r}, gate={self.gate!r}, "
                f"saturation_guard={self.saturation_guard})")
