"""Elman RNN with a random orthogonal additive filter (Ceni, arXiv 2210.01245).

::

    h_t = a * O h_{t-1} + b * tanh(W h_{t-1} + U x_t + c),      a = 1 - b,

with ``O`` a fixed Haar-random orthogonal matrix. Over ``T`` steps the state Jacobian's singular
values lie in ``[prod(a - b s_t), prod(a + b s_t)]``, ``s_t = ||D_t W||_2``, so ``b ~ 1/T`` keeps
memory over ``T`` steps.

Speed: the input projections ``U x_t + c`` of all steps are one matrix multiply, and the
recurrence runs in a custom autograd Function (``impl="bptt"``) whose forward per step is
``z_t += h_{t-1} W^T``, the activation and ``h_t = a h_{t-1} O^T + b phi(z_t)``, and whose
backward through time is (two products and a multiply per step)::

    g_z,t = b * g_t * tanh'(z_t);  g_{t-1} = a * g_t O + g_z,t W + dL/dh_{t-1} (direct);
    dL/dW = sum_t g_z,t^T h_{t-1} (one matmul over all steps);  dL/d(U x_t + c) = g_z,t.

The two time loops run in C++ (:mod:`signalprop.nn.filter_bptt_native`): hand-fused kernels
for small hidden sizes on CPU, loops of ATen calls otherwise, and the Python loops below where
no compiler is available.

``impl="loop"`` is the lean autograd version (time-major, ``unbind(0)``, ``O`` and ``W`` fused in
one ``h @ [a O^T, W^T]``), kept as a reference; ``impl="bptt"`` runs it by itself under
``torch.func.vmap`` and ``jvp`` (the Function serves autograd and ``torch.func.grad``; see
docs/modules.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from signalprop.config import require_int
from signalprop.errors import ConfigError
from signalprop.nn import reusable_buffers
from signalprop.nn.cell_layer import CellLayer
from signalprop.nn.filter_bptt_native import advise_huge_pages, time_loops
from signalprop.nn.orthogonal import activate, check_positive, filter_mixing
from signalprop.nn.orthogonal_filters import FILTERS, make_filter
from signalprop.nn.precision import autocast_off, float32_inputs, only_grad_transforms
from signalprop.nn.readout import LastStepClassifier

#: The activations the fused BPTT kernel implements in place (tanh as ``2 sigmoid(2 z) - 1``);
#: the cell and the autograd loop take ``phi`` from :mod:`signalprop.nn.activations`.
RNN_ACTIVATIONS = ("tanh", "relu")
IMPLS = ("bptt", "loop")

__all__ = ["AdditiveFilterRNN", "AdditiveFilterRNNCell", "LastStepClassifier"]


def _run_recurrence(x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None,
                    weight: Tensor, filt: Tensor, a: float, b: float,
                    act: str) -> tuple[Tensor, Tensor]:
    """States ``(T + 1, B, n)`` (``h_0`` first) and activation buffer ``(T, B, n)`` holding
    ``sigmoid(2 z_t)`` for tanh (``tanh(z) = 2 sigmoid(2 z) - 1``) or ``relu(z_t)``."""
    steps, batch, _ = x.shape
    hidden = weight.shape[0]
    tanh = act == "tanh"
    k = 2.0 if tanh else 1.0
    acts = reusable_buffers.take_buffer(x, (steps, batch, hidden))
    x2d, acts2d = x.reshape(steps * batch, -1), acts.view(-1, hidden)
    if bias is None:
        torch.mm(x2d, weight_ih.t() * k, out=acts2d)
    else:
        torch.addmm(bias, x2d, weight_ih.t(), beta=k, alpha=k, out=acts2d)
    states = x.new_empty(steps + 1, batch, hidden)
    loops = time_loops(hidden, x, h0, weight, weight_ih, bias)
    if loops is not None:
        advise_huge_pages(states)
    states[0] = h0
    permute = filt.dtype == torch.long
    w_t = weight.t() * k
    o_t = filt if permute else filt.t()
    if loops is not None:  # the C++ loops (fused kernels or ATen calls), same arithmetic
        loops[0](acts, states, w_t, o_t, a, b, tanh, permute)
        return states, acts
    for p_t, h, h_t in zip(acts.unbind(0), states[:-1].unbind(0), states[1:].unbind(0),
                           strict=True):
        p_t.addmm_(h, w_t)
        if tanh:  # h_t = a O h + b (2 s - 1)
            p_t.sigmoid_()
            if permute:
                torch.index_select(h, 1, o_t, out=h_t)
                h_t.mul_(a).add_(p_t, alpha=2.0 * b).sub_(b)
            else:
                torch.addmm(p_t, h, o_t, beta=2.0 * b, alpha=a, out=h_t).sub_(b)
        else:
            p_t.relu_()
            if permute:  # O h is a gather, a O h + b p is one lerp (a = 1 - b)
                torch.lerp(h.index_select(1, o_t), p_t, b, out=h_t)
            else:
                torch.addmm(p_t, h, o_t, beta=b, alpha=a, out=h_t)
    return states, acts


def _backward_loop(acts: Tensor, g: Tensor, direct: Tensor | None, weight: Tensor,
                   filt_a: Tensor, a: float, permute: bool) -> Tensor:
    """The time loop of the backward pass: ``acts`` holds the slopes ``b phi'(z_t)`` on entry
    and ``dL/dz_t`` on exit; returns ``dL/dh_0``. ``filt_a`` is ``a O`` (or, for a permutation,
    the inverse permutation). The C++ ``backward_loop`` makes the same calls and
    ``backward_fused`` the same arithmetic (:mod:`signalprop.nn.filter_bptt_native`)."""
    buffers = (torch.empty_like(g), torch.empty_like(g))
    for t in range(acts.shape[0] - 1, -1, -1):
        gz = acts[t].mul_(g)  # dL/dz_t overwrites the slope
        if t > 0 and direct is not None:
            nxt = torch.addmm(direct[t - 1], gz, weight, out=buffers[t % 2])
        else:
            nxt = torch.mm(gz, weight, out=buffers[t % 2])
        if permute:
            g = nxt.add_(g.index_select(1, filt_a), alpha=a)
        else:
            g = nxt.addmm_(g, filt_a)
    return g


class _AdditiveFilterBPTT(torch.autograd.Function):
    """States ``H[t] = h_t`` (time-major ``(T, B, n)``) and a copy of ``h_T`` from time-major
    inputs ``x``.

    Forward: all input projections ``U x_t + c`` in one GEMM straight into the activation
    buffer, then per step one in-place GEMM ``z_t += h_{t-1} W^T``, the activation and
    ``h_t = a h_{t-1} O^T + b p_t`` (one ``addmm``). ``tanh`` is evaluated as
    ``2 sigmoid(2 z) - 1`` (the factor 2 is folded into ``U``, ``c`` and ``W``): on CPU
    ``sigmoid_`` is several times faster than ``tanh_``; the buffer keeps ``s = sigmoid(2 z)``.
    Backward: per step one multiply and two GEMMs, then ``dL/dW``, ``dL/dU``, ``dL/dc`` and
    ``dL/dx`` as single GEMMs over all steps. The slopes ``b tanh'(z) = 4 b s (1 - s)`` and then
    ``dL/dz`` overwrite the activation buffer, so backward allocates no ``(T, B, n)`` tensor;
    gradients of outputs that were not used arrive as ``None`` (no zero-filled buffer).
    ``filt`` is either the matrix ``O`` or, for a permutation filter ``O = I[perm]``, the index
    tensor ``perm`` (then ``O h`` is a gather and each step has one GEMM each way).
    """

    @staticmethod
    def forward(x, h0, weight_ih, bias, weight, filt, a, b, act):  # type: ignore[override]
        with torch.no_grad():
            states, acts = _run_recurrence(x, h0, weight_ih, bias, weight, filt, a, b, act)
        return states[1:], states[-1].clone(), acts, states

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, h0, weight_ih, bias, weight, filt, a, b, act = inputs
        _, _, acts, states = output
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(acts, states)
        ctx.save_for_backward(x, h0, weight_ih, bias, weight, filt, states)
        ctx.acts = acts  # overwritten by backward; recomputed if backward runs again
        ctx.config = (a, b, act)
        ctx.device_type = x.device.type

    @staticmethod
    def vmap(info, in_dims, *args):  # type: ignore[override]
        raise ConfigError("the additive-filter RNN's hand-written BPTT does not support "
                          "torch.func.vmap; AdditiveFilterRNN runs its autograd loop under it, "
                          "so call the module rather than _AdditiveFilterBPTT.apply")

    @staticmethod
    def backward(ctx, grad_states, grad_last, grad_acts, grad_all):  # type: ignore[override]
        x, h0, weight_ih, bias, weight, filt, states = ctx.saved_tensors
        a, b, act = ctx.config
        acts, ctx.acts = ctx.acts, None
        steps, batch, hidden = states[1:].shape
        with torch.no_grad(), autocast_off(ctx.device_type):
            if acts is None:  # a second backward (retain_graph): rebuild the overwritten buffer
                acts = _run_recurrence(x, h0, weight_ih, bias, weight, filt, a, b, act)[1]
            if act == "tanh":  # b tanh'(z) = 4 b s (1 - s), in place
                torch.addcmul(acts, acts, acts, value=-1.0, out=acts).mul_(4.0 * b)
            else:
                acts.gt_(0).mul_(b)
            direct = None if grad_states is None else grad_states.contiguous()
            g = torch.zeros_like(states[0]) if grad_last is None else grad_last.clone()
            if direct is not None:
                g.add_(direct[-1])
            permute = filt.dtype == torch.long
            filt_a = torch.argsort(filt) if permute else filt * a
            loops = time_loops(hidden, acts, g, direct, weight)
            loop = _backward_loop if loops is None else loops[1]
            g = loop(acts, g, direct, weight, filt_a, a, permute)
            gz2d = acts.view(-1, hidden)
            need = ctx.needs_input_grad
            grad_weight = gz2d.t() @ states[:-1].reshape(-1, hidden) if need[4] else None
            # (x^T g_z)^T: the same product as g_z^T x, several times faster on CPU (BLAS
            # handles a long reduction into a narrow output badly)
            grad_ih = (x.reshape(steps * batch, -1).t() @ gz2d).t() if need[2] else None
            grad_bias = gz2d.sum(0) if bias is not None and need[3] else None
            grad_x = (gz2d @ weight_ih).view(x.shape) if need[0] else None
        reusable_buffers.give_back(acts)
        grad_h0 = g.clone() if need[1] else None
        return grad_x, grad_h0, grad_ih, grad_bias, grad_weight, None, None, None, None


class AdditiveFilterRNNCell(nn.Module):
    """One step ``h' = a * O h + b * phi(W h + U x + c)``, ``a = 1 - b`` (arXiv 2210.01245).

    ``W ~ N(0, gain^2 / hidden)``, ``U ~ N(0, input_gain^2 / input_size)``, ``c = 0``; ``O`` is a
    fixed Haar-random orthogonal buffer (QR with sign correction). ``filter`` picks another
    ``O`` (:mod:`signalprop.nn.orthogonal_filters`): ``"haar-det-1"`` (a Haar draw with an exact
    +1 eigenvalue, a *fixed direction*, for even ``hidden_size``), ``"haar-det+1"`` and
    ``"haar-no-fixed"`` (without one), or, where ``O h`` is a gather, ``"permutation"``,
    ``"cycle"`` (the cyclic shift ``(O h)_i = h_{i-1}`` of the author's later reservoir code)
    and ``"identity"``. Which of them learn the adding problem (a fixed direction is not what
    it needs): docs/methods/orthogonal.md, "The filter's spectrum".
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        beta: float = 0.1,
        activation: str = "tanh",
        bias: bool = True,
        gain: float = 1.0,
        input_gain: float = 1.0,
        generator: torch.Generator | None = None,
        filter: str = "haar",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if filter not in FILTERS:
            raise ConfigError(f"AdditiveFilterRNNCell filter: one of {FILTERS}, not {filter!r}")
        self.filter_kind = filter
        self.input_size = require_int("AdditiveFilterRNNCell", "input_size", input_size)
        self.hidden_size = require_int("AdditiveFilterRNNCell", "hidden_size", hidden_size)
        self.a, self.b, self.activation, self.gain = filter_mixing(
            "AdditiveFilterRNNCell", beta, activation, RNN_ACTIVATIONS, gain)
        self.input_gain = check_positive("AdditiveFilterRNNCell", "input_gain", input_gain)
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **factory))
        self.bias = nn.Parameter(torch.empty(hidden_size, **factory)) if bias else None
        filt, perm = make_filter(filter, hidden_size, generator=generator, **factory)
        self.register_buffer("filter", filt)
        self.register_buffer("permutation", perm)  # gather filters: O h = h[:, perm]
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.weight_hh.normal_(0.0, self.gain / math.sqrt(self.hidden_size),
                                   generator=generator)
            self.weight_ih.normal_(0.0, self.input_gain / math.sqrt(self.input_size),
                                   generator=generator)
            if self.bias is not None:
                self.bias.zero_()

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, a={self.a:.6g}, b={self.b:.6g}, "
                f"activation={self.activation!r}, bias={self.bias is not None}, "
                f"filter={self.filter_kind!r}")

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """``h'`` from ``x`` (B, input_size) and ``h`` (B, hidden_size); float32 under autocast
        (see :mod:`signalprop.nn.precision`)."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            with autocast_off(device_type):
                return self._step(*float32_inputs(device_type, x, h, self.weight_ih, self.bias,
                                                  self.weight_hh, self.filter))
        return self._step(x, h, self.weight_ih, self.bias, self.weight_hh, self.filter)

    def _step(self, x: Tensor, h: Tensor, weight_ih: Tensor, bias: Tensor | None,
              weight_hh: Tensor, filt: Tensor) -> Tensor:
        z = nn.functional.linear(x, weight_ih, bias) + h @ weight_hh.t()
        return self.a * h @ filt.t() + self.b * activate(self.activation, z)


class AdditiveFilterRNN(CellLayer):
    """Single-layer additive-filter Elman RNN with the ``torch.nn.RNN`` calling convention.

    ``forward(input, h0=None) -> (output, h_n)`` with input ``(B, T, input_size)`` when
    ``batch_first`` (default) else ``(T, B, input_size)``, ``h0``/``h_n`` of shape
    ``(1, B, hidden_size)`` and output holding every ``h_t``. See :class:`AdditiveFilterRNNCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        beta: float = 0.1,
        activation: str = "tanh",
        bias: bool = True,
        batch_first: bool = True,
        gain: float = 1.0,
        input_gain: float = 1.0,
        impl: str = "bptt",
        generator: torch.Generator | None = None,
        filter: str = "haar",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ConfigError(f"AdditiveFilterRNN impl must be one of {IMPLS}, got {impl!r}")
        self.cell = AdditiveFilterRNNCell(input_size, hidden_size, beta, activation, bias, gain,
                                          input_gain, generator, filter, device=device,
                                          dtype=dtype)
        self.batch_first = bool(batch_first)
        self.impl = impl

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl!r}"

    def forward(self, input: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if input.dim() != 3:
            raise ValueError(f"AdditiveFilterRNN expects a 3-d input, got shape "
                             f"{tuple(input.shape)}")
        cell = self.cell
        time_major = input.transpose(0, 1) if self.batch_first else input
        steps, batch, _ = time_major.shape
        if h0 is None:
            h = input.new_zeros(batch, cell.hidden_size)
        else:
            if h0.shape != (1, batch, cell.hidden_size):
                raise ValueError(f"h0 must have shape (1, {batch}, {cell.hidden_size}), got "
                                 f"{tuple(h0.shape)}")
            h = h0[0]
        device_type = input.device.type
        if torch.is_autocast_enabled(device_type):  # float32, see signalprop.nn.precision
            time_major, h, weight_ih, bias, weight_hh, filt = float32_inputs(
                device_type, time_major, h, cell.weight_ih, cell.bias, cell.weight_hh,
                cell.filter)
            with autocast_off(device_type):
                states, last = self._recurrence(time_major, h, weight_ih, bias, weight_hh, filt)
        else:
            states, last = self._recurrence(time_major, h, cell.weight_ih, cell.bias,
                                            cell.weight_hh, cell.filter)
        output = states.transpose(0, 1) if self.batch_first else states
        return output, last.unsqueeze(0)

    def _recurrence(self, x: Tensor, h: Tensor, weight_ih: Tensor, bias: Tensor | None,
                    weight_hh: Tensor, filt: Tensor) -> tuple[Tensor, Tensor]:
        """States ``(T, B, n)`` and ``h_T`` from time-major ``x``: the BPTT Function under
        autograd and ``torch.func.grad``, the autograd loop for ``impl="loop"``, ``vmap`` and
        ``jvp``."""
        cell = self.cell
        filt_or_perm = filt if cell.permutation is None else cell.permutation
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, h, weight_ih, bias, weight_hh))
        if self.impl == "bptt" and only_grad_transforms():
            x = x.contiguous()  # time-major: one copy here, none in the forward or backward
            if not needs_grad:
                states, acts = _run_recurrence(x, h, weight_ih, bias, weight_hh, filt_or_perm,
                                               cell.a, cell.b, cell.activation)
                reusable_buffers.give_back(acts)
                return states[1:], states[-1]
            states, last, _, _ = _AdditiveFilterBPTT.apply(x, h, weight_ih, bias, weight_hh,
                                                           filt_or_perm, cell.a, cell.b,
                                                           cell.activation)
            return states, last
        # all input projections U x_t + c in one matmul, time-major (T, B, H)
        u = nn.functional.linear(x, weight_ih, bias).contiguous()
        states = self._loop(u, h, weight_hh, filt)
        return states, states[-1]

    def _loop(self, u: Tensor, h: Tensor, weight_hh: Tensor, filt: Tensor) -> Tensor:
        cell = self.cell
        hidden = cell.hidden_size
        fused = torch.cat([cell.a * filt.t(), weight_hh.t()], dim=1)
        outs = []
        for u_t in u.unbind(0):
            mixed = h @ fused
            h = torch.add(mixed[:, :hidden],
                          activate(cell.activation, mixed[:, hidden:] + u_t), alpha=cell.b)
            outs.append(h)
        return torch.stack(outs)
