"""Compiled loops for the additive-filter RNN's BPTT (numba), for CPU tensors.

The recurrence of :mod:`signalprop.nn.orthogonal_rnn` (Ceni, arXiv 2210.01245)::

    z_t = u_t + W h_{t-1},   p_t = phi(z_t),   h_t = a O h_{t-1} + b p_t

and its backward through time::

    g_z,t = b g_t phi'(z_t),   g_{t-1} = a O^T g_t + W^T g_z,t + dL/dh_{t-1} (direct)

cost two small matrix products per step, and at hidden sizes of 32-128 a step done with torch
ops is mostly dispatch overhead (about ten ops per step, each a few microseconds). Here each
direction is one compiled loop over time: per step one BLAS product of the state with the fused
matrix ``[W^T | a O^T]`` (forward) or of ``[g | g_z]`` with ``[a O; W]`` (backward), and the
elementwise work in the same loop. The weight gradients are left to the caller as single
products over all steps. The torch-op loop stays the reference and the fallback (numba absent,
another device, autocast); both are tested against each other in float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:  # numba is a dependency, but the module degrades to the torch loop without it
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

AVAILABLE = numba is not None


def _jit(fn: Any) -> Any:
    return numba.njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


@_jit
def forward_loop(u: np.ndarray, h0: np.ndarray, fused: np.ndarray, b: float, relu: bool,
                 states: np.ndarray, acts: np.ndarray) -> None:  # pragma: no cover - compiled
    """Fill ``states`` (T + 1, B, n; ``h_0`` first) and ``acts`` (T, B, n; ``phi(z_t)``) from
    the input projections ``u`` (T, B, n) and ``fused = [W^T | a O^T]`` (n, 2 n)."""
    steps, batch, n = u.shape
    states[0] = h0
    mixed = np.empty((batch, 2 * n), dtype=u.dtype)
    for t in range(steps):
        np.dot(states[t], fused, mixed)
        for i in range(batch):
            for j in range(n):
                z = u[t, i, j] + mixed[i, j]
                if relu:
                    p = z if z > 0 else 0.0
                else:
                    p = math.tanh(z)
                acts[t, i, j] = p
                states[t + 1, i, j] = mixed[i, n + j] + b * p


@_jit
def backward_loop(direct: np.ndarray, has_direct: bool, g_last: np.ndarray, acts: np.ndarray,
                  stacked: np.ndarray, b: float, relu: bool,
                  grad_z: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Fill ``grad_z`` (T, B, n) with ``dL/dz_t`` and return ``dL/dh_0``.

    ``direct`` (T, B, n) holds ``dL/dh_t`` from outside the recurrence (ignored unless
    ``has_direct``), ``g_last`` the gradient of the returned last state, ``acts`` the forward's
    ``phi(z_t)`` and ``stacked = [a O; W]`` (2 n, n).
    """
    steps, batch, n = acts.shape
    g = g_last.copy()
    if has_direct:
        g += direct[steps - 1]
    both = np.empty((batch, 2 * n), dtype=acts.dtype)
    nxt = np.empty((batch, n), dtype=acts.dtype)
    for t in range(steps - 1, -1, -1):
        for i in range(batch):
            for j in range(n):
                p = acts[t, i, j]
                if relu:
                    slope = 1.0 if p > 0 else 0.0
                else:
                    slope = 1.0 - p * p
                gz = b * g[i, j] * slope
                grad_z[t, i, j] = gz
                both[i, j] = g[i, j]
                both[i, n + j] = gz
        np.dot(both, stacked, nxt)
        if has_direct and t > 0:
            for i in range(batch):
                for j in range(n):
                    g[i, j] = nxt[i, j] + direct[t - 1, i, j]
        else:
            g[:, :] = nxt
    return g


def usable(*tensors: Any) -> bool:
    """Whether the compiled loops can run on these tensors: numba present, plain CPU float32
    or float64 tensors (no torch.func wrapper, no compilation in progress)."""
    import torch

    if not AVAILABLE or torch.compiler.is_compiling():
        return False
    for t in tensors:
        if t is None:
            continue
        if (t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64)
                or torch._C._functorch.is_functorch_wrapped_tensor(t)):
            return False
    return True


def _array(t: Any) -> np.ndarray:
    return t.detach().contiguous().numpy()


class KernelBPTT:
    """``apply(x, h0, weight_ih, bias, weight, filt, a, b, act) -> (states, h_T)`` with the
    compiled loops (a ``torch.autograd.Function`` built on first use)."""

    _function: Any = None

    @classmethod
    def apply(cls, *args: Any) -> Any:
        if cls._function is None:
            cls._function = _make_function()
        return cls._function.apply(*args)


def _make_function() -> Any:
    import torch

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(x, h0, weight_ih, bias, weight, filt, a, b, act):  # type: ignore[override]
            with torch.no_grad():
                steps, batch, _ = x.shape
                n = weight.shape[0]
                u = torch.nn.functional.linear(x, weight_ih, bias).contiguous()
                fused = torch.cat([weight.t(), a * filt.t()], dim=1).contiguous()
                states = x.new_empty(steps + 1, batch, n)
                acts = x.new_empty(steps, batch, n)
                forward_loop(_array(u), _array(h0), _array(fused), float(b), act == "relu",
                             states.numpy(), acts.numpy())
            return states[1:], states[-1].clone(), acts, states

        @staticmethod
        def setup_context(ctx, inputs, output):  # type: ignore[override]
            x, h0, weight_ih, bias, weight, filt, a, b, act = inputs
            _, _, acts, states = output
            ctx.set_materialize_grads(False)
            ctx.mark_non_differentiable(acts, states)
            ctx.save_for_backward(x, weight_ih, bias, weight, filt, states, acts)
            ctx.config = (a, b, act)

        @staticmethod
        def backward(ctx, grad_states, grad_last, grad_acts, grad_all):  # type: ignore[override]
            x, weight_ih, bias, weight, filt, states, acts = ctx.saved_tensors
            a, b, act = ctx.config
            steps, batch, n = acts.shape
            with torch.no_grad():
                stacked = torch.cat([a * filt, weight], dim=0).contiguous()
                g_last = (torch.zeros(batch, n, dtype=acts.dtype) if grad_last is None
                          else grad_last.contiguous())
                has_direct = grad_states is not None
                direct = (grad_states.contiguous() if has_direct
                          else acts.new_empty(0, batch, n))
                grad_z = torch.empty_like(acts)
                g0 = backward_loop(_array(direct), has_direct, _array(g_last), acts.numpy(),
                                   _array(stacked), float(b), act == "relu", grad_z.numpy())
                gz2d = grad_z.view(-1, n)
                need = ctx.needs_input_grad
                grad_weight = gz2d.t() @ states[:-1].reshape(-1, n) if need[4] else None
                grad_ih = gz2d.t() @ x.reshape(steps * batch, -1) if need[2] else None
                grad_bias = gz2d.sum(0) if bias is not None and need[3] else None
                grad_x = (gz2d @ weight_ih).view(x.shape) if need[0] else None
                grad_h0 = torch.from_numpy(g0) if need[1] else None
            return grad_x, grad_h0, grad_ih, grad_bias, grad_weight, None, None, None, None

    return _Function
