"""One recorded forward pass: layer outputs, activation statistics and neuron sensitivities.

Nothing in the model changes. Forward pre-hooks and hooks on every module that owns parameters
(:func:`signalprop.diagnostics.gradients.parametrised_modules`) record the order layers run and
their outputs (kept for the gradient pass). A :class:`torch.overrides.TorchFunctionMode` sees
every element-wise activation call (``torch.tanh``, ``F.relu``, ``nn.Sigmoid`` ... whether from
a module or written functionally in ``forward``) and records, for the layer it belongs to,

* the mean and std of the activation's output,
* the fraction of (unit, example) pairs with ``|f'(U)| < SATURATION_SLOPE * max f'`` (saturating
  activations only),
* the fraction of units with ``f'(U) = 0`` on the whole batch (dead),
* for an ``nn.Linear`` whose output *is* the activation's input (matched by tensor identity,
  so the pair is found wherever the two live), the per-neuron sensitivity
  ``s_j = |f'(U_j)| ||w_j||`` (Shibata et al., arXiv 2012.13134) with
  :func:`signalprop.diagnostics.sensitivity.neuron_sensitivity`.

An activation call is attributed to the layer that produced its input, else to the innermost
running layer, else to the layer that finished last. Recurrent layers whose activation runs in
a fused kernel (``nn.RNN``) get their statistics from their output ``h = f(U)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from signalprop.diagnose.recurrent import is_recurrent, sequence_of_first_example
from signalprop.diagnose.thresholds import SATURATION_SLOPE
from signalprop.diagnostics.gradients import parametrised_modules
from signalprop.diagnostics.sensitivity import (
    activation_derivatives,
    neuron_sensitivity,
    peak_slope,
)
from signalprop.nn.activations import ACTIVATIONS, SATURATING

#: Layer outputs kept per layer for the gradient pass (a layer called more often, e.g. a cell
#: in a Python loop, contributes the gradients of its first calls only).
MAX_OUTPUTS_PER_LAYER = 256

_NAMED: dict[Any, str] = {
    torch.tanh: "tanh", torch.Tensor.tanh: "tanh", torch.tanh_: "tanh", torch.Tensor.tanh_: "tanh",
    torch.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid", torch.sigmoid_: "sigmoid",
    torch.Tensor.sigmoid_: "sigmoid",
    F.relu: "relu", torch.relu: "relu", torch.Tensor.relu: "relu", torch.relu_: "relu",
    torch.Tensor.relu_: "relu", F.softsign: "softsign",
}
_GENERIC: dict[Any, str] = {
    F.gelu: "gelu", F.silu: "silu", F.elu: "elu", F.leaky_relu: "leaky_relu",
    F.softplus: "softplus", F.mish: "mish", F.selu: "selu", F.celu: "celu",
    F.hardtanh: "hardtanh", F.relu6: "relu6",
}
_PEAKS: dict[str, float] = {}


@dataclass
class ActivationStats:
    """Running statistics of one layer's activation calls."""

    activation: str
    saturating: bool
    calls: int = 0
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    saturated: int = 0
    slope_count: int = 0
    units: int = 0
    dead_units: int = 0

    def add_values(self, values: Tensor) -> None:
        v = values.detach().double()
        self.count += v.numel()
        self.total += float(v.sum())
        self.total_sq += float(v.pow(2).sum())

    def add_slopes(self, slope: Tensor, unit_dim: int, peak: float) -> None:
        self.calls += 1
        if self.saturating:
            self.saturated += int((slope < SATURATION_SLOPE * peak).sum())
            self.slope_count += slope.numel()
        if slope.dim() == 0:
            return
        per_unit = slope.movedim(unit_dim, -1).reshape(-1, slope.shape[unit_dim])
        self.units += per_unit.shape[1]
        self.dead_units += int((per_unit == 0).all(0).sum())

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        if not self.count:
            return float("nan")
        return math.sqrt(max(self.total_sq / self.count - self.mean**2, 0.0))

    @property
    def saturated_fraction(self) -> float | None:
        return self.saturated / self.slope_count if self.saturating and self.slope_count else None

    @property
    def dead_fraction(self) -> float | None:
        return self.dead_units / self.units if self.units else None


@dataclass
class LayerRecord:
    """What one forward pass saw of a module that owns parameters."""

    name: str
    module: nn.Module
    order: int
    calls: int = 0
    outputs: list[Tensor] = field(default_factory=list)
    inputs: list[Tensor] = field(default_factory=list)
    out_stats: ActivationStats = field(
        default_factory=lambda: ActivationStats("none", saturating=False))
    act: ActivationStats | None = None
    sens_sum: Tensor | None = None  # per-neuron sum of s over rows
    sens_sq: float = 0.0
    sens_rows: int = 0
    sequence: Tensor | None = None  # first example's input sequence (recurrent layers)

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    @property
    def sensitivity_mean(self) -> Tensor | None:
        return None if self.sens_sum is None else self.sens_sum / self.sens_rows

    @property
    def log_rms_sensitivity(self) -> float | None:
        if not self.sens_rows or self.sens_sum is None:
            return None
        ms = self.sens_sq / (self.sens_rows * self.sens_sum.numel())
        return 0.5 * math.log(max(ms, 1e-300))


def layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters, plus recurrent wrappers whose parameters live in a child
    they never call (e.g. :class:`~signalprop.nn.orthogonal_rnn.AdditiveFilterRNN`'s cell)."""
    found = parametrised_modules(model)
    owners = {id(m) for _, m in found}
    for name, module in model.named_modules():
        if is_recurrent(module) and id(module) not in owners:
            found.append((name or type(module).__name__, module))
    return found


def layer_parameters(module: nn.Module) -> list[nn.Parameter]:
    """A layer's trainable parameters (all of them for a recurrent wrapper)."""
    own = list(module.parameters(recurse=False))
    if not own and is_recurrent(module):
        own = list(module.parameters())
    return [p for p in own if p.requires_grad]


def first_tensor(value: Any) -> Tensor | None:
    """The first floating-point tensor in ``value`` (a tensor or nested tuples and lists)."""
    if isinstance(value, Tensor):
        return value if value.is_floating_point() else None
    if isinstance(value, tuple | list):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def activation_peak(name: str, fn: Callable[[Tensor], Tensor] | str) -> float:
    if name not in _PEAKS:
        _PEAKS[name] = peak_slope(fn)
    return _PEAKS[name]


class _ActivationMode(TorchFunctionMode):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = _NAMED.get(func) or _GENERIC.get(func)
        pending = None
        if name is not None and args and isinstance(args[0], Tensor):
            pending = self.recorder.before_activation(func, name, args, kwargs)
        out = func(*args, **kwargs)
        if pending is not None and isinstance(out, Tensor):
            pending.add_values(out)
        return out


class Recorder:
    """Hooks and the activation mode for one forward pass; use as a context manager."""

    def __init__(self, model: nn.Module, sensitivity_rows: int = 4096) -> None:
        self.model = model
        self.sensitivity_rows = sensitivity_rows
        self.layers: dict[str, LayerRecord] = {}
        self._modules = layer_modules(model)
        self._stack: list[LayerRecord] = []
        self._last: LayerRecord | None = None
        self._produced: dict[int, tuple[Tensor, LayerRecord]] = {}
        self._handles: list[Any] = []
        self._mode = _ActivationMode(self)

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        for name, module in self._modules:
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name, module)))
            self._handles.append(module.register_forward_hook(self._post_hook(name)))
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)
        self.remove_hooks()

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._produced.clear()

    def ordered(self) -> list[LayerRecord]:
        return sorted(self.layers.values(), key=lambda r: r.order)

    # -- hooks -----------------------------------------------------------------------------
    def _pre_hook(self, name: str, module: nn.Module):
        def hook(mod: nn.Module, args: tuple) -> None:
            record = self.layers.get(name)
            if record is None:
                record = self.layers[name] = LayerRecord(name, module, len(self.layers))
            record.calls += 1
            if is_recurrent(mod) and record.sequence is None and args:
                if isinstance(args[0], Tensor) and args[0].dim() in (2, 3):
                    record.sequence = sequence_of_first_example(mod, args[0]).detach()
            self._stack.append(record)

        return hook

    def _post_hook(self, name: str):
        def hook(mod: nn.Module, args: tuple, output: Any) -> None:
            record = self.layers[name]
            if self._stack and self._stack[-1] is record:
                self._stack.pop()
            out = first_tensor(output)
            self._last = record
            if out is None:
                return
            with torch.no_grad():
                record.out_stats.add_values(out)
                if is_recurrent(mod) and record.act is None:
                    self._recurrent_output_stats(mod, record, out)
            if len(record.outputs) < MAX_OUTPUTS_PER_LAYER:
                record.outputs.append(out)
                inp = first_tensor(args)
                if inp is not None:
                    record.inputs.append(inp)
            self._produced[id(out)] = (out, record)

        return hook

    def _recurrent_output_stats(self, mod: nn.Module, record: LayerRecord, h: Tensor) -> None:
        """Slopes from ``h = f(U)`` for RNNs whose activation is not visible (fused kernel)."""
        nonlinearity = getattr(mod, "nonlinearity", None)
        spec = ACTIVATIONS.get(nonlinearity) if isinstance(nonlinearity, str) else None
        if spec is None or spec.derivative_from_output is None:
            return
        slope = spec.derivative_from_output(h.detach())
        stats = ActivationStats(nonlinearity, saturating=spec.saturating)
        stats.add_values(h)
        stats.add_slopes(slope, -1, 1.0)
        record.act = stats
        record.act.calls = 0  # derived from the output, not from calls

    # -- activation calls ------------------------------------------------------------------
    def _owner(self, u: Tensor) -> tuple[LayerRecord | None, bool]:
        hit = self._produced.get(id(u))
        if hit is not None and hit[0] is u:
            return hit[1], True
        if self._stack:
            return self._stack[-1], False
        return self._last, False

    @torch.no_grad()
    def before_activation(self, func: Any, name: str, args: tuple,
                          kwargs: dict) -> ActivationStats | None:
        u = args[0]
        if not u.is_floating_point() or u.numel() == 0:
            return None
        record, paired = self._owner(u)
        if record is None:
            return None
        if name in _GENERIC.values():
            extra = {k: v for k, v in kwargs.items() if k != "inplace"}
            rest = args[1:]
            fn: Any = lambda t: func(t, *rest, **extra)  # noqa: E731
            key = f"{name}{rest}{sorted(extra.items())}"
        else:
            fn, key = name, name
        if record.act is None or record.act.activation != name:
            if record.act is not None and record.act.calls:
                return None  # a second, different activation in the same layer: keep the first
            record.act = ActivationStats(name, saturating=name in SATURATING)
        slope = activation_derivatives(fn, u.detach())[0].abs()
        module = record.module
        unit_dim = 1 if isinstance(module, nn.modules.conv._ConvNd) and u.dim() > 2 else -1
        record.act.add_slopes(slope, unit_dim, activation_peak(key, fn))
        if paired and isinstance(module, nn.Linear) and u.shape[-1] == module.out_features:
            self._add_sensitivity(record, u.detach(), fn)
        return record.act

    def _add_sensitivity(self, record: LayerRecord, u: Tensor, fn: Any) -> None:
        rows = u.reshape(-1, u.shape[-1])
        room = self.sensitivity_rows - record.sens_rows
        if room <= 0:
            return
        rows = rows[:room]
        s = neuron_sensitivity(rows, record.module.weight.detach(), fn).double()
        total = s.sum(0)
        record.sens_sum = total if record.sens_sum is None else record.sens_sum + total
        record.sens_sq += float(s.pow(2).sum())
        record.sens_rows += rows.shape[0]
