"""Every element-wise activation signalprop names, with its derivatives, in one registry.

Each :class:`Activation` in :data:`ACTIVATIONS` holds the function ``f``, closed forms of
``f'(u)`` and ``f''(u)``, ``f'`` written in terms of the output ``p = f(u)`` where it can be
(tanh: ``1 - p^2``; what hand-written backward passes use), the peak slope ``max_u f'(u)``
(what "saturated" is measured against) and the ``nn.Module`` class to put in an
``nn.Sequential``. Look an activation up with :func:`get_activation`; an unknown name raises a
:class:`~signalprop.errors.ConfigError` that lists the choices. Callables that are not in the
registry get their derivatives from autograd in
:func:`signalprop.diagnostics.sensitivity.activation_derivatives`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError

TensorFn = Callable[[Tensor], Tensor]


class ShiftedSigmoid(nn.Module):
    """``f(U) = 1 / (1 + exp(-U)) - 0.5``: a sigmoid centred on 0, range (-0.5, 0.5), f'(0)=1/4
    (Shibata et al., arXiv 2012.13134)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x) - 0.5

    def extra_repr(self) -> str:
        return "f(x) = sigmoid(x) - 0.5"


def shifted_sigmoid(x: Tensor) -> Tensor:
    """Functional form of :class:`ShiftedSigmoid`."""
    return torch.sigmoid(x) - 0.5


@dataclass(frozen=True)
class Activation:
    """One activation ``f``: ``derivatives(u) = (f'(u), f''(u))`` in one pass,
    ``derivative_from_output(p) = f'(u)`` for ``p = f(u)`` (None where ``f`` is not invertible),
    ``peak_slope = max_u f'(u)`` and ``module``, built with no arguments, for ``nn.Sequential``.
    ``module_options`` are the attributes a module of that class must have to compute ``f``
    (``nn.GELU(approximate="tanh")`` is another function)."""

    name: str
    equation: str
    function: TensorFn
    derivative: TensorFn
    derivatives: Callable[[Tensor], tuple[Tensor, Tensor]]
    derivative_from_output: TensorFn | None
    peak_slope: float
    module: type[nn.Module]
    saturating: bool
    module_options: dict[str, Any] = field(default_factory=dict)

    def second_derivative(self, u: Tensor) -> Tensor:
        """``f''(u)``."""
        return self.derivatives(u)[1]

    def computed_by(self, module: nn.Module) -> bool:
        """Whether ``module`` computes this activation (its class, with the default options)."""
        return type(module) is self.module and all(
            getattr(module, key, None) == value for key, value in self.module_options.items())


def _identity(u: Tensor) -> Tensor:
    return u


def _tanh_derivatives(u: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh(u)
    d1 = 1 - t * t
    return d1, -2 * t * d1


def _sigmoid_derivative(u: Tensor) -> Tensor:
    sig = torch.sigmoid(u)
    return sig * (1 - sig)


def _sigmoid_derivatives(u: Tensor) -> tuple[Tensor, Tensor]:
    sig = torch.sigmoid(u)
    d1 = sig * (1 - sig)
    return d1, d1 * (1 - 2 * sig)


def _step(u: Tensor) -> Tensor:
    return (u > 0).to(u.dtype)


def _softsign_derivatives(u: Tensor) -> tuple[Tensor, Tensor]:
    a = 1 + u.abs()
    return a.pow(-2), -2 * torch.sign(u) * a.pow(-3)


def _gelu_derivatives(u: Tensor) -> tuple[Tensor, Tensor]:
    """``f = u Phi(u)``: ``f' = Phi(u) + u phi(u)``, ``f'' = phi(u) (2 - u^2)``."""
    density = torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    return torch.special.ndtr(u) + u * density, density * (2 - u * u)


def _inside_unit(x: Tensor) -> Tensor:
    return ((x > -1) & (x < 1)).to(x.dtype)


def _zero_second(first: TensorFn) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    return lambda u: (first(u), torch.zeros_like(u))


#: ``f'`` at ``u = sqrt(2)``, where ``f'' = 0``: GELU's largest slope.
GELU_PEAK_SLOPE = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(
    2 * math.pi)

ACTIVATIONS: dict[str, Activation] = {spec.name: spec for spec in (
    Activation("tanh", "f(u) = tanh(u); f' = 1 - f^2", torch.tanh,
               lambda u: _tanh_derivatives(u)[0], _tanh_derivatives, lambda p: 1.0 - p * p,
               1.0, nn.Tanh, saturating=True),
    Activation("sigmoid", "f(u) = 1 / (1 + e^-u); f' = f (1 - f)", torch.sigmoid,
               _sigmoid_derivative, _sigmoid_derivatives, lambda p: p * (1 - p), 0.25,
               nn.Sigmoid, saturating=True),
    Activation("shifted_sigmoid", "f(u) = sigmoid(u) - 1/2; f' = 1/4 - f^2", shifted_sigmoid,
               _sigmoid_derivative, _sigmoid_derivatives, lambda p: 0.25 - p * p, 0.25,
               ShiftedSigmoid, saturating=True),
    Activation("relu", "f(u) = max(u, 0); f' = 1{u > 0}", torch.relu, _step,
               _zero_second(_step), _step, 1.0, nn.ReLU, saturating=False),
    Activation("softsign", "f(u) = u / (1 + |u|); f' = (1 - |f|)^2", nn.functional.softsign,
               lambda u: (1 + u.abs()).pow(-2), _softsign_derivatives,
               lambda p: (1 - p.abs()).pow(2), 1.0, nn.Softsign, saturating=True),
    Activation("hardtanh", "f(u) = clamp(u, -1, 1); f' = 1{|u| < 1}", nn.functional.hardtanh,
               _inside_unit, _zero_second(_inside_unit), _inside_unit, 1.0, nn.Hardtanh,
               saturating=True, module_options={"min_val": -1.0, "max_val": 1.0}),
    Activation("gelu", "f(u) = u Phi(u); f' = Phi(u) + u phi(u)", nn.functional.gelu,
               lambda u: _gelu_derivatives(u)[0], _gelu_derivatives, None, GELU_PEAK_SLOPE,
               nn.GELU, saturating=False, module_options={"approximate": "none"}),
    Activation("identity", "f(u) = u; f' = 1", _identity, torch.ones_like,
               _zero_second(torch.ones_like), torch.ones_like, 1.0, nn.Identity,
               saturating=False),
)}

#: Names of the activations whose slope goes to 0 for large ``|u|``.
SATURATING = tuple(name for name, spec in ACTIVATIONS.items() if spec.saturating)


def get_activation(name: str) -> Activation:
    """The registry entry for ``name``; a ConfigError listing the choices for any other name."""
    spec = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return spec


def require_activation(owner: str, argument: str, name: str,
                       allowed: Sequence[str]) -> Activation:
    """The registry entry for ``name`` if it is one of the ``allowed`` names that ``owner``'s
    ``argument`` accepts; otherwise a ConfigError naming the argument and the choices."""
    if not isinstance(name, str) or name not in allowed:
        raise ConfigError(f"{owner} {argument} must be one of {list(allowed)}, got {name!r}")
    return get_activation(name)


def make_activation(name: str) -> nn.Module:
    """A new activation module by name (any of :data:`ACTIVATIONS`)."""
    return get_activation(name).module()


def name_of(module: nn.Module) -> str | None:
    """The registry name of the activation ``module`` computes, or None."""
    for name, spec in ACTIVATIONS.items():
        if spec.computed_by(module):
            return name
    return None
