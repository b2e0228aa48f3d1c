"""Random orthogonal additive filters for deep MLPs (Ceni, arXiv 2210.01245).

Each layer is a convex combination of an orthogonally filtered copy of the previous state and a
nonlinear layer::

    h_{l+1} = a * O h_l + b * phi(W_l h_l + c_l),      a + b = 1,  0 < b <= 1,

with ``O`` a random orthogonal matrix drawn once (QR of a Gaussian matrix with sign correction,
i.e. Haar distributed) and kept fixed. The layer Jacobian is ``J_l = a O + b D_l W_l`` with
``D_l = diag(phi'(z_l))``; by Weyl's inequality every singular value of ``J_l`` lies in
``[a - b s_l, a + b s_l]`` with ``s_l = ||D_l W_l||_2 <= ||W_l||_2`` (tanh' <= 1), so the
input-output Jacobian's singular values lie in ``[prod(a - b s_l), prod(a + b s_l)]``. With
``b = beta_scale / depth`` these bounds do not depend on depth (``-> [e^{-c(1+w)}, e^{c(w-1)}]``
for ``||W_l|| <= w``). The paper's exact constants were not available; the ``1/depth`` scaling is
a documented option (``beta=None``), see docs/methods/orthogonal.md.

The deep stack stores all layers in one ``(L, n, n)`` parameter and trains through a custom
autograd Function that keeps only every ``segment``-th state and recomputes each segment in the
backward pass, so activation memory is ``O((L / segment + segment) * batch * n)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from signalprop.config import require_int, require_number
from signalprop.errors import ConfigError
from signalprop.nn.activations import ACTIVATIONS, require_activation
from signalprop.nn.decorrelation import Decorrelator
from signalprop.nn.feedback import linear_with_feedback
from signalprop.nn.precision import autocast_off, float32_inputs, only_grad_transforms
from signalprop.nn.stack_tap import StackTap

SKIPS = ("orthogonal", "identity", "none")
#: Activations of the additive-filter stack (any in :mod:`signalprop.nn.activations` with a
#: derivative from the output would do; these are the tested ones).
STACK_ACTIVATIONS = ("tanh", "relu", "identity")


def random_orthogonal(
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A Haar-random ``n x n`` orthogonal matrix: QR of a Gaussian matrix, with the signs of
    ``diag(R)`` moved into ``Q`` so the distribution is uniform (Mezzadri 2007)."""
    gaussian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).masked_fill(torch.diagonal(r) == 0, 1.0)
    return q.to(dtype=dtype or torch.get_default_dtype(), device=device)


def check_beta(owner: str, beta: object) -> float:
    """``beta`` (the nonlinear branch's weight) as a float in (0, 1], else ConfigError."""
    if not isinstance(beta, int | float) or isinstance(beta, bool) or not 0 < beta <= 1:
        raise ConfigError(f"{owner} beta (weight of the nonlinear branch) must be in (0, 1], "
                          f"got {beta!r}")
    return float(beta)


def check_positive(owner: str, name: str, value: object) -> float:
    """``value`` as a finite float > 0, else ConfigError naming ``owner`` and ``name``."""
    return require_number(owner, name, value, low=0.0, open_low=True)


def filter_mixing(owner: str, beta: object, activation: str, allowed: Sequence[str],
                  gain: object) -> tuple[float, float, str, float]:
    """``(a, b, activation, gain)`` of an additive-filter layer ``h' = a O h + b phi(...)``,
    ``a = 1 - b``, each checked (ConfigError naming ``owner``)."""
    b = check_beta(owner, beta)
    require_activation(owner, "activation", activation, allowed)
    return 1.0 - b, b, activation, check_positive(owner, "gain", gain)


def activate(name: str, z: Tensor) -> Tensor:
    """``phi(z)`` for a registry name (:mod:`signalprop.nn.activations`)."""
    return ACTIVATIONS[name].function(z)


def _act_grad_from_output(name: str, p: Tensor) -> Tensor:
    """``phi'(z)`` written in terms of ``p = phi(z)`` (tanh: ``1 - p^2``)."""
    return ACTIVATIONS[name].derivative_from_output(p)


def filter_layer(h: Tensor, weight: Tensor, bias: Tensor, filt: Tensor | None, a: float, b: float,
           skip: str, act: str) -> tuple[Tensor, Tensor]:
    """One layer, no autograd bookkeeping: returns ``(h_next, p)`` with ``p = phi(W h + c)``."""
    p = activate(act, torch.addmm(bias, h, weight.t()))
    if skip == "orthogonal":
        return torch.addmm(p, h, filt.t(), beta=b, alpha=a), p
    if skip == "identity":
        return torch.add(p * b, h, alpha=a), p
    return p * b if b != 1.0 else p, p


_TRANSFORM_ERROR = ("the checkpointed additive-filter stack's backward is hand-written and does "
                    "not support {transform}; the module uses plain autograd under it, so call "
                    "AdditiveFilterStack rather than _CheckpointedStack.apply")


class _CheckpointedStack(torch.autograd.Function):
    """``h_L`` of the stacked layers; saves every ``segment``-th state and recomputes the rest.

    Backward through layer ``l`` (``g = dL/dh_{l+1}``)::

        g_z = b * g * phi'(z_l);  dL/dW_l = g_z^T h_l;  dL/dc_l = sum_batch g_z;
        dL/dh_l = a * g O + g_z W_l            (the ``a g O`` term only with an orthogonal skip)

    An optional last argument ``feedback`` (``(L, n, n)``, feedback alignment, Lillicrap et
    al. arXiv 1411.0247) replaces ``W_l`` by the fixed ``B_l`` in ``dL/dh_l``; the filter term
    ``a g O`` stays exact (``O`` is fixed, part of the architecture) and ``dL/dW_l`` is unchanged.
    """

    @staticmethod
    def forward(h0, weight, bias, filt, a, b, skip, act, segment,  # type: ignore[override]
                feedback=None):
        depth = weight.shape[0]
        checkpoints = []
        h = h0
        with torch.no_grad():
            for layer in range(depth):
                if layer % segment == 0:
                    checkpoints.append(h)
                h, _ = filter_layer(h, weight[layer], bias[layer], filt, a, b, skip, act)
        return h, torch.stack(checkpoints)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        h0, weight, bias, filt, a, b, skip, act, segment, *rest = inputs
        feedback = rest[0] if rest else None
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1], weight, bias,
                              filt if filt is not None else torch.empty(0),
                              feedback if feedback is not None else torch.empty(0))
        ctx.config = (a, b, skip, act, segment, filt is not None, feedback is not None)
        ctx.extra_inputs = len(rest)
        ctx.device_type = h0.device.type

    @staticmethod
    def vmap(info, in_dims, *args):  # type: ignore[override]
        raise ConfigError(_TRANSFORM_ERROR.format(transform="torch.func.vmap"))

    @staticmethod
    def backward(ctx, grad_out, grad_checkpoints):  # type: ignore[override]
        checkpoints, weight, bias, filt, feedback = ctx.saved_tensors
        a, b, skip, act, segment, has_filt, has_feedback = ctx.config
        filt = filt if has_filt else None
        backward_weight = feedback if has_feedback else weight
        depth = weight.shape[0]
        grad_w = torch.empty_like(weight)
        grad_c = torch.empty_like(bias)
        g = grad_out.contiguous()
        with torch.no_grad(), autocast_off(ctx.device_type):
            for index in range(checkpoints.shape[0] - 1, -1, -1):
                start = index * segment
                stop = min(start + segment, depth)
                states, acts = [checkpoints[index]], []
                for layer in range(start, stop):
                    h, p = filter_layer(states[-1], weight[layer], bias[layer], filt, a, b, skip,
                                        act)
                    states.append(h)
                    acts.append(p)
                grad_z_all = []
                for offset in range(stop - start - 1, -1, -1):
                    layer = start + offset
                    grad_z = g * _act_grad_from_output(act, acts[offset])
                    if b != 1.0:
                        grad_z = grad_z * b
                    grad_z_all.append(grad_z)
                    back = grad_z @ backward_weight[layer]
                    if skip == "orthogonal":
                        back = torch.addmm(back, g, filt, alpha=a)
                    elif skip == "identity":
                        back = torch.add(back, g, alpha=a)
                    g = back
                grad_z_seg = torch.stack(grad_z_all[::-1])
                inputs = torch.stack(states[:-1])
                torch.bmm(grad_z_seg.transpose(1, 2), inputs, out=grad_w[start:stop])
                torch.sum(grad_z_seg, dim=1, out=grad_c[start:stop])
        return (g, grad_w, grad_c, None, None, None, None, None, None,
                *([None] * ctx.extra_inputs))


class AdditiveFilterStack(nn.Module):
    """``depth`` additive-filter layers of width ``n`` stored as one ``(depth, n, n)`` weight.

    ``h_{l+1} = a * O h_l + b * phi(W_l h_l + c_l)`` with ``a = 1 - b`` (Ceni, arXiv 2210.01245).
    ``skip`` selects the first branch: ``"orthogonal"`` (the paper), ``"identity"`` (a residual
    net ``h + b phi(.)`` with ``a = 1``) or ``"none"`` (a plain MLP ``b phi(.)``, ``b = 1``).
    ``beta=None`` sets ``b = beta_scale / depth`` (depth-independent Jacobian bounds); a number
    fixes it. ``W_l ~ N(0, gain^2 / n)``, ``c_l = 0``. ``segment`` is the recomputation segment
    (default ``ceil(sqrt(depth))``); ``checkpoint=False`` uses plain autograd, as the module does
    by itself under ``torch.func.vmap`` and ``jvp`` (docs/modules.md). ``device``/``dtype`` as
    for ``torch.nn`` modules.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        *,
        beta: float | None = None,
        beta_scale: float = 1.0,
        skip: str = "orthogonal",
        activation: str = "tanh",
        gain: float = 1.0,
        segment: int | None = None,
        checkpoint: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.width = require_int("AdditiveFilterStack", "width", width)
        self.depth = require_int("AdditiveFilterStack", "depth", depth)
        if skip not in SKIPS:
            raise ConfigError(f"AdditiveFilterStack skip must be one of {SKIPS}, got {skip!r}")
        require_activation("AdditiveFilterStack", "activation", activation, STACK_ACTIVATIONS)
        self.skip, self.activation = skip, activation
        self.gain = check_positive("AdditiveFilterStack", "gain", gain)
        self.beta_scale = check_positive("AdditiveFilterStack", "beta_scale", beta_scale)
        if skip == "none":
            self.b, self.a = 1.0, 0.0
        elif beta is None:
            self.b = min(1.0, self.beta_scale / depth)
            self.a = 1.0 - self.b if skip == "orthogonal" else 1.0
        else:
            self.b = check_beta("AdditiveFilterStack", beta)
            self.a = 1.0 - self.b if skip == "orthogonal" else 1.0
        if segment is None:
            segment = max(1, math.ceil(math.sqrt(depth)))
        self.segment = require_int("AdditiveFilterStack", "segment", segment)
        self.checkpoint = bool(checkpoint)
        #: per-layer decorrelators of the nonlinear branch (:meth:`decorrelate_branch`)
        self.decorrelators: nn.ModuleList | None = None
        #: a learning rule's per-layer hook (:mod:`signalprop.nn.stack_tap`); never saved
        self.tap: StackTap | None = None
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(depth, width, width, **factory))
        self.bias = nn.Parameter(torch.empty(depth, width, **factory))
        if skip == "orthogonal":
            self.register_buffer("filter", random_orthogonal(width, generator=generator,
                                                             **factory))
        else:
            self.filter = None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.weight.normal_(0.0, self.gain / math.sqrt(self.width), generator=generator)
            self.bias.zero_()

    def extra_repr(self) -> str:
        decorrelated = ", decorrelated=True" if self.decorrelators is not None else ""
        return (f"width={self.width}, depth={self.depth}, a={self.a:.6g}, b={self.b:.6g}, "
                f"skip={self.skip!r}, activation={self.activation!r}, segment={self.segment}, "
                f"checkpoint={self.checkpoint}{decorrelated}")

    def decorrelate_branch(self, **options: object) -> None:
        """Put a :class:`~signalprop.nn.decorrelation.Decorrelator` in front of every layer's
        nonlinear branch: ``h_{l+1} = a O h_l + b phi(W_l R_l (h_l - mu_l) + c_l)`` (Ahmad,
        arXiv 2407.10780, inside Ceni's filter, arXiv 2210.01245). The filter path ``a O h_l``
        is untouched. ``options`` go to ``Decorrelator``; a second call changes nothing. The
        decorrelated stack trains by plain autograd (no checkpointed recomputation)."""
        if self.decorrelators is not None:
            return
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.decorrelators = nn.ModuleList(
            Decorrelator(self.width, **factory, **options)  # type: ignore[arg-type]
            for _ in range(self.depth))

    def forward(self, h: Tensor) -> Tensor:
        """``h_L`` from ``h_0``; float32 under autocast (see :mod:`signalprop.nn.precision`).

        A ``feedback`` buffer ``(L, n, n)`` (set by feedback alignment) sends the error through
        ``B_l`` instead of ``W_l`` (:class:`_CheckpointedStack`)."""
        feedback = self._buffers.get("feedback")
        device_type = h.device.type
        if torch.is_autocast_enabled(device_type):
            h, weight, bias, filt, feedback = float32_inputs(
                device_type, h, self.weight, self.bias, self.filter, feedback)
            with autocast_off(device_type):
                return self._stack(h, weight, bias, filt, feedback)
        return self._stack(h, self.weight, self.bias, self.filter, feedback)

    def _stack(self, h: Tensor, weight: Tensor, bias: Tensor, filt: Tensor | None,
               feedback: Tensor | None = None) -> Tensor:
        opened = self.decorrelators is not None or self.tap is not None
        if (not opened and self.checkpoint and torch.is_grad_enabled()
                and only_grad_transforms()):
            extra = () if feedback is None else (feedback,)
            return _CheckpointedStack.apply(h, weight, bias, filt, self.a, self.b, self.skip,
                                            self.activation, self.segment, *extra)[0]
        if not opened and feedback is None:
            for layer in range(self.depth):
                h, _ = filter_layer(h, weight[layer], bias[layer], filt, self.a, self.b, self.skip,
                              self.activation)
            return h
        for layer in range(self.depth):
            h = self._open_layer(layer, h, weight[layer], bias[layer], filt,
                                 None if feedback is None else feedback[layer])
        return h

    def _open_layer(self, index: int, h: Tensor, weight: Tensor, bias: Tensor,
                    filt: Tensor | None, feedback: Tensor | None) -> Tensor:
        """One layer by plain autograd, with the decorrelator, feedback matrix and tap."""
        tap = self.tap
        if tap is not None:
            h = tap.state(index, h)
        u = h if self.decorrelators is None else self.decorrelators[index](h)
        if feedback is None:
            z = nn.functional.linear(u, weight, bias)
        else:
            z = linear_with_feedback(u, weight, bias, feedback)
        if tap is not None:
            z = tap.pre_activation(index, u, z)
        p = activate(self.activation, z)
        if self.skip == "orthogonal":
            return torch.addmm(p, h, filt.t(), beta=self.b, alpha=self.a)
        if self.skip == "identity":
            return torch.add(p * self.b, h, alpha=self.a)
        return p * self.b if self.b != 1.0 else p

    @torch.no_grad()
    def layer_grad_norms(self) -> Tensor:
        """``||(dL/dW_l, dL/dc_l)||_2`` for every layer, from the current ``.grad``."""
        if self.weight.grad is None:
            return torch.zeros(self.depth)
        sq = self.weight.grad.flatten(1).pow(2).sum(1)
        if self.bias.grad is not None:
            sq = sq + self.bias.grad.pow(2).sum(1)
        return sq.sqrt()

    @torch.no_grad()
    def layer_weight_norms(self) -> Tensor:
        """Spectral norm ``||W_l||_2`` of every layer (for the Jacobian bound)."""
        return torch.linalg.matrix_norm(self.weight, ord=2)


class AdditiveFilterMLP(nn.Module):
    """Input projection, ``depth`` additive-filter layers, linear readout (arXiv 2210.01245).

    ``x -> h_0 = P x -> h_L = stack(h_0) -> y = R h_L``; see :class:`AdditiveFilterStack`.
    Inputs are flattened, so images work directly.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **stack_options: object,
    ) -> None:
        super().__init__()
        require_int("AdditiveFilterMLP", "in_features", in_features)
        require_int("AdditiveFilterMLP", "out_features", out_features)
        require_int("AdditiveFilterMLP", "width", width)
        factory = {"device": device, "dtype": dtype}
        self.input = nn.Linear(in_features, width, **factory)
        self.stack = AdditiveFilterStack(width, depth, **factory,
                                         **stack_options)  # type: ignore[arg-type]
        self.head = nn.Linear(width, out_features, **factory)

    def reset_parameters(self) -> None:
        self.input.reset_parameters()
        self.stack.reset_parameters()
        self.head.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stack(self.input(x.flatten(1))))

    def extra_repr(self) -> str:
        return "y = head(stack(input(x.flatten(1))))"


def additive_filter_mlp(
    in_features: int, width: int, depth: int, out_features: int, **options: object
) -> AdditiveFilterMLP:
    """Deep MLP factory: any depth, one ``(depth, n, n)`` weight, checkpointed training."""
    return AdditiveFilterMLP(in_features, width, depth, out_features, **options)


class AdditiveFilterBlock(nn.Module):
    """One layer ``h' = a * O h + b * phi(W h + c)``, ``a = 1 - b``, as a plain module."""

    def __init__(self, width: int, beta: float = 0.1, activation: str = "tanh",
                 gain: float = 1.0, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.width = require_int("AdditiveFilterBlock", "width", width)
        self.a, self.b, self.activation, self.gain = filter_mixing(
            "AdditiveFilterBlock", beta, activation, STACK_ACTIVATIONS, gain)
        self.linear = nn.Linear(width, width, device=device, dtype=dtype)
        self.register_buffer("filter", random_orthogonal(width, generator=generator,
                                                         device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.linear.weight, std=self.gain / math.sqrt(self.width))
        nn.init.zeros_(self.linear.bias)

    def extra_repr(self) -> str:
        return f"width={self.width}, a={self.a:.6g}, b={self.b:.6g}, activation={self.activation!r}"

    def forward(self, h: Tensor) -> Tensor:
        """``h'`` from ``h``; float32 under autocast (see :mod:`signalprop.nn.precision`)."""
        device_type = h.device.type
        if torch.is_autocast_enabled(device_type):
            h, filt = float32_inputs(device_type, h, self.filter)
            with autocast_off(device_type):
                return self._step(h, filt, float32=True)
        return self._step(h, self.filter)

    def _step(self, h: Tensor, filt: Tensor, float32: bool = False) -> Tensor:
        linear = self.linear  # called as a module where dtypes allow, so its hooks see it
        if not float32 or linear.weight.dtype == torch.float32:
            z = linear(h)
        else:  # a half-precision block under autocast: float32 copies of its weights
            bias = None if linear.bias is None else linear.bias.float()
            z = nn.functional.linear(h, linear.weight.float(), bias)
        return self.a * h @ filt.t() + self.b * activate(self.activation, z)

