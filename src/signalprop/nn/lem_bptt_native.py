"""LEM's two BPTT time loops in C++, built on first use (like the filter RNN's,
:mod:`signalprop.nn.filter_bptt_native`, whose build, cache, ``SIGNALPROP_NATIVE_BPTT`` switch
and Python fallback this module shares).

Both loops make the same GEMMs per step as the Python loops of :mod:`signalprop.nn.lem`
(``_forward_loop`` and ``_backward_loop``, where the buffer layouts are described) and do the
element-wise rest in fused passes over the step's ``B x 4n`` buffer row instead of many small
ATen calls: forward, per half-step one GEMM, one ``sigmoid_`` over the block of gates (``tanh``
as ``2 sigmoid(2 x) - 1``, the 2 folded into the weights and inputs) and one pass for the
``tanh`` and the lerp; backward, per half-step one GEMM and one pass (products of the saved
gates and the adjoint, no transcendental functions). CPU and float32/float64 tensors only
(elsewhere the Python loops run). ``tests/test_lem_bptt_native.py``
checks outputs and every gradient against the Python loops and the autograd loop in float64.
:func:`native_loops` returns None (and the Python loops run) where the build fails, with
``SIGNALPROP_NATIVE_BPTT=0``, or while ``torch.compile`` traces.
"""

from __future__ import annotations

from types import ModuleType

from signalprop.nn.filter_bptt_native import load_native

NAME = "signalprop_lem_bptt_v3"

SOURCE = r"""
#include <torch/extension.h>
#include <vector>

// acts (T, B, 4n) holds [2 (u_z + b_z), u_1 + b_1, u_2 + b_2, 2 (u_y + b_y)] on entry and
// [tanh(a_z), dt, dt_bar, tanh(q)] on exit; ys, zs (T + 1, B, n) hold y_0, z_0 in row 0.
// ws_t = [2 W_z; W_1; W_2]^T (n, 3n), wy_t = 2 W_y^T: every gate is one sigmoid_ over a block
// and tanh(x) = 2 sigmoid(2 x) - 1 is finished in the fused pass that also does the lerp.
template <typename scalar_t>
void forward_steps(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor ws_t,
                   at::Tensor wy_t, double dt) {
  const int64_t steps = acts.size(0);
  const int64_t batch = ys.size(1);
  const int64_t n = ys.size(2);
  const scalar_t step = scalar_t(dt);
  for (int64_t t = 0; t < steps; ++t) {
    at::Tensor a = acts.select(0, t);
    at::Tensor z_next = zs.select(0, t + 1);
    a.narrow(1, 0, 3 * n).addmm_(ys.select(0, t), ws_t).sigmoid_();
    scalar_t* rows = a.data_ptr<scalar_t>();
    const scalar_t* z = zs.select(0, t).data_ptr<scalar_t>();
    scalar_t* zn = z_next.data_ptr<scalar_t>();
    for (int64_t b = 0; b < batch; ++b) {
      scalar_t* hz = rows + b * 4 * n;
      scalar_t* d1 = hz + n;
      scalar_t* d2 = d1 + n;
      const scalar_t* zp = z + b * n;
      scalar_t* zb = zn + b * n;
      for (int64_t j = 0; j < n; ++j) {
        const scalar_t h = scalar_t(2) * hz[j] - scalar_t(1);
        const scalar_t d = step * d1[j];
        hz[j] = h;
        d1[j] = d;
        d2[j] *= step;
        zb[j] = zp[j] + d * (h - zp[j]);
      }
    }
    a.narrow(1, 3 * n, n).addmm_(z_next, wy_t).sigmoid_();
    const scalar_t* y = ys.select(0, t).data_ptr<scalar_t>();
    scalar_t* yn = ys.select(0, t + 1).data_ptr<scalar_t>();
    for (int64_t b = 0; b < batch; ++b) {
      scalar_t* hy = rows + b * 4 * n + 3 * n;
      const scalar_t* d2 = hy - n;
      const scalar_t* yp = y + b * n;
      scalar_t* yb = yn + b * n;
      for (int64_t j = 0; j < n; ++j) {
        const scalar_t h = scalar_t(2) * hy[j] - scalar_t(1);
        hy[j] = h;
        yb[j] = yp[j] + d2[j] * (h - yp[j]);
      }
    }
  }
}

void forward_loop(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor ws_t,
                  at::Tensor wy_t, double dt) {
  TORCH_CHECK(acts.is_contiguous() && ys.is_contiguous() && zs.is_contiguous(),
              "LEM forward_loop needs contiguous tensors");
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lem_forward_loop", [&] {
    forward_steps<scalar_t>(acts, ys, zs, ws_t, wy_t, dt);
  });
}

// The element-wise part of a backward step for the y update, in one pass over the step's
// row m = [tanh(a_z), dt, dt_bar, tanh(q)]: next = g_y (1 - dt_bar) (+ direct), and
// dt_bar, tanh(q) are overwritten by g_{a_2}, g_q.
template <typename scalar_t>
void y_part(scalar_t* m, const scalar_t* y_prev, const scalar_t* gy, const scalar_t* direct,
            scalar_t* next, int64_t batch, int64_t n, scalar_t inv_dt) {
  for (int64_t b = 0; b < batch; ++b) {
    scalar_t* d2 = m + b * 4 * n + 2 * n;
    scalar_t* hy = d2 + n;
    const scalar_t* yp = y_prev + b * n;
    const scalar_t* g = gy + b * n;
    scalar_t* nx = next + b * n;
    for (int64_t j = 0; j < n; ++j) {
      const scalar_t d = d2[j], h = hy[j], gj = g[j];
      nx[j] = gj * (scalar_t(1) - d);
      d2[j] = gj * (h - yp[j]) * d * (scalar_t(1) - d * inv_dt);
      hy[j] = gj * d * (scalar_t(1) - h * h);
    }
    if (direct != nullptr) {
      const scalar_t* dr = direct + b * n;
      for (int64_t j = 0; j < n; ++j) {
        nx[j] += dr[j];
      }
    }
  }
}

// The same for the z update: tanh(a_z), dt are overwritten by g_{a_z}, g_{a_1}, and
// g_z by g_z (1 - dt).
template <typename scalar_t>
void z_part(scalar_t* m, const scalar_t* z_prev, scalar_t* gz, int64_t batch, int64_t n,
            scalar_t inv_dt) {
  for (int64_t b = 0; b < batch; ++b) {
    scalar_t* hz = m + b * 4 * n;
    scalar_t* d1 = hz + n;
    const scalar_t* zp = z_prev + b * n;
    scalar_t* g = gz + b * n;
    for (int64_t j = 0; j < n; ++j) {
      const scalar_t d = d1[j], h = hz[j], gj = g[j];
      hz[j] = gj * d * (scalar_t(1) - h * h);
      d1[j] = gj * (h - zp[j]) * d * (scalar_t(1) - d * inv_dt);
      g[j] = gj * (scalar_t(1) - d);
    }
  }
}

template <typename scalar_t>
at::Tensor backward_steps(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor gy,
                          at::Tensor gz, const c10::optional<at::Tensor>& direct,
                          at::Tensor ws, at::Tensor wy, double dt) {
  const int64_t steps = acts.size(0);
  const int64_t batch = gy.size(0);
  const int64_t n = gy.size(1);
  const scalar_t inv_dt = scalar_t(1.0 / dt);
  at::Tensor buffers[2] = {at::empty_like(gy), at::empty_like(gy)};
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::Tensor m = acts.select(0, t);
    at::Tensor next = buffers[t % 2];
    const scalar_t* dr = (t > 0 && direct.has_value())
        ? direct->select(0, t - 1).data_ptr<scalar_t>() : nullptr;
    y_part<scalar_t>(m.data_ptr<scalar_t>(), ys.select(0, t).data_ptr<scalar_t>(),
                     gy.data_ptr<scalar_t>(), dr, next.data_ptr<scalar_t>(), batch, n, inv_dt);
    gz.addmm_(m.narrow(1, 3 * n, n), wy);
    z_part<scalar_t>(m.data_ptr<scalar_t>(), zs.select(0, t).data_ptr<scalar_t>(),
                     gz.data_ptr<scalar_t>(), batch, n, inv_dt);
    next.addmm_(m.narrow(1, 0, 3 * n), ws);
    gy = next;
  }
  return gy;
}

// acts (T, B, 4n) holds the gates [tanh(a_z), dt, dt_bar, tanh(q)] on entry and the
// gradients of the pre-activations [a_z, a_1, a_2, q] on exit; ys, zs (T + 1, B, n) are the
// states; gy (direct part included), gz the gradients of y_T, z_T (gz is overwritten).
// Returns dL/dy_0, dL/dz_0. CPU, float32/float64, every tensor contiguous.
std::vector<at::Tensor> backward_loop(at::Tensor acts, at::Tensor ys, at::Tensor zs,
                                      at::Tensor gy, at::Tensor gz,
                                      c10::optional<at::Tensor> direct, at::Tensor ws,
                                      at::Tensor wy, double dt) {
  TORCH_CHECK(acts.is_contiguous() && ys.is_contiguous() && zs.is_contiguous()
              && gy.is_contiguous() && gz.is_contiguous()
              && (!direct.has_value() || direct->is_contiguous()),
              "LEM backward_loop needs contiguous tensors");
  at::Tensor g0;
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lem_backward_loop", [&] {
    g0 = backward_steps<scalar_t>(acts, ys, zs, gy, gz, direct, ws, wy, dt);
  });
  return {g0, gz};
}
"""


def native_loops() -> ModuleType | None:
    """The compiled LEM loops, building them on the first call; None where they cannot run."""
    return load_native(NAME, SOURCE, ("forward_loop", "backward_loop"), "LEM's C++ BPTT loops")
