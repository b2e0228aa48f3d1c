"""LEM's two BPTT time loops in C++, built on first use (like the filter RNN's,
:mod:`signalprop.nn.filter_bptt_native`, whose build, cache, ``SIGNALPROP_NATIVE_BPTT`` switch
and Python fallback this module shares).

The loops make the same ATen calls as the Python loops of :mod:`signalprop.nn.lem`
(``_forward_loop`` and ``_backward_loop``, where the buffer layouts are described), from C++, so a
step costs the calls without the interpreter between them. ``tests/test_lem_bptt_native.py``
checks outputs and every gradient against the Python loops and the autograd loop in float64.
:func:`native_loops` returns None (and the Python loops run) where the build fails, with
``SIGNALPROP_NATIVE_BPTT=0``, or while ``torch.compile`` traces.
"""

from __future__ import annotations

from types import ModuleType

from signalprop.nn.filter_bptt_native import load_native

NAME = "signalprop_lem_bptt_v1"

SOURCE = r"""
#include <torch/extension.h>
#include <vector>

// acts (T, B, 4n) holds [u_z + b_z, u_1 + b_1, u_2 + b_2, u_y + b_y] on entry and
// [tanh(a_z), dt, dt_bar, tanh(q)] on exit; ys, zs (T + 1, B, n) hold y_0, z_0 in row 0.
// ws_t = [W_z; W_1; W_2]^T (n, 3n), wy_t = W_y^T.
void forward_loop(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor ws_t,
                  at::Tensor wy_t, double dt) {
  const int64_t steps = acts.size(0);
  const int64_t n = ys.size(2);
  for (int64_t t = 0; t < steps; ++t) {
    at::Tensor a = acts.select(0, t);
    at::Tensor y = ys.select(0, t);
    at::Tensor z = zs.select(0, t);
    at::Tensor z_next = zs.select(0, t + 1);
    a.narrow(1, 0, 3 * n).addmm_(y, ws_t);
    at::Tensor gates = a.narrow(1, n, 2 * n).sigmoid_();
    if (dt != 1.0) {
      gates.mul_(dt);
    }
    at::Tensor hz = a.narrow(1, 0, n).tanh_();
    at::lerp_out(z_next, z, hz, a.narrow(1, n, n));
    at::Tensor hy = a.narrow(1, 3 * n, n).addmm_(z_next, wy_t).tanh_();
    at::Tensor y_next = ys.select(0, t + 1);
    at::lerp_out(y_next, y, hy, a.narrow(1, 2 * n, n));
  }
}

// mult (T, B, 4n) holds the factors [F_z, E_z, E_y, F_y] on entry and the gradients of the
// pre-activations [a_z, a_1, a_2, q] on exit; keep (T, B, 2n) holds [1 - dt, 1 - dt_bar].
// gy, gz hold dL/dy_T (direct part included), dL/dz_T; returns dL/dy_0, dL/dz_0.
std::vector<at::Tensor> backward_loop(at::Tensor mult, at::Tensor keep, at::Tensor gy,
                                      at::Tensor gz, c10::optional<at::Tensor> direct,
                                      at::Tensor ws, at::Tensor wy) {
  const int64_t steps = mult.size(0);
  const int64_t batch = gy.size(0);
  const int64_t n = gy.size(1);
  at::Tensor buffers[2] = {at::empty_like(gy), at::empty_like(gy)};
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::Tensor m = mult.select(0, t);
    at::Tensor k = keep.select(0, t);
    m.narrow(1, 2 * n, 2 * n).view({batch, 2, n}).mul_(gy.unsqueeze(1));
    gz.addmm_(m.narrow(1, 3 * n, n), wy);
    m.narrow(1, 0, 2 * n).view({batch, 2, n}).mul_(gz.unsqueeze(1));
    at::Tensor next = buffers[t % 2];
    if (t > 0 && direct.has_value()) {
      at::addcmul_out(next, direct->select(0, t - 1), gy, k.narrow(1, n, n));
    } else {
      at::mul_out(next, gy, k.narrow(1, n, n));
    }
    next.addmm_(m.narrow(1, 0, 3 * n), ws);
    gz.mul_(k.narrow(1, 0, n));
    gy = next;
  }
  return {gy, gz};
}
"""


def native_loops() -> ModuleType | None:
    """The compiled LEM loops, building them on the first call; None where they cannot run."""
    return load_native(NAME, SOURCE, ("forward_loop", "backward_loop"), "LEM's C++ BPTT loops")
