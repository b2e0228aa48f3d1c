"""Learning in target space (Fairbank, Samothrakis & Citi, JMLR 2022, arXiv 2006.01578).

The trainable parameters are not weights but **targets** ``T_l`` for every layer's
pre-activation sums on a fixed *target minibatch* ``X_bar`` (the paper's realisation batch).
The weights are recomputed from the targets on every forward pass, layer by layer, by ridge
least squares (eq. 3)::

    [b_l; W_l] = argmin ||[1, A_{l-1}] [b; W] - T_l||^2 + lambda ||[b; W]||^2

where ``A_{l-1}`` is the previous layer's activation on ``X_bar``. In *sequential cascade
untangling* (SCU, Algorithm 3, the default) ``A_{l-1}`` is realised with the weights just
solved for the earlier layers; in *optimistic cascade untangling* (OCU) it is ``f(T_{l-1})``.
Gradients with respect to the targets flow through the solves by autograd, so any torch
optimiser trains the targets. Targets start from a truncated normal and are then *projected*
onto the realisable sums (section 3.4). Export gives an ordinary weight-space module; import
fits targets to one (its sums on ``X_bar``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from signalprop.errors import ConfigError
from signalprop.nn.activations import make_activation
from signalprop.nn.least_squares import ridge_solve, with_bias_column

Weights = list[tuple[Tensor, Tensor]]
MODES = ("scu", "ocu")


def target_minibatch(inputs: Tensor, size: int, steps: int | None = None) -> Tensor:
    """The paper's choice of ``X_bar`` (section 3.1): the first ``size`` training inputs.

    For sequences, ``steps`` keeps only the first ``steps`` time steps (the IMDB realisation
    sequences were shorter than the training ones).
    """
    if size < 1 or size > inputs.shape[0]:
        raise ConfigError(f"target minibatch size must be in [1, {inputs.shape[0]}], got {size}")
    chosen = inputs[:size]
    if steps is not None:
        if inputs.dim() < 3 or not 1 <= steps <= inputs.shape[1]:
            raise ConfigError(f"steps={steps} needs (N, T, F) sequences with T >= steps")
        chosen = chosen[:, :steps]
    return chosen.detach().clone()


def solve_affine(
    inputs: Tensor, targets: Tensor, ridge: float, *, regularise_bias: bool = True,
    layer: str = "layer",
) -> tuple[Tensor, Tensor]:
    """Weights ``W`` (k, d) and bias ``b`` (k,) with ``inputs @ W.T + b`` closest to ``targets``.

    With ``regularise_bias`` (the paper's code) the ones column is part of the ridge problem;
    without it, inputs and targets are centred first so the bias is the unpenalised intercept.
    """
    if regularise_bias:
        solution = ridge_solve(with_bias_column(inputs), targets, ridge, layer=layer)
        return solution[1:].T, solution[0]
    mean_in, mean_t = inputs.mean(0), targets.mean(0)
    weight = ridge_solve(inputs - mean_in, targets - mean_t, ridge, layer=layer).T
    return weight, mean_t - mean_in @ weight.T


def _float_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


class TargetLayer(nn.Module):
    """A layer parameterised by targets for its pre-activation sums on the target minibatch.

    ``targets`` has one row per design row (per example for dense layers, per output position
    per example for convolutions) and one column per output unit/channel. Its shape is fixed
    the first time :meth:`init_targets` sees the layer's input on ``X_bar``.
    """

    out_features: int

    def __init__(self, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.targets = nn.Parameter(torch.empty(0, device=device, dtype=dtype))
        self.label = type(self).__name__

    def design(self, a_bar: Tensor) -> Tensor:
        """Rows of the least-squares problem, (rows, fan_in), from the input on ``X_bar``."""
        raise NotImplementedError

    def apply(self, inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """Pre-activation sums of ``inputs`` with the given weights."""
        raise NotImplementedError

    def to_matrix(self, sums: Tensor) -> Tensor:
        """Realised sums on ``X_bar`` in the layout of ``targets``."""
        raise NotImplementedError

    def to_stream(self, matrix: Tensor, a_bar: Tensor) -> Tensor:
        """Inverse of :meth:`to_matrix` (the layout the next layer takes)."""
        raise NotImplementedError

    def weight_shape(self, fan_in: int) -> tuple[int, ...]:
        return (self.out_features, fan_in)

    def init_targets(self, a_bar: Tensor, std: float) -> None:
        """Create ``targets`` for the rows ``a_bar`` gives: truncated normal, std ``std``."""
        rows = self.design(a_bar).shape[0]
        values = torch.empty(rows, self.out_features, dtype=a_bar.dtype, device=a_bar.device)
        nn.init.trunc_normal_(values, std=std, a=-2 * std, b=2 * std)
        if self.targets.shape == values.shape:
            with torch.no_grad():
                self.targets.copy_(values)
        else:
            self.targets = nn.Parameter(values)

    def solve(self, a_bar: Tensor, ridge: float, regularise_bias: bool) -> tuple[Tensor, Tensor]:
        """Weights (torch layout) and bias that best meet ``targets`` from input ``a_bar``."""
        design = self.design(a_bar)
        if design.shape[0] != self.targets.shape[0]:
            raise ConfigError(
                f"{self.label}: target minibatch gives {design.shape[0]} rows but targets have "
                f"{self.targets.shape[0]}; the target minibatch shape must not change"
            )
        weight, bias = solve_affine(design, self.targets, ridge,
                                    regularise_bias=regularise_bias, layer=self.label)
        return weight.reshape(self.weight_shape(design.shape[1])), bias


class TargetLinear(TargetLayer):
    """Dense layer in target space: targets (n_bar, out_features), ``z = a W^T + b``."""

    def __init__(self, in_features: int, out_features: int,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(device, dtype)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TargetLinear {name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = in_features, out_features

    def design(self, a_bar: Tensor) -> Tensor:
        return a_bar.flatten(1)

    def apply(self, inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return F.linear(inputs, weight, bias)

    def to_matrix(self, sums: Tensor) -> Tensor:
        return sums

    def to_stream(self, matrix: Tensor, a_bar: Tensor) -> Tensor:
        return matrix

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class TargetConv2d(TargetLayer):
    """2-D convolution in target space: one target row per output position per image.

    The design rows are the im2col patches of ``X_bar`` (``F.unfold``), so the solve has
    ``C_in * kh * kw + 1`` unknowns per output channel.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(device, dtype)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TargetConv2d {name} must be a positive integer, got {value!r}")
        pair = nn.modules.utils._pair
        self.in_channels, self.out_features = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (
            pair(kernel_size), pair(stride), pair(padding))
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ConfigError("TargetConv2d kernel_size/stride must be >= 1 and padding >= 0")

    def design(self, a_bar: Tensor) -> Tensor:
        patches = F.unfold(a_bar, self.kernel_size, padding=self.padding, stride=self.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def weight_shape(self, fan_in: int) -> tuple[int, ...]:
        return (self.out_features, self.in_channels, *self.kernel_size)

    def apply(self, inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return F.conv2d(inputs, weight, bias, stride=self.stride, padding=self.padding)

    def to_matrix(self, sums: Tensor) -> Tensor:
        return sums.permute(0, 2, 3, 1).reshape(-1, sums.shape[1])

    def _out_size(self, a_bar: Tensor) -> tuple[int, int]:
        size = []
        for i in range(2):
            extent = a_bar.shape[2 + i] + 2 * self.padding[i] - self.kernel_size[i]
            size.append(extent // self.stride[i] + 1)
        return size[0], size[1]

    def to_stream(self, matrix: Tensor, a_bar: Tensor) -> Tensor:
        h, w = self._out_size(a_bar)
        return matrix.reshape(a_bar.shape[0], h, w, -1).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_features}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class TargetSpaceModule(nn.Module):
    """Shared machinery: the target minibatch buffer, weight caching, projection, export.

    Subclasses implement :meth:`solve_weights` (walk ``X_bar`` and solve every layer) and
    :meth:`apply_weights` (the ordinary forward pass with those weights).
    """

    def __init__(
        self, x_bar: Tensor, *, ridge: float, mode: str, regularise_bias: bool,
        init_std: float, project: bool, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(x_bar, Tensor) or x_bar.dim() < 2 or x_bar.shape[0] < 1:
            raise ConfigError("x_bar must be a tensor of at least one input, (n_bar, ...)")
        if not (isinstance(ridge, int | float) and math.isfinite(ridge) and ridge >= 0):
            raise ConfigError(f"ridge must be a finite number >= 0, got {ridge!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if not (isinstance(init_std, int | float) and init_std > 0):
            raise ConfigError(f"init_std must be > 0, got {init_std!r}")
        # x_bar moves to ``device``/``dtype`` when given (a non-floating one becomes the
        # default float dtype); the targets and weights follow it
        x_bar = x_bar.detach().to(device=device if device is not None else x_bar.device,
                                  dtype=dtype or _float_dtype(x_bar))
        self.register_buffer("x_bar", x_bar.clone())
        self.ridge, self.mode = float(ridge), mode
        self.regularise_bias, self.project = regularise_bias, project
        self.init_std = float(init_std)
        self._cache: tuple[tuple, Weights] | None = None

    # --- subclass interface -------------------------------------------------------------
    def target_layers(self) -> list[TargetLayer]:
        return [m for m in self.modules() if isinstance(m, TargetLayer)]

    def solve_weights(
        self, *, realised: list[Tensor] | None = None, init_std: float | None = None
    ) -> Weights:
        """Solve every layer's weights from its targets; optionally record realised sums."""
        raise NotImplementedError

    def apply_weights(self, x: Tensor, weights: Weights) -> Tensor:
        raise NotImplementedError

    def export(self, weights: Weights) -> nn.Module:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------
    def solve_layer(self, layer: TargetLayer, a_bar: Tensor, weights: Weights, *, more: bool,
                    realised: list[Tensor] | None, init_std: float | None) -> Tensor | None:
        """One step of :meth:`solve_weights`: solve ``layer`` from its targets on its inputs
        ``a_bar`` (drawing the targets first when ``init_std`` is given) and append the weights
        to ``weights``. Returns the realised sums when they are needed (to record in
        ``realised``, or to feed the next layer under SCU while ``more`` layers follow), else
        None."""
        if init_std is not None:
            layer.init_targets(a_bar, init_std)
        weight, bias = layer.solve(a_bar, self.ridge, self.regularise_bias)
        weights.append((weight, bias))
        if realised is None and not (more and self.mode == "scu"):
            return None
        sums = layer.apply(a_bar, weight, bias)
        if realised is not None:
            realised.append(layer.to_matrix(sums))
        return sums

    def _name_layers(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, TargetLayer):
                module.label = f"{type(self).__name__}.{name} ({type(module).__name__})"

    def reset_parameters(self) -> None:
        """Truncated-normal targets, then (if ``project``) projection onto realisable sums."""
        self._cache = None
        with torch.no_grad():
            self.solve_weights(init_std=self.init_std)
        if self.project:
            self.project_targets()

    @torch.no_grad()
    def project_targets(self) -> None:
        """Section 3.4: solve the weights, then set each target to its realised sums."""
        realised: list[Tensor] = []
        self.solve_weights(realised=realised)
        for layer, sums in zip(self.target_layers(), realised, strict=True):
            layer.targets.copy_(sums)
        self._cache = None

    def current_weights(self) -> Weights:
        """Weights solved from the current targets; cached while gradients are off."""
        if torch.is_grad_enabled():
            self._cache = None
            return self.solve_weights()
        key = (self.ridge, self.mode, self.regularise_bias, *(
            (t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers())))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.solve_weights())
        return self._cache[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.apply_weights(x, self.current_weights())

    @torch.no_grad()
    def to_weight_space(self) -> nn.Module:
        """An ordinary weight-space module with the weights solved from the current targets."""
        return self.export([(w.detach().clone(), b.detach().clone())
                            for w, b in self.solve_weights()])

    def extra_repr(self) -> str:
        return (f"n_bar={self.x_bar.shape[0]}, ridge={self.ridge}, mode={self.mode}, "
                f"regularise_bias={self.regularise_bias}, project={self.project}")


class TargetSpaceSequential(TargetSpaceModule):
    """A feed-forward stack in target space (MLPs, CNNs): layers are applied in order.

    :class:`TargetLayer` entries are solved from their targets; every other module
    (activations, flatten, pooling) is applied to both ``X_bar`` and the minibatch.
    """

    def __init__(
        self, x_bar: Tensor, layers: Sequence[nn.Module], *, ridge: float = 1e-3,
        mode: str = "scu", regularise_bias: bool = True, init_std: float = 1.0,
        project: bool = True, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(x_bar, ridge=ridge, mode=mode, regularise_bias=regularise_bias,
                         init_std=init_std, project=project, device=device, dtype=dtype)
        self.layers = nn.Sequential(*layers).to(device=self.x_bar.device, dtype=self.x_bar.dtype)
        if not any(isinstance(m, TargetLayer) for m in self.layers):
            raise ConfigError("TargetSpaceSequential needs at least one TargetLayer")
        self._name_layers()
        self.reset_parameters()

    def solve_weights(
        self, *, realised: list[Tensor] | None = None, init_std: float | None = None
    ) -> Weights:
        weights: Weights = []
        positions = [i for i, m in enumerate(self.layers) if isinstance(m, TargetLayer)]
        last = positions[-1]
        a_bar = self.x_bar
        for index, module in enumerate(self.layers):
            if index > last:
                break
            if not isinstance(module, TargetLayer):
                a_bar = module(a_bar)
                continue
            sums = self.solve_layer(module, a_bar, weights, more=index < last, realised=realised,
                                    init_std=init_std)
            if index < last:
                a_bar = sums if self.mode == "scu" else module.to_stream(module.targets, a_bar)
        return weights

    def apply_weights(self, x: Tensor, weights: Weights) -> Tensor:
        solved = iter(weights)
        for module in self.layers:
            x = module.apply(x, *next(solved)) if isinstance(module, TargetLayer) else module(x)
        return x

    def export(self, weights: Weights) -> nn.Module:
        solved = iter(weights)
        modules: list[nn.Module] = []
        for module in self.layers:
            if isinstance(module, TargetLinear):
                weight, bias = next(solved)
                plain = nn.Linear(module.in_features, module.out_features)
            elif isinstance(module, TargetConv2d):
                weight, bias = next(solved)
                plain = nn.Conv2d(module.in_channels, module.out_features, module.kernel_size,
                                  module.stride, module.padding)
            else:
                modules.append(copy.deepcopy(module))
                continue
            plain = plain.to(dtype=weight.dtype, device=weight.device)
            plain.weight.data.copy_(weight)
            plain.bias.data.copy_(bias)
            modules.append(plain)
        return nn.Sequential(*modules)

    @classmethod
    def from_weight_space(
        cls, module: nn.Sequential, x_bar: Tensor, **options
    ) -> TargetSpaceSequential:
        """Import: targets = the sums ``module`` realises on ``x_bar`` (so weights match)."""
        layers: list[nn.Module] = []
        for child in module:
            if isinstance(child, nn.Linear):
                if child.bias is None:
                    raise ConfigError("from_weight_space needs Linear layers with a bias")
                layers.append(TargetLinear(child.in_features, child.out_features))
            elif isinstance(child, nn.Conv2d):
                if child.bias is None or child.groups != 1 or child.dilation != (1, 1) or (
                        isinstance(child.padding, str)):
                    raise ConfigError("from_weight_space supports Conv2d with bias, groups=1, "
                                      "dilation=1 and numeric padding")
                layers.append(TargetConv2d(child.in_channels, child.out_channels,
                                           child.kernel_size, child.stride, child.padding))
            else:
                layers.append(copy.deepcopy(child))
        imported = cls(x_bar, layers, **{**options, "project": False})
        with torch.no_grad():
            a_bar = imported.x_bar
            targets = iter(imported.target_layers())
            for child in module:
                a_bar = child(a_bar)
                if isinstance(child, nn.Linear | nn.Conv2d):
                    layer = next(targets)
                    layer.targets.copy_(layer.to_matrix(a_bar))
        imported.project = options.get("project", True)
        imported._cache = None
        return imported


class ShortcutMLP(nn.Module):
    """Weight-space MLP whose layers optionally see the outputs of every earlier layer.

    With ``shortcuts`` layer ``l`` takes ``[x, h_1, ..., h_{l-1}]`` (the dense shortcut
    connections of the paper's two-spirals network, arXiv 2006.01578 section 5.1).
    Weights are Glorot-normal, std ``sqrt(2 / (fan_in + fan_out))``, biases zero.
    """

    def __init__(
        self, in_features: int, width: int, depth: int, out_features: int,
        activation: str = "tanh", shortcuts: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("width", width),
                            ("depth", depth), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.shortcuts, self.activation_name = shortcuts, activation
        self.activation = make_activation(activation)
        fans = _fan_ins(in_features, width, depth, shortcuts)
        outs = [width] * depth + [out_features]
        self.linears = nn.ModuleList(nn.Linear(i, o, device=device, dtype=dtype)
                                     for i, o in zip(fans, outs, strict=True))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in self.linears:
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = [x.flatten(1)]
        for index, linear in enumerate(self.linears):
            inputs = torch.cat(features, 1) if self.shortcuts else features[-1]
            z = linear(inputs)
            if index == len(self.linears) - 1:
                return z
            features.append(self.activation(z))
        raise AssertionError("unreachable")

    def extra_repr(self) -> str:
        return f"shortcuts={self.shortcuts}, activation={self.activation_name!r}"


def _fan_ins(in_features: int, width: int, depth: int, shortcuts: bool) -> list[int]:
    if shortcuts:
        return [in_features + width * i for i in range(depth + 1)]
    return [in_features] + [width] * depth


class TargetSpaceMLP(TargetSpaceModule):
    """An MLP in target space, optionally with dense shortcuts (the paper's spirals network).

    ``depth`` hidden layers of ``width`` units and a linear output layer; every layer is a
    :class:`TargetLinear` solved by SCU (default) or OCU from ``X_bar`` (n_bar, in_features).
    Defaults follow the paper's two-spirals script: lambda = 0.001, targets ~ N(0, 1)
    truncated, projected at initialisation.
    """

    def __init__(
        self, x_bar: Tensor, width: int, depth: int, out_features: int, *,
        activation: str = "tanh", shortcuts: bool = False, ridge: float = 1e-3,
        mode: str = "scu", regularise_bias: bool = True, init_std: float = 1.0,
        project: bool = True, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(x_bar, ridge=ridge, mode=mode, regularise_bias=regularise_bias,
                         init_std=init_std, project=project, device=device, dtype=dtype)
        in_features = self.x_bar.flatten(1).shape[1]
        for name, value in (("width", width), ("depth", depth), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.in_features, self.width, self.depth = in_features, width, depth
        self.out_features, self.shortcuts = out_features, shortcuts
        self.activation_name = activation
        self.activation = make_activation(activation)
        fans = _fan_ins(in_features, width, depth, shortcuts)
        outs = [width] * depth + [out_features]
        factory = {"device": self.x_bar.device, "dtype": self.x_bar.dtype}
        self.linears = nn.ModuleList(TargetLinear(i, o, **factory)
                                     for i, o in zip(fans, outs, strict=True))
        self._name_layers()
        self.reset_parameters()

    def _inputs(self, features: list[Tensor]) -> Tensor:
        return torch.cat(features, 1) if self.shortcuts else features[-1]

    def solve_weights(
        self, *, realised: list[Tensor] | None = None, init_std: float | None = None
    ) -> Weights:
        weights: Weights = []
        features = [self.x_bar.flatten(1)]
        last = len(self.linears) - 1
        for index, layer in enumerate(self.linears):
            sums = self.solve_layer(layer, self._inputs(features), weights, more=index < last,
                                    realised=realised, init_std=init_std)
            if index < last:
                features.append(self.activation(sums if self.mode == "scu" else layer.targets))
        return weights

    def apply_weights(self, x: Tensor, weights: Weights) -> Tensor:
        features = [x.flatten(1)]
        for index, (weight, bias) in enumerate(weights):
            z = F.linear(self._inputs(features), weight, bias)
            if index == len(weights) - 1:
                return z
            features.append(self.activation(z))
        raise AssertionError("unreachable")

    def export(self, weights: Weights) -> ShortcutMLP:
        plain = ShortcutMLP(self.in_features, self.width, self.depth, self.out_features,
                            self.activation_name, self.shortcuts)
        plain = plain.to(dtype=self.x_bar.dtype, device=self.x_bar.device)
        for linear, (weight, bias) in zip(plain.linears, weights, strict=True):
            linear.weight.data.copy_(weight)
            linear.bias.data.copy_(bias)
        return plain

    @classmethod
    def from_weight_space(cls, module: ShortcutMLP, x_bar: Tensor, **options) -> TargetSpaceMLP:
        """Import a :class:`ShortcutMLP`: targets = its pre-activation sums on ``x_bar``."""
        project = options.pop("project", True)
        imported = cls(x_bar, module.linears[0].out_features, len(module.linears) - 1,
                       module.linears[-1].out_features, activation=module.activation_name,
                       shortcuts=module.shortcuts, project=False, **options)
        with torch.no_grad():
            features = [imported.x_bar.flatten(1)]
            for index, (linear, layer) in enumerate(
                    zip(module.linears, imported.linears, strict=True)):
                sums = linear(imported._inputs(features))
                layer.targets.copy_(sums)
                if index < len(module.linears) - 1:
                    features.append(imported.activation(sums))
        imported.project = project
        imported._cache = None
        return imported

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, width={self.width}, depth={self.depth}, "
                f"out_features={self.out_features}, shortcuts={self.shortcuts}, "
                + super().extra_repr())
