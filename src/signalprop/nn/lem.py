"""Long Expressive Memory (LEM; Rusch, Mishra, Erichson & Mahoney, "Long Expressive Memory for
Sequence Modeling", ICLR 2022, arXiv 2110.04744).

LEM discretises a system of two multiscale ODEs. With input ``u_n`` and states ``y``, ``z``::

    Δt_n  = Δt · σ(W_1 y_{n-1} + V_1 u_n + b_1)
    Δt̄_n  = Δt · σ(W_2 y_{n-1} + V_2 u_n + b_2)
    z_n   = (1 − Δt_n) ⊙ z_{n-1} + Δt_n ⊙ tanh(W_z y_{n-1} + V_z u_n + b_z)
    y_n   = (1 − Δt̄_n) ⊙ y_{n-1} + Δt̄_n ⊙ tanh(W_y z_n + V_y u_n + b_y)

``σ`` is the logistic sigmoid and ``Δt`` a fixed maximal step. The learnt time steps
``Δt_n, Δt̄_n ∈ (0, Δt)`` give each unit its own time scale, which is what lets LEM learn the
adding problem at T = 10,000. signalprop uses it as the positive control of the long-memory
experiments: a model known to solve the task, run in the same harness.

Layout: the four input maps ``[V_1; V_2; V_y; V_z]`` are one ``Linear(input, 4 n)`` applied
to all steps at once, the three state maps ``[W_1; W_2; W_z]`` one ``Linear(n, 3 n)``, and
``W_y`` its own ``Linear(n, n)``; every weight and bias starts uniform in ``±1/sqrt(n)``.

Speed: the recurrence runs in a custom autograd Function (``impl="bptt"``, the default) with a
hand-written backward through time, as the additive-filter RNN does
(:mod:`signalprop.nn.orthogonal_rnn`). Its forward computes the input maps of all steps as one
GEMM into a gate buffer reused across training steps (rows reordered and all biases summed
under autograd, :func:`lem_recurrence`), then runs the time loop, which keeps ``y_t``, ``z_t``
and the gates ``tanh(·)``, ``Δt_n``, ``Δt̄_n`` of every step in that buffer; its backward runs
the adjoint::

    g_q = g_y ⊙ Δt̄_n ⊙ (1 − tanh²(q)),  g_z += g_q W_y,
    g_{a_z} = g_z ⊙ Δt_n ⊙ (1 − tanh²(a_z)),
    g_{a_1} = g_z ⊙ (tanh(a_z) − z_{n-1}) ⊙ Δt_n (1 − Δt_n/Δt),
    g_{a_2} = g_y ⊙ (tanh(q) − y_{n-1}) ⊙ Δt̄_n (1 − Δt̄_n/Δt),
    g_{y,n-1} = g_y ⊙ (1 − Δt̄_n) + [g_{a_1}, g_{a_2}, g_{a_z}] W_s + dL/dy_{n-1},
    g_{z,n-1} = g_z ⊙ (1 − Δt_n)

and overwrites the gates with the pre-activations' gradients, from which the gradients of the
input, the input maps, ``W_s``, ``W_y`` and every bias follow without copying the buffer. Both
time loops are C++ (:mod:`signalprop.nn.lem_bptt_native`, built on first use): for small hidden
sizes hand-fused kernels (one pass per batch row and step, and the weight gradients accumulated
inside the backward loop while each step's gradients are in cache), otherwise loops of ATen
calls (two GEMMs per step each way plus fused element-wise passes; the weight gradients are
GEMMs over all steps afterwards). The Python loops here are the reference and run where the
build fails or with ``SIGNALPROP_NATIVE_BPTT=0``. Timings: docs/methods/orthogonal.md, "Speed at
T = 10,000". ``impl="loop"`` is the plain autograd loop
over :meth:`LEMCell.step`, kept as the reference; ``impl="bptt"`` runs it by itself under
``torch.func.vmap``/``jvp`` (the Function serves autograd and ``torch.func.grad``). The
hand-written backward is not differentiable again (no double backward: use ``impl="loop"``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from signalprop.config import require_int
from signalprop.errors import ConfigError
from signalprop.nn import reusable_buffers
from signalprop.nn.cell_layer import CellLayer
from signalprop.nn.filter_bptt_native import advise_huge_pages
from signalprop.nn.lem_bptt_native import Loops, time_loops
from signalprop.nn.precision import autocast_off, float32_inputs, only_grad_transforms

__all__ = ["LEM", "LEMCell"]

IMPLS = ("bptt", "loop")


def _forward_loop(acts: Tensor, ys: Tensor, zs: Tensor, ws_t: Tensor, wy_t: Tensor,
                  dt: float) -> None:
    """The forward time loop, in place. ``acts`` (T, B, 4n) holds the pre-activations' input
    parts ``[u_z + b_z, u_1 + b_1, u_2 + b_2, u_y + b_y]`` on entry and the gates
    ``[tanh(a_z), Δt_n, Δt̄_n, tanh(q)]`` on exit; ``ys``, ``zs`` (T + 1, B, n) hold ``y_0``,
    ``z_0`` in row 0 and get the states. ``ws_t = [W_z; W_1; W_2]^T`` (the state maps' rows
    rolled so that the sigmoids and the tanh are contiguous), ``wy_t = W_y^T``. The C++
    ``forward_loop`` makes the same GEMMs and fuses the element-wise rest (tanh as
    ``2 sigmoid(2 x) - 1``, see :mod:`signalprop.nn.lem_bptt_native`)."""
    n = ys.shape[2]
    for t in range(acts.shape[0]):
        a, y, z, z_next = acts[t], ys[t], zs[t], zs[t + 1]
        a[:, :3 * n].addmm_(y, ws_t)
        gates = a[:, n:3 * n].sigmoid_()
        if dt != 1.0:
            gates.mul_(dt)
        hz = a[:, :n].tanh_()
        torch.lerp(z, hz, a[:, n:2 * n], out=z_next)
        hy = a[:, 3 * n:].addmm_(z_next, wy_t).tanh_()
        torch.lerp(y, hy, a[:, 2 * n:3 * n], out=ys[t + 1])


def _backward_loop(acts: Tensor, ys: Tensor, zs: Tensor, gy: Tensor, gz: Tensor,
                   direct: Tensor | None, ws: Tensor, wy: Tensor, dt: float
                   ) -> tuple[Tensor, Tensor]:
    """The backward time loop, in place. ``acts`` (T, B, 4n) holds the gates
    ``[tanh(a_z), Δt_n, Δt̄_n, tanh(q)]`` of :func:`_forward_loop` on entry and the gradients of
    the pre-activations ``[a_z, a_1, a_2, q]`` on exit; ``ys``, ``zs`` are the states
    (T + 1, B, n), ``gy`` (direct part included) and ``gz`` the gradients of ``y_T`` and ``z_T``
    (``gz`` is overwritten), ``direct`` the gradients of every output ``y_t`` (or None),
    ``ws = [W_z; W_1; W_2]``. Returns the gradients of ``y_0`` and ``z_0``. The C++
    ``backward_loop`` computes the same per-step values (its element-wise part as one fused
    pass over the step's gates)."""
    batch, n = gy.shape
    buffers = (torch.empty_like(gy), torch.empty_like(gy))
    for t in range(acts.shape[0] - 1, -1, -1):
        m = acts[t]
        hz, d1, d2, hy = m.split(n, dim=1)
        if t > 0 and direct is not None:  # g_y (1 - Δt̄) + dL/dy_{t-1}
            nxt = torch.addcmul(direct[t - 1], gy, 1.0 - d2, out=buffers[t % 2])
        else:
            nxt = torch.mul(gy, 1.0 - d2, out=buffers[t % 2])
        g_a2 = gy * (hy - ys[t]) * d2 * (1.0 - d2 / dt)
        hy.copy_(gy * d2 * (1.0 - hy * hy))  # g_q
        d2.copy_(g_a2)
        gz.addmm_(hy, wy)
        g_a1 = gz * (hz - zs[t]) * d1 * (1.0 - d1 / dt)
        hz.copy_(gz * d1 * (1.0 - hz * hz))  # g_{a_z}
        gz.mul_(1.0 - d1)
        d1.copy_(g_a1)
        gy = nxt.addmm_(m[:, :3 * n], ws)
    return gy, gz


def _time_loops(hidden: int, *tensors: Tensor) -> Loops | None:
    """The C++ ``(forward, backward)`` loops for ``tensors``: the hand-fused kernels or the
    ATen loops (:func:`signalprop.nn.lem_bptt_native.time_loops`, by ``hidden``) for plain CPU
    float32/float64 tensors, not wrapped by a ``torch.func`` transform (the loops read their
    memory); None for the Python loops (always while ``torch.compile`` traces)."""
    if torch.compiler.is_compiling():
        return None
    for t in tensors:
        if (t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64)
                or torch._C._functorch.is_functorch_wrapped_tensor(t)):
            return None
    return time_loops(hidden, *tensors)


def _kernel_order(rows: Tensor, n: int) -> Tensor:
    """The ``4n`` rows of an input map (or its bias) from ``LEMCell.step``'s block order
    ``[1, 2, y, z]`` to the loops' ``[z, 1, 2, y]`` (differentiable; small)."""
    return torch.cat([rows[3 * n:], rows[:3 * n]])


def _kernel_inputs(w_in: Tensor, b_in: Tensor, bs: Tensor, by: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """The input map ``w_in`` and the sum of all biases in the loops' row order (under
    autograd where the parameters need gradients)."""
    n = by.shape[0]
    bias = b_in + torch.cat([bs[:2 * n], by, bs[2 * n:]])  # [b_1, b_2, b_y, b_z]
    return _kernel_order(w_in, n), _kernel_order(bias, n)


def lem_recurrence(x2d: Tensor, w_in: Tensor, b_in: Tensor, y0: Tensor, z0: Tensor,
                   ws: Tensor, bs: Tensor, wy: Tensor, by: Tensor, dt: float
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Every ``y_t`` (T, B, n), ``y_T`` and ``z_T`` by :class:`_LEMBPTT` from the time-major
    inputs ``x2d`` (T B, input), the input maps ``w_in`` (4n, input) and ``b_in`` in
    ``LEMCell.step``'s order, ``y_0``, ``z_0`` (B, n), the state maps ``ws`` (3n, n), ``bs``
    and ``z_to_y``'s ``wy``, ``by``. The biases are summed and the rows reordered under
    autograd (small tensors), so that the Function's input projection is one GEMM into its
    gate buffer and its gradient the buffer itself, without copies."""
    output, y, z, _, _, _ = _LEMBPTT.apply(x2d, *_kernel_inputs(w_in, b_in, bs, by), y0, z0,
                                           ws, wy, dt)
    return output, y, z


def _run_forward(x2d: Tensor, w_k: Tensor, b_k: Tensor, y0: Tensor, z0: Tensor, ws: Tensor,
                 wy: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """States ``ys``, ``zs`` (T + 1, B, n) and the gates (T, B, 4n, a reusable buffer) of
    :func:`_forward_loop`, from the inputs ``x2d`` (T B, input) and the input map ``w_k``,
    ``b_k`` in the loops' order ``[z, 1, 2, y]`` (all biases included)."""
    batch, n = y0.shape
    steps = x2d.shape[0] // batch
    acts = reusable_buffers.take_buffer(x2d, (steps, batch, 4 * n))
    loops = _time_loops(n, x2d, y0, z0, ws, wy)
    ws_r = ws.roll(n, 0)  # [W_z; W_1; W_2]
    scale = _input_scale(w_k, n, loops is not None)
    if loops is not None:
        ws_r[:n] *= 2.0
    torch.addmm(b_k * scale, x2d, (w_k * scale[:, None]).t(), out=acts.view(-1, 4 * n))
    ys = x2d.new_empty(steps + 1, batch, n)
    zs = x2d.new_empty(steps + 1, batch, n)
    if loops is not None:
        advise_huge_pages(ys)
        advise_huge_pages(zs)
    ys[0], zs[0] = y0, z0
    if loops is None:
        _forward_loop(acts, ys, zs, ws_r.t(), wy.t(), dt)
    else:
        loops.forward(acts, ys, zs, ws_r.t(), 2.0 * wy.t(), dt)
    return ys, zs, acts


def _input_scale(w_k: Tensor, n: int, native: bool) -> Tensor:
    """Factors (4n) of the gate buffer's input rows: the C++ loops take ``tanh(x)`` as
    ``2 sigmoid(2 x) - 1`` with the factor 2 folded into the inputs of ``a_z`` and ``q`` (and
    into ``W_z``, ``W_y``); the Python loops take the inputs as they are."""
    scale = torch.ones(4, 1, dtype=w_k.dtype, device=w_k.device)
    if native:
        scale[::3] = 2.0  # a_z and q
    return scale.expand(4, n).reshape(4 * n)


class _LEMBPTT(torch.autograd.Function):
    """LEM's recurrence with a hand-written backward through time (module docstring).

    Inputs: the time-major inputs ``x2d`` (T B, input), the input map's weight (4n, input) and
    bias (4n, every bias of the step summed) in the loops' row order ``[z, 1, 2, y]``, ``y_0``,
    ``z_0`` (B, n), the state maps' weight (3n, n), ``z_to_y``'s weight (n, n) and ``Δt``
    (:func:`lem_recurrence` builds them from the module's parameters). Outputs: every ``y_t``
    (T, B, n), copies of ``y_T`` and ``z_T``, and (not differentiable) the saved states and
    gates. Backward overwrites the gates with the pre-activations' gradients (recomputing them
    if it runs a second time), takes every gradient from that buffer and hands it back for the
    next forward.
    """

    @staticmethod
    def forward(x2d, w_k, b_k, y0, z0, ws, wy, dt):  # type: ignore[override]
        with torch.no_grad():
            ys, zs, gates = _run_forward(x2d, w_k, b_k, y0, z0, ws, wy, dt)
        return ys[1:], ys[-1].clone(), zs[-1].clone(), ys, zs, gates

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x2d, w_k, b_k, y0, z0, ws, wy, dt = inputs
        _, _, _, ys, zs, gates = output
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(ys, zs, gates)
        ctx.save_for_backward(x2d, w_k, b_k, ws, wy, ys, zs)
        ctx.gates = gates  # overwritten by backward; recomputed if backward runs again
        ctx.dt = dt
        ctx.device_type = x2d.device.type

    @staticmethod
    def vmap(info, in_dims, *args):  # type: ignore[override]
        raise ConfigError("LEM's hand-written BPTT does not support torch.func.vmap; LEM runs "
                          "its autograd loop under it, so call the module rather than "
                          "_LEMBPTT.apply")

    @staticmethod
    def backward(ctx, grad_out, grad_y, grad_z, *unused):  # type: ignore[override]
        x2d, w_k, b_k, ws, wy, ys, zs = ctx.saved_tensors
        dt = ctx.dt
        steps, batch, n = ys[1:].shape
        need = ctx.needs_input_grad
        acts, ctx.gates = ctx.gates, None
        with torch.no_grad(), autocast_off(ctx.device_type):
            if acts is None:  # a second backward (retain_graph): rebuild the overwritten gates
                acts = _run_forward(x2d, w_k, b_k, ys[0], zs[0], ws, wy, dt)[2]
            direct = None if grad_out is None else grad_out.contiguous()
            gy = (torch.zeros_like(ys[0]) if grad_y is None
                  else grad_y.clone(memory_format=torch.contiguous_format))
            if direct is not None:
                gy.add_(direct[-1])
            gz = (torch.zeros_like(zs[0]) if grad_z is None
                  else grad_z.clone(memory_format=torch.contiguous_format))
            loops = _time_loops(n, acts, ys, zs, gy, gz, ws, wy,
                                *(() if direct is None else (direct,)))
            args = (acts, ys, zs, gy, gz, direct, ws.roll(n, 0).contiguous(), wy.contiguous(),
                    dt)
            if loops is not None and loops.backward_grads is not None:
                gy, gz, grads = _fused_backward(loops, args, x2d, w_k, need)
            else:
                loop = _backward_loop if loops is None else loops.backward
                gy, gz = loop(*args)
                grads = _parameter_grads(acts.view(steps * batch, 4 * n), x2d, w_k, ys, zs,
                                         need)
        reusable_buffers.give_back(acts)
        return (*grads[:3], gy if need[3] else None, gz if need[4] else None, *grads[3:], None)


def _fused_backward(loops: Loops, args: tuple, x2d: Tensor, w_k: Tensor,
                    need: tuple[bool, ...]) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
    """The fused backward kernel, which also accumulates the weight gradients while each
    step's gradients are in cache: ``dL/dy_0``, ``dL/dz_0`` and the gradients of ``x2d``,
    ``w_k``, ``b_k``, ``ws`` and ``wy`` (``dL/dx`` a GEMM over the gradient buffer after the
    loop)."""
    acts, ys = args[0], args[1]
    n = ys.shape[2]
    x = x2d.contiguous()
    acc_ws, acc_wy = ys.new_zeros(3 * n, n), ys.new_zeros(n, n)
    acc_xg = ys.new_zeros(x.shape[1] + 1, 4 * n)  # [x, 1]^T g
    gy, gz = loops.backward_grads(*args, x, acc_ws, acc_wy, acc_xg)
    grad_x = acts.view(-1, 4 * n) @ w_k if need[0] else None
    return gy, gz, (grad_x, acc_xg[:-1].t(), acc_xg[-1], acc_ws.roll(-n, 0), acc_wy)


def _parameter_grads(g: Tensor, x2d: Tensor, w_k: Tensor, ys: Tensor, zs: Tensor,
                     need: tuple[bool, ...]) -> tuple[Tensor | None, ...]:
    """The gradients of ``x2d``, ``w_k``, ``b_k``, ``ws`` and ``wy`` from the pre-activations'
    gradients ``g`` (T B, 4n, order ``[a_z, a_1, a_2, q]``), each one GEMM or sum over all
    steps. The products over T B rows are taken with the long dimension inside (``(x^T g)^T``
    rather than ``g^T x``), the order BLAS runs fastest here."""
    n = ys.shape[2]
    g_s, g_q = g[:, :3 * n], g[:, 3 * n:]
    grad_x = g @ w_k if need[0] else None
    grad_w = (x2d.t() @ g).t() if need[1] else None
    grad_b = g.sum(0) if need[2] else None
    grad_ws = (ys[:-1].reshape(-1, n).t() @ g_s).t().roll(-n, 0) if need[5] else None
    grad_wy = (zs[1:].reshape(-1, n).t() @ g_q).t() if need[6] else None
    return grad_x, grad_w, grad_b, grad_ws, grad_wy


class LEMCell(nn.Module):
    """One LEM step ``(y, z) -> (y', z')`` (equations in the module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.input_size = require_int("LEMCell", "input_size", input_size)
        self.hidden_size = require_int("LEMCell", "hidden_size", hidden_size)
        if not (isinstance(dt, int | float) and 0 < dt <= 1):
            raise ConfigError(f"LEMCell dt must be in (0, 1], got {dt!r}")
        self.dt = float(dt)
        factory = {"device": device, "dtype": dtype}
        self.input_maps = nn.Linear(input_size, 4 * hidden_size, **factory)
        self.state_maps = nn.Linear(hidden_size, 3 * hidden_size, **factory)
        self.z_to_y = nn.Linear(hidden_size, hidden_size, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, dt={self.dt:g}"

    def step(self, projected: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """One step from the input's projection ``input_maps(u_n)`` (B, 4n)."""
        u_dt, u_dt_bar, u_y, u_z = projected.chunk(4, dim=-1)
        s_dt, s_dt_bar, s_z = self.state_maps(y).chunk(3, dim=-1)
        dt = self.dt * torch.sigmoid(u_dt + s_dt)
        dt_bar = self.dt * torch.sigmoid(u_dt_bar + s_dt_bar)
        z = torch.lerp(z, torch.tanh(u_z + s_z), dt)
        y = torch.lerp(y, torch.tanh(self.z_to_y(z) + u_y), dt_bar)
        return y, z

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        """``(y', z')`` from ``x`` (B, input_size) and ``(y, z)`` (zeros if None); float32
        under autocast, like the sequence layer."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            with autocast_off(device_type):
                x, y, z = float32_inputs(device_type, x, *state)
                return self.step(self.input_maps(x), y, z)
        return self.step(self.input_maps(x), *state)


class LEM(CellLayer):
    """A single-layer LEM over a sequence, with the ``torch.nn.LSTM`` calling convention.

    ``forward(input, (y0, z0)=None) -> (output, (y_n, z_n))``: input ``(B, T, input_size)``
    when ``batch_first`` (default) else ``(T, B, input_size)``; ``output`` holds every ``y_t``;
    ``y0, z0, y_n, z_n`` have shape ``(1, B, hidden_size)``. The input maps of all steps are one
    matrix product before the loop; the recurrence then runs in the hand-written BPTT Function
    (``impl="bptt"``, default; C++ time loops where they build) or the plain autograd loop
    (``impl="loop"``), see the module docstring. Under autocast the recurrence runs in float32
    (see :mod:`signalprop.nn.precision`). Works with
    :class:`~signalprop.nn.readout.LastStepClassifier`.
    """

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0,
                 batch_first: bool = True, impl: str = "bptt",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ConfigError(f"LEM impl must be one of {IMPLS}, got {impl!r}")
        self.cell = LEMCell(input_size, hidden_size, dt, device=device, dtype=dtype)
        self.batch_first = bool(batch_first)
        self.impl = impl

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl!r}"

    def forward(self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if input.dim() != 3:
            raise ValueError(f"LEM expects a 3-d input, got shape {tuple(input.shape)}")
        device_type = input.device.type
        if torch.is_autocast_enabled(device_type):  # the recurrence runs in float32
            with autocast_off(device_type):
                inputs = float32_inputs(device_type, input, *(state or ()))
                return self._run(inputs[0], tuple(inputs[1:]) if state is not None else None)
        return self._run(input, state)

    def _run(self, input: Tensor, state: tuple[Tensor, ...] | None
             ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        time_major = input.transpose(0, 1) if self.batch_first else input
        steps, batch, _ = time_major.shape
        n = self.hidden_size
        if state is None:
            y, z = time_major.new_zeros(batch, n), time_major.new_zeros(batch, n)
        else:
            y0, z0 = state
            for name, s in (("y0", y0), ("z0", z0)):
                if s.shape != (1, batch, n):
                    raise ValueError(f"{name} must have shape (1, {batch}, {n}), got "
                                     f"{tuple(s.shape)}")
            y, z = y0[0], z0[0]
        cell = self.cell
        maps = cell.input_maps
        x2d = time_major.reshape(steps * batch, -1)
        if self.impl == "bptt" and steps > 0 and only_grad_transforms():
            output, y, z = self._bptt(x2d, y, z)
            if self.batch_first:
                output = output.transpose(0, 1)
            return output, (y.unsqueeze(0), z.unsqueeze(0))
        # the input maps of all steps as one 2-d addmm with a row-major W^T, so that autograd
        # computes the weight gradient as x^T g (a 4n-wide GEMM), not as (g^T x)^T: with two
        # input features the latter is a 2-wide GEMM over T B rows, several times slower
        projected = torch.addmm(maps.bias, x2d, maps.weight.t().contiguous()).view(
            steps, batch, 4 * n)
        outputs = []
        for p_t in projected.unbind(0):
            y, z = self.cell.step(p_t, y, z)
            outputs.append(y)
        output = torch.stack(outputs) if outputs else time_major.new_zeros(0, batch, n)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (y.unsqueeze(0), z.unsqueeze(0))

    def _bptt(self, x2d: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every ``y_t`` (T, B, n), ``y_T`` and ``z_T`` by :func:`lem_recurrence` (or the
        forward alone where nothing needs a gradient)."""
        cell = self.cell
        args = (x2d.contiguous(), cell.input_maps.weight, cell.input_maps.bias, y.contiguous(),
                z.contiguous(), cell.state_maps.weight, cell.state_maps.bias,
                cell.z_to_y.weight, cell.z_to_y.bias)
        if torch.is_grad_enabled() and any(t.requires_grad for t in args):
            return lem_recurrence(*args, cell.dt)
        with torch.no_grad():
            x, w_in, b_in, y0, z0, ws, bs, wy, by = args
            ys, zs, gates = _run_forward(x, *_kernel_inputs(w_in, b_in, bs, by), y0, z0, ws, wy,
                                         cell.dt)
        reusable_buffers.give_back(gates)
        return ys[1:], ys[-1], zs[-1]
