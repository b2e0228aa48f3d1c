"""Per-neuron sensitivity ``s = f'(U) ||w||`` (Shibata et al., arXiv 2012.13134), captured by hooks.

A neuron with incoming weights ``w``, bias ``theta`` and activation ``f`` computes
``o = f(U)``, ``U = w.x + theta``; its sensitivity is the norm of the gradient of its output with
respect to its inputs, ``s = ||d o / d x|| = f'(U) ||w||`` (for increasing ``f``). ``s`` near 1
means the neuron neither shrinks nor expands small input changes, forwards or backwards. The
log of the RMS of ``s`` over the neurons of a recurrent layer approximates the largest Lyapunov
exponent of the network while that is below 0 (the paper's v2 abstract).

Supported layers:

* ``nn.Linear`` directly followed by an activation module inside a container
  (``nn.Sequential``, e.g. :class:`signalprop.nn.mlp.MLP`); ``x`` is the Linear's input, or
  for a decorrelated layer (``a = W R (x - mu) + b``) its decorrelated input ``R (x - mu)``;
* one-layer unidirectional ``nn.RNN`` (tanh or relu) and :class:`signalprop.nn.elman.ElmanRNN`
  (any activation); a neuron's ``x`` is ``[x_t, h_{t-1}]`` and ``w`` is its row of
  ``[W_ih, W_hh]``, so ``U_t = W_ih x_t + W_hh h_{t-1} + b_ih + b_hh``.

:class:`SensitivityProbe` records each layer's inputs with forward hooks (no extra backward
pass) and recomputes ``U`` at the current weights on demand; :class:`RunningSensitivity` is the
per-neuron moving average ``s_bar <- beta s_bar + (1 - beta) s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError
from signalprop.nn.activations import ACTIVATIONS, get_activation, name_of
from signalprop.nn.elman import ElmanRNN

Activation = str | Callable[[Tensor], Tensor]

#: Element-wise activation modules outside the registry (or with other than its options) that
#: may follow a Linear layer; their derivatives come from autograd.
GENERIC_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.GELU, nn.SiLU, nn.ELU, nn.Softplus, nn.LeakyReLU, nn.Mish, nn.Hardtanh, nn.CELU, nn.SELU,
)


def activation_of(module: nn.Module) -> Activation | None:
    """The registry name (:data:`signalprop.nn.activations.ACTIVATIONS`) of an activation
    module, the module itself for other element-wise activations, or None when ``module`` is
    not an activation."""
    name = name_of(module)
    if name is not None:
        return name
    if isinstance(module, GENERIC_ACTIVATIONS):
        return module
    return None


def activation_derivatives(activation: Activation, u: Tensor) -> tuple[Tensor, Tensor]:
    """``(f'(U), f''(U))`` element-wise: the closed forms of
    :data:`signalprop.nn.activations.ACTIVATIONS` for a name, autograd (two reverse passes
    through ``f``) for any other callable."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; choose from "
                              f"{sorted(ACTIVATIONS)} or pass the activation function itself")
        return get_activation(activation).derivatives(u)
    with torch.enable_grad():
        x = u.detach().requires_grad_(True)
        (d1,) = torch.autograd.grad(activation(x).sum(), x, create_graph=True)
        d2 = torch.autograd.grad(d1.sum(), x, allow_unused=True)[0] if d1.requires_grad else None
    return d1.detach(), (torch.zeros_like(u) if d2 is None else d2.detach())


def peak_slope(activation: Activation) -> float:
    """``max_U f'(U)`` (1 for tanh, 1/4 for the (shifted) sigmoid), used to call a neuron
    saturated when its mean slope falls below a fraction of this value: the registry's value
    for a name, the maximum over ``U`` in [-6, 6] (step 0.01) for any other callable."""
    if isinstance(activation, str):
        return get_activation(activation).peak_slope
    grid = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)
    return float(activation_derivatives(activation, grid)[0].max().clamp_min(1e-12))


def neuron_sensitivity(u: Tensor, weight: Tensor, activation: Activation) -> Tensor:
    """``s[..., j] = |f'(U[..., j])| * ||W[j, :]||`` for pre-activations U (..., N), W (N, M).

    The absolute value makes ``s`` the input-gradient norm also for non-monotone activations
    (GELU, SiLU); for increasing ``f`` it is the paper's ``f'(U) ||w||``."""
    slope = activation_derivatives(activation, u)[0].abs()
    return slope * torch.linalg.vector_norm(weight, dim=1)


def log_rms(s: Tensor) -> float:
    """Log-sensitivity: ``ln sqrt(mean s^2)`` over all entries (the paper's log-RMS)."""
    return 0.5 * math.log(max(float(s.detach().double().pow(2).mean()), 1e-300))


@dataclass
class SensitiveLayer:
    """A layer of neurons whose sensitivity is tracked.

    ``kind`` is "linear" (``module`` is an ``nn.Linear`` followed by ``activation``) or "rnn"
    (``module`` is a one-layer ``nn.RNN`` / :class:`ElmanRNN`).
    """

    name: str
    module: nn.Module
    activation: Activation
    kind: str

    @property
    def num_neurons(self) -> int:
        return self.module.out_features if self.kind == "linear" else self.module.hidden_size

    def weight(self) -> Tensor:
        """Each neuron's incoming weight vector as a row: (N, M)."""
        if self.kind == "linear":
            return self.module.weight
        return torch.cat([self.module.weight_ih_l0, self.module.weight_hh_l0], dim=1)

    def bias(self) -> Tensor | None:
        """The total bias ``theta`` (N,), or None."""
        if self.kind == "linear":
            return self.module.bias
        if self.module.bias_ih_l0 is None:
            return None
        return self.module.bias_ih_l0 + self.module.bias_hh_l0

    def pre_activation(self, inputs: Tensor) -> Tensor:
        """``U = X W^T + theta`` at the current weights for input rows X (K, M)."""
        return nn.functional.linear(inputs, self.weight(), self.bias())


def _rnn_activation(module: nn.Module) -> Activation:
    if isinstance(module, ElmanRNN):
        return module.nonlinearity
    if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
        raise ConfigError("sensitivity supports one-layer unidirectional nn.RNN modules only")
    return module.nonlinearity


def find_sensitive_layers(model: nn.Module) -> list[SensitiveLayer]:
    """Every ``Linear -> activation`` pair inside a container and every RNN layer of ``model``,
    in module order. The output head (a Linear not followed by an activation) is skipped."""
    layers: list[SensitiveLayer] = []
    for name, module in model.named_modules():
        if isinstance(module, ElmanRNN) or type(module) is nn.RNN:
            layers.append(SensitiveLayer(name or "rnn", module, _rnn_activation(module), "rnn"))
            continue
        children = list(module.named_children())
        for (child_name, child), (_, following) in zip(children, children[1:], strict=False):
            act = activation_of(following)
            if isinstance(child, nn.Linear) and act is not None:
                full = f"{name}.{child_name}" if name else child_name
                layers.append(SensitiveLayer(full, child, act, "linear"))
    return layers


def _rnn_inputs(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Tensor:
    """Rows ``[x_t, h_{t-1}]`` (N*T, I+H) from an RNN call's arguments and outputs."""
    x = args[0]
    if not isinstance(x, Tensor):
        raise ConfigError("sensitivity hooks do not support packed sequences")
    h0 = args[1] if len(args) > 1 else kwargs.get("hx", kwargs.get("h0"))
    out = output[0]
    if not module.batch_first:
        x, out = x.transpose(0, 1), out.transpose(0, 1)
    if x.dim() == 2:  # unbatched (T, I)
        x, out = x.unsqueeze(0), out.unsqueeze(0)
        h0 = None if h0 is None else h0.unsqueeze(1)
    first = out.new_zeros(out.shape[0], 1, out.shape[2]) if h0 is None else h0[0].unsqueeze(1)
    previous = torch.cat([first, out[:, :-1]], dim=1)
    return torch.cat([x, previous], dim=2).reshape(-1, x.shape[2] + out.shape[2])


class SensitivityProbe:
    """Captures each layer's input rows on every training-mode forward pass via forward hooks.

    ``inputs(name)`` returns the last captured rows (detached, at most ``max_rows`` evenly
    strided rows); ``sensitivities()`` returns the per-row sensitivity (K, N) of every layer
    at the current weights. ``remove()`` detaches the hooks.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[SensitiveLayer] | None = None,
        max_rows: int = 4096,
        training_only: bool = True,
    ) -> None:
        self.layers = list(find_sensitive_layers(model) if layers is None else layers)
        if not self.layers:
            raise ConfigError(
                "no sensitive layers found: the model needs Linear layers followed by an "
                "activation module (in an nn.Sequential) or one-layer nn.RNN/ElmanRNN modules"
            )
        if max_rows < 1:
            raise ConfigError(f"max_rows must be >= 1, got {max_rows!r}")
        self.max_rows, self.training_only = max_rows, training_only
        self._captured: dict[str, Tensor] = {}
        self._handles = [self._hook(layer) for layer in self.layers]

    def _keep(self, name: str, rows: Tensor) -> None:
        if rows.shape[0] > self.max_rows:
            stride = rows.shape[0] / self.max_rows
            index = (torch.arange(self.max_rows, device=rows.device) * stride).long()
            rows = rows[index]
        self._captured[name] = rows.detach()

    def _hook(self, layer: SensitiveLayer):
        def linear_hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if module.training or not self.training_only:
                x = args[0]
                if hasattr(module, "decorrelated_input"):  # U = W R (x - mu) + b
                    x = module.decorrelated_input(x)
                self._keep(layer.name, x.reshape(-1, x.shape[-1]))

        def rnn_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if module.training or not self.training_only:
                self._keep(layer.name, _rnn_inputs(module, args, kwargs, output))

        if layer.kind == "linear":
            return layer.module.register_forward_hook(linear_hook)
        return layer.module.register_forward_hook(rnn_hook, with_kwargs=True)

    def inputs(self, name: str) -> Tensor | None:
        return self._captured.get(name)

    def clear(self) -> None:
        self._captured.clear()

    @torch.no_grad()
    def sensitivities(self) -> dict[str, Tensor]:
        """Per-row sensitivities (K, N) of every layer with captured inputs."""
        found = {}
        for layer in self.layers:
            rows = self._captured.get(layer.name)
            if rows is not None:
                u = layer.pre_activation(rows)
                found[layer.name] = neuron_sensitivity(u, layer.weight(), layer.activation)
        return found

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class RunningSensitivity:
    """Per-neuron moving average ``s_bar <- beta s_bar + (1 - beta) mean_batch(s)``.

    The first observation initialises ``s_bar`` (no bias towards 0).
    """

    def __init__(self, beta: float = 0.99) -> None:
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"moving-average beta must be in [0, 1), got {beta!r}")
        self.beta = beta
        self.values: dict[str, Tensor] = {}

    @torch.no_grad()
    def update(self, name: str, s_mean: Tensor) -> Tensor:
        previous = self.values.get(name)
        if previous is None or previous.shape != s_mean.shape:
            self.values[name] = s_mean.detach().clone()
        else:
            previous.mul_(self.beta).add_(s_mean.detach().to(previous), alpha=1 - self.beta)
        return self.values[name]

    def log_rms(self) -> float:
        """Mean over layers of each layer's ``ln sqrt(mean_j s_bar_j^2)``."""
        if not self.values:
            return float("nan")
        return sum(log_rms(v) for v in self.values.values()) / len(self.values)

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "values": {k: v.clone() for k, v in self.values.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = state["beta"]
        self.values = {k: v.clone() for k, v in state["values"].items()}
