"""Deep gated networks (DGN): gates from a feature network mask a value network that is linear
between them (Lakshminarayanan & Singh, arXiv 2002.03996 and 2006.10529; DLGN arXiv 2110.03403).

Value network, with gates ``G_x(l)`` in ``[0, 1]`` from the feature (gating) network::

    z(0) = x,   z(l) = (Θᵛ(l) z(l-1)) ⊙ G_x(l)  for l = 1..d-1,   ŷ = Θᵛ(d) z(d-1)

Feature network: ``qᶠ(l) = Θᶠ(l) hᶠ(l-1)`` with ``hᶠ(l) = relu(qᶠ(l))`` (DGN) or
``hᶠ(l) = qᶠ(l)`` (deep *linearly* gated network, DLGN). Gates are hard, ``1{qᶠ > 0}``, or soft,
``scale · sigmoid(β qᶠ)``. A ReLU network is the special case where the gates come from the
value network's own pre-activations (``gating="shared"``, hard gates).

:func:`gated_mlp` builds the variants of the NPF paper by name (see :data:`VARIANTS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError
from signalprop.nn.activations import ACTIVATIONS

GATE_KINDS = ("hard", "soft")
GATINGS = ("shared", "separate")
FEATURE_ACTIVATIONS = ("relu", "linear")
#: The feature network's activation functions, from :mod:`signalprop.nn.activations`.
_FEATURE_FUNCTIONS = {"relu": ACTIVATIONS["relu"].function,
                      "linear": ACTIVATIONS["identity"].function}
VALUE_INPUTS = ("x", "ones")
INITS = ("glorot", "gaussian", "bernoulli")

#: Named variants (NPF paper, arXiv 2006.10529, Table 2; DLGN arXiv 2110.03403) and their
#: constructor settings. ``flnpf`` needs :meth:`GatedNetwork.copy_gates_from` afterwards.
VARIANTS: dict[str, dict[str, Any]] = {
    "relu": {"gating": "shared", "gate": "hard"},
    "frnpf-ii": {"gating": "separate", "gate": "hard", "train_gates": False,
                 "identical_init": True},
    "frnpf-di": {"gating": "separate", "gate": "hard", "train_gates": False},
    "flnpf": {"gating": "separate", "gate": "hard", "train_gates": False},
    "dlnpf": {"gating": "separate", "gate": "soft", "beta": 4.0, "gate_scale": 1.1,
              "feature_activation": "relu"},
    "dlgn": {"gating": "separate", "gate": "soft", "beta": 4.0, "gate_scale": 1.0,
             "feature_activation": "linear"},
}
VARIANT_DESCRIPTIONS = {
    "relu": "ReLU network (gates 1{q>0} of its own pre-activations)",
    "frnpf-ii": "fixed random gates, feature net initialised identically to the value net",
    "frnpf-di": "fixed random gates, feature net initialised independently",
    "flnpf": "fixed learnt gates copied from a trained ReLU network; fresh value net",
    "dlnpf": "decoupled learning: ReLU feature net, soft gates 1.1*sigmoid(4q), both trained",
    "dlgn": "deep linearly gated network: linear feature net, soft gates sigmoid(4q)",
}


def _check_choice(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{owner} {name} must be one of {list(allowed)}, got {value!r}")


def check_positive_int(owner: str, name: str, value: Any) -> None:
    """ConfigError naming ``owner`` and ``name`` unless ``value`` is an int >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner} {name} must be a positive integer, got {value!r}")


def _check_positive_float(owner: str, name: str, value: Any) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise ConfigError(f"{owner} {name} must be a finite number > 0, got {value!r}")


class Gate(nn.Module):
    """Gate function: hard ``1{q > 0}`` (no gradient) or soft ``scale · sigmoid(β q)``.

    The soft gate tends to the hard one as ``β → ∞`` (for ``scale = 1``); the NPF code uses
    ``1.1 · sigmoid(4 q)`` for decoupled learning (arXiv 2006.10529).
    """

    def __init__(self, kind: str = "hard", beta: float = 4.0, scale: float = 1.0) -> None:
        super().__init__()
        _check_choice("Gate", "kind", kind, GATE_KINDS)
        _check_positive_float("Gate", "beta", beta)
        _check_positive_float("Gate", "scale", scale)
        self.kind, self.beta, self.scale = kind, float(beta), float(scale)

    def forward(self, q: Tensor) -> Tensor:
        if self.kind == "hard":
            return (q.detach() > 0).to(q.dtype)
        return self.scale * torch.sigmoid(self.beta * q)

    def extra_repr(self) -> str:
        if self.kind == "hard":
            return "kind=hard"
        return f"kind=soft, beta={self.beta:g}, scale={self.scale:g}"


class GatedNetwork(nn.Module):
    """A value network masked by gates from a feature network (base of GatedMLP/GatedConvNet).

    Subclasses build ``value_layers`` (linear maps: ``nn.Linear`` or ``nn.Conv2d``), the
    ``head`` and, for ``gating="separate"``, ``feature_layers`` of the same shapes, then call
    :meth:`reset_parameters`. ``pool_after`` is the index of the gated layer after which both
    paths are globally average-pooled (convolutional nets), or None.
    """

    value_layers: nn.ModuleList
    feature_layers: nn.ModuleList

    def __init__(
        self,
        *,
        gating: str = "shared",
        gate: str = "hard",
        beta: float = 4.0,
        gate_scale: float = 1.0,
        feature_activation: str = "relu",
        train_gates: bool = True,
        value_input: str = "x",
        init: str = "glorot",
        gain: float = math.sqrt(2.0),
        identical_init: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_choice(owner, "gating", gating, GATINGS)
        _check_choice(owner, "feature_activation", feature_activation, FEATURE_ACTIVATIONS)
        _check_choice(owner, "value_input", value_input, VALUE_INPUTS)
        _check_choice(owner, "init", init, INITS)
        _check_positive_float(owner, "gain", gain)
        for name, flag in (("train_gates", train_gates), ("identical_init", identical_init)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{owner} {name} must be True or False, got {flag!r}")
        if gating == "shared":
            if feature_activation != "relu":
                raise ConfigError(f"{owner}: gating='shared' uses the value network's own "
                                  "pre-activations; feature_activation must be 'relu'")
            if identical_init or not train_gates or value_input != "x":
                raise ConfigError(f"{owner}: identical_init, train_gates=False and "
                                  "value_input='ones' need gating='separate'")
        self.gate = Gate(gate, beta, gate_scale)
        self.gating, self.feature_activation = gating, feature_activation
        self.train_gates, self.value_input = train_gates, value_input
        self.init, self.gain, self.identical_init = init, float(gain), identical_init
        self.pool_after: int | None = None

    # ----------------------------------------------------------------- construction helpers
    def _init_layer(self, layer: nn.Module) -> None:
        weight = layer.weight  # type: ignore[union-attr]
        fan_in = weight[0].numel()
        if self.init == "glorot":  # Keras default: Glorot uniform weights, zero bias
            nn.init.xavier_uniform_(weight)
        elif self.init == "gaussian":
            nn.init.normal_(weight, std=self.gain / math.sqrt(fan_in))
        else:  # symmetric Bernoulli ±σ, the NPK theorem's initialisation
            with torch.no_grad():
                sign = torch.randint(0, 2, weight.shape, device=weight.device) * 2 - 1
                weight.copy_(sign.to(weight.dtype) * (self.gain / math.sqrt(fan_in)))
        if getattr(layer, "bias", None) is not None:
            nn.init.zeros_(layer.bias)  # type: ignore[union-attr]

    def reset_parameters(self) -> None:
        """Re-draw every weight (``init``); copy value weights into the feature net if II."""
        for layer in [*self.value_layers, self.head, *self.feature_layers]:
            self._init_layer(layer)
        if self.identical_init:
            with torch.no_grad():
                for f, v in zip(self.feature_layers, self.value_layers, strict=True):
                    f.load_state_dict(v.state_dict())
        self._apply_freeze()

    def _apply_freeze(self) -> None:
        for p in self.feature_layers.parameters():
            p.requires_grad_(self.train_gates)

    def value_init_stds(self) -> list[float]:
        """Standard deviation each value layer's weights are drawn with (input to output)."""
        stds = []
        for layer in [*self.value_layers, self.head]:
            w = layer.weight
            fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
            if self.init == "glorot":
                stds.append(math.sqrt(2.0 / (fan_in + fan_out)))
            else:
                stds.append(self.gain / math.sqrt(fan_in))
        return stds

    # ------------------------------------------------------------------------ accessors
    def gating_layers(self) -> nn.ModuleList:
        """The layers whose pre-activations make the gates."""
        return self.value_layers if self.gating == "shared" else self.feature_layers

    def value_parameters(self) -> dict[str, nn.Parameter]:
        """Named parameters of the value network (value layers and head)."""
        return {n: p for n, p in self.named_parameters()
                if n.startswith(("value_layers.", "head."))}

    def feature_parameters(self) -> dict[str, nn.Parameter]:
        """Named parameters of the separate feature (gating) network (empty when shared)."""
        return {n: p for n, p in self.named_parameters() if n.startswith("feature_layers.")}

    @torch.no_grad()
    def copy_gates_from(self, source: nn.Module) -> GatedNetwork:
        """Copy the gating layers of a trained network into this feature network (FLNPF).

        ``source`` is a :class:`GatedNetwork` (its gating layers are copied) or any module whose
        ``nn.Linear``/``nn.Conv2d`` layers, in registration order, are the hidden layers followed
        by an output layer (e.g. a ReLU ``nn.Sequential`` or :class:`~signalprop.nn.mlp.MLP`).
        """
        if self.gating != "separate":
            raise ConfigError("copy_gates_from needs gating='separate'")
        if isinstance(source, GatedNetwork):
            layers = list(source.gating_layers())
        else:
            layers = [m for m in source.modules() if isinstance(m, nn.Linear | nn.Conv2d)][:-1]
        if len(layers) != len(self.feature_layers):
            raise ConfigError(f"copy_gates_from: source has {len(layers)} hidden layers, this "
                              f"network has {len(self.feature_layers)}")
        for mine, theirs in zip(self.feature_layers, layers, strict=True):
            if type(mine) is not type(theirs) or mine.weight.shape != theirs.weight.shape:
                raise ConfigError(f"copy_gates_from: layer shapes differ ({mine} vs {theirs})")
            mine.weight.copy_(theirs.weight)
            if mine.bias is not None:
                if theirs.bias is None:
                    mine.bias.zero_()
                else:
                    mine.bias.copy_(theirs.bias)
        return self

    # -------------------------------------------------------------------------- forward
    def _prepare(self, x: Tensor) -> Tensor:
        return x

    def value_input_of(self, x: Tensor) -> Tensor:
        """The value network's input: ``x`` or, for ``value_input="ones"``, all ones."""
        x = self._prepare(x)
        return torch.ones_like(x) if self.value_input == "ones" else x

    def _pool(self, h: Tensor) -> Tensor:
        return h.mean(dim=(-2, -1))

    def _run(self, x: Tensor, keep_gates: bool) -> tuple[Tensor, list[Tensor]]:
        x = self._prepare(x)
        h_value = torch.ones_like(x) if self.value_input == "ones" else x
        h_feature = x
        gates: list[Tensor] = []
        for index, value_layer in enumerate(self.value_layers):
            q_value = value_layer(h_value)
            if self.gating == "shared":
                g = self.gate(q_value)
            else:
                q_feature = self.feature_layers[index](h_feature)
                g = self.gate(q_feature)
                h_feature = _FEATURE_FUNCTIONS[self.feature_activation](q_feature)
            h_value = q_value * g
            if keep_gates:
                gates.append(g)
            if index == self.pool_after:
                h_value, h_feature = self._pool(h_value), self._pool(h_feature)
        return self.head(h_value), gates

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, keep_gates=False)[0]

    def forward_with_gates(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Output and the gates of every gated layer (unflattened)."""
        return self._run(x, keep_gates=True)

    def gates(self, x: Tensor) -> list[Tensor]:
        """Gates ``G_x(l)`` of every gated layer, each flattened to ``(N, units)``."""
        return [g.flatten(1) for g in self.forward_with_gates(x)[1]]

    def extra_repr(self) -> str:
        return (f"gating={self.gating}, feature_activation={self.feature_activation}, "
                f"train_gates={self.train_gates}, value_input={self.value_input}, "
                f"init={self.init}")


class GatedMLP(GatedNetwork):
    """Fully connected deep gated network: ``depth`` gated layers of ``width``, linear head.

    ``depth`` counts gated (hidden) layers, so the paper's ``d`` is ``depth + 1``. Defaults are
    the NPF paper's FC setting (arXiv 2006.10529): Glorot-uniform weights, zero biases.
    Options are those of :class:`GatedNetwork`; :func:`gated_mlp` picks them by variant name.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        factory = {"device": device, "dtype": dtype}
        for name, value in (("in_features", in_features), ("width", width), ("depth", depth),
                            ("out_features", out_features)):
            check_positive_int("GatedMLP", name, value)
        self.in_features, self.width, self.depth = in_features, width, depth
        self.out_features, self.bias = out_features, bias
        sizes = [in_features] + [width] * depth
        self.value_layers = nn.ModuleList(nn.Linear(a, b, bias=bias, **factory)
                                          for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.feature_layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias, **factory)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ) if self.gating == "separate" else nn.ModuleList()
        self.head = nn.Linear(width, out_features, bias=bias, **factory)
        self.reset_parameters()

    def _prepare(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, width={self.width}, depth={self.depth}, "
                f"out_features={self.out_features}, bias={self.bias}, " + super().extra_repr())


def variant_options(variant: str, **overrides: Any) -> dict[str, Any]:
    """Constructor options of a named variant (:data:`VARIANTS`), updated by ``overrides``."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown gated-network variant {variant!r}; choose from "
                          f"{sorted(VARIANTS)}")
    return {**VARIANTS[variant], **overrides}


def gated_mlp(
    variant: str,
    in_features: int,
    width: int,
    depth: int,
    out_features: int,
    *,
    gates_from: nn.Module | None = None,
    **overrides: Any,
) -> GatedMLP:
    """A :class:`GatedMLP` of a named variant; ``flnpf`` copies its gates from ``gates_from``."""
    return build_variant(GatedMLP, variant, (in_features, width, depth, out_features),
                         gates_from, overrides)


def build_variant(cls: Callable[..., GatedNetwork], variant: str, args: tuple,
                  gates_from: Any, overrides: dict[str, Any]) -> Any:
    """``cls(*args)`` as the named variant; ``flnpf`` copies its gates from ``gates_from``."""
    model = cls(*args, **variant_options(variant, **overrides))
    if variant == "flnpf":
        if gates_from is None:
            raise ConfigError("variant 'flnpf' needs gates_from= (a trained ReLU network)")
        model.copy_gates_from(gates_from)
    elif gates_from is not None:
        raise ConfigError(f"gates_from is only used by variant 'flnpf', not {variant!r}")
    return model
