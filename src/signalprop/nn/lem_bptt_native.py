"""LEM's two BPTT time loops in C++, built on first use (like the filter RNN's,
:mod:`signalprop.nn.filter_bptt_native`, whose build, cache, switches, vector helpers and
Python fallback this module shares).

The recurrence (Rusch et al., ICLR 2022), with input parts ``u`` and biases ``b``::

    Δt_n  = Δt σ(W_1 y_{n-1} + u_1 + b_1),   Δt̄_n = Δt σ(W_2 y_{n-1} + u_2 + b_2),
    z_n   = (1 − Δt_n) z_{n-1} + Δt_n tanh(a_z),   a_z = W_z y_{n-1} + u_z + b_z,
    y_n   = (1 − Δt̄_n) y_{n-1} + Δt̄_n tanh(q),     q = W_y z_n + u_y + b_y.

The buffers are those of the Python loops of :mod:`signalprop.nn.lem` (``_forward_loop`` and
``_backward_loop``, where their layouts are described), with ``tanh(x) = 2 σ(2 x) − 1`` and the
factor 2 folded into ``W_z``, ``W_y`` and the inputs of ``a_z`` and ``q``. Two versions of each
loop share that contract:

* ``forward_loop`` / ``backward_loop`` make the same GEMMs per step as the Python loops and do
  the element-wise rest in fused passes over the step's ``B x 4n`` buffer row: forward, per
  half-step one GEMM, one ``sigmoid_`` over the block of gates and one pass for the ``tanh``
  and the lerp; backward, per half-step one GEMM and one pass (products of the saved gates and
  the adjoint, no transcendental functions);
* ``forward_fused`` / ``backward_fused`` are hand-fused kernels with no ATen call inside the time
  loop: per batch row, one pass over ``y_{n-1}`` accumulates ``y [2 W_z; W_1; W_2]^T`` in
  register-sized column blocks, the three gates and ``z_n`` follow in the same pass, then
  ``z_n (2 W_y^T)``, ``tanh(q)`` and ``y_n``; backward, the ``y`` update's adjoint, ``g_z +=
  g_q W_y`` with the ``z`` update's adjoint, and ``g_{y,n-1} += [g_{a_z}, g_{a_1}, g_{a_2}]
  [W_z; W_1; W_2]``, each one pass. Column blocks are one to four 32-byte vectors, so hidden
  sizes are padded only to the vector width. float32 uses the vectorised ``exp`` of the
  filter's kernels. ``backward_fused_grads`` is ``backward_fused`` that also accumulates the
  gradients of ``[W_z; W_1; W_2]``, ``W_y``, the input map and the biases step by step (small
  register-blocked products over the batch while the step's gradients are in cache), in place
  of GEMMs over all ``T B`` rows after the loop.

:func:`time_loops` picks a pair per call (:func:`loop_kind`): the fused kernels for CPU
float32/float64 tensors with ``hidden <= FUSED_MAX_HIDDEN``, the ATen loops otherwise;
``SIGNALPROP_FUSED_BPTT`` forces (``1``) or forbids (``0``) the fused kernels as for the filter
RNN. ``tests/test_lem_bptt_native.py`` checks outputs and every gradient of both against the
Python loops and the autograd loop in float64. :func:`native_loops` returns None (and the
Python loops run) where the build fails, with ``SIGNALPROP_NATIVE_BPTT=0``, or while
``torch.compile`` traces.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

from torch import Tensor

from signalprop.nn.native_build import FAST_CFLAGS, choose_loops, load_native
from signalprop.nn.native_simd import ENTRY_SOURCE, SIMD_SOURCE

NAME = "signalprop_lem_bptt_v7"
#: Largest hidden size for which :func:`loop_kind` picks the fused kernels by default.
FUSED_MAX_HIDDEN = 56

ATEN_SOURCE = r"""
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

FUSED_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#if defined(__GNUC__)  // GCC and clang: vector extensions; elsewhere the ATen loops run
#define SIGNALPROP_FUSED 1

namespace fused {
""" + SIMD_SOURCE + r"""
}  // namespace fused

namespace lem_fused {

using fused::kVecs;
using fused::load;
using fused::sigmoid;
using fused::splat;
using fused::store;
template <typename T>
using V = fused::V<T>;
template <typename T>
constexpr int64_t kLanes = fused::Simd<T>::kLanes;

// The (rows, groups n) matrix m as a row-major (rows, groups np) copy, each group of n columns
// followed by np - n zero columns.
template <typename T>
std::vector<T> pad_groups(const at::Tensor& m, int64_t groups, int64_t np) {
  const at::Tensor c = m.contiguous();
  const int64_t rows = c.size(0), n = c.size(1) / groups;
  const T* src = c.data_ptr<T>();
  std::vector<T> out(rows * groups * np, T(0));
  for (int64_t r = 0; r < rows * groups; ++r) {
    std::copy(src + r * n, src + (r + 1) * n, out.begin() + r * np);
  }
  return out;
}

// `groups` runs of n values, gs apart, into a scratch of runs np apart, and back.
template <typename T>
void gather_groups(const T* buffer, int64_t gs, T* scratch, int64_t np, int64_t n,
                   int64_t groups) {
  for (int64_t g = 0; g < groups; ++g) {
    std::copy(buffer + g * gs, buffer + g * gs + n, scratch + g * np);
  }
}

template <typename T>
void scatter_groups(T* buffer, int64_t gs, const T* scratch, int64_t np, int64_t n,
                    int64_t groups) {
  for (int64_t g = 0; g < groups; ++g) {
    std::copy(scratch + g * np, scratch + g * np + n, buffer + g * gs);
  }
}

// Calls f(std::integral_constant<int64_t, NV>{}, j0) for the blocks of columns of a row of np
// (a multiple of kLanes) values: kVecs vectors wide, the last one 1 .. kVecs vectors.
template <typename T, typename F>
inline void for_blocks(int64_t np, F&& f) {
  constexpr int64_t L = kLanes<T>;
  int64_t j0 = 0;
  for (; j0 + kVecs * L <= np; j0 += kVecs * L) f(std::integral_constant<int64_t, kVecs>{}, j0);
  static_assert(kVecs == 4, "the remainder blocks below are 1 to 3 vectors");
  switch ((np - j0) / L) {
    case 1: f(std::integral_constant<int64_t, 1>{}, j0); break;
    case 2: f(std::integral_constant<int64_t, 2>{}, j0); break;
    case 3: f(std::integral_constant<int64_t, 3>{}, j0); break;
    default: break;
  }
}

// acc += sum_{i < n} x_i w[i, :] for the NV vectors of columns at w (row stride np), in two
// chains (first and second half of i) so that more FMAs are in flight.
template <typename T, int64_t NV>
inline void accumulate(V<T>* acc, const T* x, const T* w, int64_t n, int64_t np) {
  constexpr int64_t L = kLanes<T>;
  V<T> other[NV] = {};
  const int64_t half = n / 2;
  for (int64_t i = 0; i < half; ++i) {
    const V<T> x0 = splat(x[i]), x1 = splat(x[i + half]);
    const T* w0 = w + i * np;
    const T* w1 = w + (i + half) * np;
    for (int64_t v = 0; v < NV; ++v) {
      acc[v] += x0 * load(w0 + v * L);
      other[v] += x1 * load(w1 + v * L);
    }
  }
  if (n % 2 != 0) {
    const V<T> x0 = splat(x[n - 1]);
    for (int64_t v = 0; v < NV; ++v) acc[v] += x0 * load(w + (n - 1) * np + v * L);
  }
  for (int64_t v = 0; v < NV; ++v) acc[v] += other[v];
}

// One batch row of one forward step. a: the row's four groups (gs apart) [2 (u_z + b_z),
// u_1 + b_1, u_2 + b_2, 2 (u_y + b_y)] -> [tanh(a_z), dt_n, dt_bar_n, tanh(q)]; yp, zp: the
// previous states, yn, zn: the new ones (np values each, n of them used); ws = [2 W_z; W_1;
// W_2]^T as (n, 3 np), wy = 2 W_y^T as (n, np).
template <typename T>
void forward_row(T* a, int64_t gs, const T* yp, const T* zp, T* yn, T* zn, const T* ws,
                 const T* wy, int64_t n, int64_t np, T step) {
  constexpr int64_t L = kLanes<T>;
  for_blocks<T>(np, [&](auto nv, int64_t j0) {
    constexpr int64_t NV = decltype(nv)::value;
    V<T> acc[3][NV] = {};
    for (int64_t i = 0; i < n; ++i) {
      const V<T> yi = splat(yp[i]);
      const T* w = ws + i * 3 * np + j0;
      for (int64_t g = 0; g < 3; ++g) {
        for (int64_t v = 0; v < NV; ++v) acc[g][v] += yi * load(w + g * np + v * L);
      }
    }
    for (int64_t v = 0; v < NV; ++v) {
      const int64_t j = j0 + v * L;
      const V<T> hz = T(2) * sigmoid<T>(acc[0][v] + load(a + j)) - T(1);
      const V<T> d1 = step * sigmoid<T>(acc[1][v] + load(a + gs + j));
      const V<T> d2 = step * sigmoid<T>(acc[2][v] + load(a + 2 * gs + j));
      const V<T> z = load(zp + j);
      store(a + j, hz);
      store(a + gs + j, d1);
      store(a + 2 * gs + j, d2);
      store(zn + j, z + d1 * (hz - z));
    }
  });
  for_blocks<T>(np, [&](auto nv, int64_t j0) {
    constexpr int64_t NV = decltype(nv)::value;
    V<T> acc[NV] = {};
    accumulate<T, NV>(acc, zn, wy + j0, n, np);
    for (int64_t v = 0; v < NV; ++v) {
      const int64_t j = j0 + v * L;
      const V<T> hy = T(2) * sigmoid<T>(acc[v] + load(a + 3 * gs + j)) - T(1);
      const V<T> y = load(yp + j);
      store(a + 3 * gs + j, hy);
      store(yn + j, y + load(a + 2 * gs + j) * (hy - y));
    }
  });
}

// One batch row of one backward step. m: the row's gates (four groups gs apart) [tanh(a_z),
// dt_n, dt_bar_n, tanh(q)] -> the gradients of [a_z, a_1, a_2, q]; yp, zp: y_{n-1}, z_{n-1};
// g: dL/dy_n (+ direct: dL/dy_{n-1} from the output, or null) -> dL/dy_{n-1}, in place;
// gz: dL/dz_n -> dL/dz_{n-1}; ws = [W_z; W_1; W_2] as (3n, np), wy = W_y as (n, np).
template <typename T>
void backward_row(T* m, int64_t gs, const T* yp, const T* zp, T* g, const T* direct, T* gz,
                  const T* ws, const T* wy, int64_t n, int64_t np, T inv_dt) {
  constexpr int64_t L = kLanes<T>;
  const T one = T(1);
  for (int64_t j = 0; j < np; j += L) {  // y update: g_{a_2}, g_q, g (1 - dt_bar) + direct
    const V<T> d = load(m + 2 * gs + j), h = load(m + 3 * gs + j), gj = load(g + j);
    V<T> next = gj * (one - d);
    if (direct != nullptr) next += load(direct + j);
    store(m + 2 * gs + j, gj * (h - load(yp + j)) * d * (one - d * inv_dt));
    store(m + 3 * gs + j, gj * d * (one - h * h));
    store(g + j, next);
  }
  for_blocks<T>(np, [&](auto nv, int64_t i0) {  // g_z += g_q W_y, then the z update
    constexpr int64_t NV = decltype(nv)::value;
    V<T> acc[NV] = {};
    accumulate<T, NV>(acc, m + 3 * gs, wy + i0, n, np);
    for (int64_t v = 0; v < NV; ++v) {
      const int64_t i = i0 + v * L;
      const V<T> gi = load(gz + i) + acc[v];
      const V<T> d = load(m + gs + i), h = load(m + i);
      store(m + i, gi * d * (one - h * h));
      store(m + gs + i, gi * (h - load(zp + i)) * d * (one - d * inv_dt));
      store(gz + i, gi * (one - d));
    }
  });
  for_blocks<T>(np, [&](auto nv, int64_t i0) {  // g += [g_{a_z}, g_{a_1}, g_{a_2}] [W_z; W_1; W_2]
    constexpr int64_t NV = decltype(nv)::value;
    V<T> acc[3][NV] = {};
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t k = 0; k < 3; ++k) {
        const V<T> gk = splat(m[k * gs + j]);
        const T* w = ws + (k * n + j) * np + i0;
        for (int64_t v = 0; v < NV; ++v) acc[k][v] += gk * load(w + v * L);
      }
    }
    for (int64_t v = 0; v < NV; ++v) {
      T* out = g + i0 + v * L;
      store(out, load(out) + acc[0][v] + acc[1][v] + acc[2][v]);
    }
  });
}

// acc (rows, np) += sum_b a[b, k] y[b, :] for the rows k0 .. k0 + R - 1: a has row stride sa,
// y is (batch, np); R rows times NV vectors of accumulators stay in registers over b.
template <typename T, int64_t R>
void outer_rows(T* acc, int64_t k0, const T* a, int64_t sa, const T* y, int64_t batch,
                int64_t np) {
  constexpr int64_t L = kLanes<T>;
  for_blocks<T>(np, [&](auto nv, int64_t j0) {
    constexpr int64_t NV = decltype(nv)::value;
    V<T> c[R][NV];
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t v = 0; v < NV; ++v) c[r][v] = load(acc + (k0 + r) * np + j0 + v * L);
    }
    for (int64_t b = 0; b < batch; ++b) {
      V<T> yv[NV];
      for (int64_t v = 0; v < NV; ++v) yv[v] = load(y + b * np + j0 + v * L);
      for (int64_t r = 0; r < R; ++r) {
        const V<T> ar = splat(a[b * sa + k0 + r]);
        for (int64_t v = 0; v < NV; ++v) c[r][v] += ar * yv[v];
      }
    }
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t v = 0; v < NV; ++v) store(acc + (k0 + r) * np + j0 + v * L, c[r][v]);
    }
  });
}

// acc (rows, np) += a^T y over the batch: a (batch, rows) with row stride sa, y (batch, np).
template <typename T>
void outer_accumulate(T* acc, int64_t rows, const T* a, int64_t sa, const T* y,
                      int64_t batch, int64_t np) {
  int64_t k0 = 0;
  for (; k0 + 3 <= rows; k0 += 3) outer_rows<T, 3>(acc, k0, a, sa, y, batch, np);
  for (; k0 < rows; ++k0) outer_rows<T, 1>(acc, k0, a, sa, y, batch, np);
}

// acc (features + 1, width) += [x, 1]^T g over the batch: x (batch, features), g (batch,
// width) contiguous; the last row of acc sums g.
template <typename T>
void input_accumulate(T* acc, const T* x, int64_t features, const T* g, int64_t batch,
                      int64_t width) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t b = 0; b < batch; ++b) {
    const T* gb = g + b * width;
    for (int64_t f = 0; f <= features; ++f) {
      const T xf = f < features ? x[b * features + f] : T(1);
      const V<T> xv = splat(xf);
      T* out = acc + f * width;
      int64_t j = 0;
      for (; j + L <= width; j += L) store(out + j, load(out + j) + xv * load(gb + j));
      for (; j < width; ++j) out[j] += xf * gb[j];
    }
  }
}

// The weight gradients of one backward step, accumulated over the steps: the (3n, n)
// gradient of [W_z; W_1; W_2] (g_s^T y_{n-1}), the (n, n) one of W_y (g_q^T z_n) and
// [x, 1]^T g for the input map and the biases. np-padded (rows, np) accumulators.
template <typename T>
struct WeightGrads {
  int64_t n, np, features;
  std::vector<T> ws, wy, xg, y_pad, z_pad;
  WeightGrads(int64_t n_, int64_t np_, int64_t features_, int64_t batch)
      : n(n_), np(np_), features(features_), ws(3 * n_ * np_, T(0)), wy(n_ * np_, T(0)),
        xg((features_ + 1) * 4 * n_, T(0)), y_pad(batch * np_, T(0)),
        z_pad(batch * np_, T(0)) {}

  // a (batch rows of [g_{a_z}, g_{a_1}, g_{a_2}, g_q]), y = y_{n-1}, z = z_n, x the inputs.
  void add_step(const T* g, const T* y, const T* z, const T* x, int64_t batch) {
    const T* yp = y;
    const T* zp = z;
    if (n != np) {
      for (int64_t b = 0; b < batch; ++b) {
        std::copy(y + b * n, y + (b + 1) * n, y_pad.data() + b * np);
        std::copy(z + b * n, z + (b + 1) * n, z_pad.data() + b * np);
      }
      yp = y_pad.data();
      zp = z_pad.data();
    }
    outer_accumulate<T>(ws.data(), 3 * n, g, 4 * n, yp, batch, np);
    outer_accumulate<T>(wy.data(), n, g + 3 * n, 4 * n, zp, batch, np);
    input_accumulate<T>(xg.data(), x, features, g, batch, 4 * n);
  }

  // Adds the accumulated gradients to out_ws (3n, n), out_wy (n, n), out_xg (features + 1, 4n).
  void write(at::Tensor out_ws, at::Tensor out_wy, at::Tensor out_xg) const {
    T* pws = out_ws.data_ptr<T>();
    T* pwy = out_wy.data_ptr<T>();
    T* pxg = out_xg.data_ptr<T>();
    for (int64_t k = 0; k < 3 * n; ++k) {
      for (int64_t i = 0; i < n; ++i) pws[k * n + i] += ws[k * np + i];
    }
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < n; ++i) pwy[k * n + i] += wy[k * np + i];
    }
    for (size_t k = 0; k < xg.size(); ++k) pxg[k] += xg[k];
  }
};

// Per-row padded scratch for hidden sizes that are not a multiple of kLanes: the row's four
// groups, and one np run for each state or gradient row.
template <typename T>
struct Scratch {
  std::vector<T> data;
  T* m;
  T* run[5];
  explicit Scratch(int64_t np) : data(9 * np, T(0)), m(data.data()) {
    for (int64_t k = 0; k < 5; ++k) run[k] = data.data() + (4 + k) * np;
  }
};

template <typename T>
void forward_typed(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor ws_t,
                   at::Tensor wy_t, double dt) {
  const int64_t steps = acts.size(0), batch = ys.size(1), n = ys.size(2);
  const int64_t np = fused::padded(n, kLanes<T>);
  const std::vector<T> ws = pad_groups<T>(ws_t, 3, np);
  const std::vector<T> wy = pad_groups<T>(wy_t, 1, np);
  Scratch<T> s(np);
  T* ap = acts.data_ptr<T>();
  T* yp = ys.data_ptr<T>();
  T* zp = zs.data_ptr<T>();
  const T step = T(dt);
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t b = 0; b < batch; ++b) {
      T* a = ap + (t * batch + b) * 4 * n;
      T* y = yp + (t * batch + b) * n;
      T* z = zp + (t * batch + b) * n;
      T* y_next = y + batch * n;
      T* z_next = z + batch * n;
      if (n == np) {
        forward_row<T>(a, n, y, z, y_next, z_next, ws.data(), wy.data(), n, np, step);
        continue;
      }
      gather_groups<T>(a, n, s.m, np, n, 4);
      gather_groups<T>(y, n, s.run[0], np, n, 1);
      gather_groups<T>(z, n, s.run[1], np, n, 1);
      forward_row<T>(s.m, np, s.run[0], s.run[1], s.run[2], s.run[3], ws.data(), wy.data(), n,
                     np, step);
      scatter_groups<T>(a, n, s.m, np, n, 4);
      scatter_groups<T>(y_next, n, s.run[2], np, n, 1);
      scatter_groups<T>(z_next, n, s.run[3], np, n, 1);
    }
  }
}

template <typename T>
void backward_typed(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor g,
                    at::Tensor gz, const c10::optional<at::Tensor>& direct, at::Tensor ws_m,
                    at::Tensor wy_m, double dt, WeightGrads<T>* grads = nullptr,
                    const T* x = nullptr) {
  const int64_t steps = acts.size(0), batch = g.size(0), n = g.size(1);
  const int64_t np = fused::padded(n, kLanes<T>);
  const std::vector<T> ws = pad_groups<T>(ws_m, 1, np);
  const std::vector<T> wy = pad_groups<T>(wy_m, 1, np);
  Scratch<T> s(np);
  T* ap = acts.data_ptr<T>();
  const T* yp = ys.data_ptr<T>();
  const T* zp = zs.data_ptr<T>();
  T* gp = g.data_ptr<T>();
  T* gzp = gz.data_ptr<T>();
  const T* dp = direct.has_value() ? direct->data_ptr<T>() : nullptr;
  const T inv_dt = T(1.0 / dt);
  for (int64_t t = steps - 1; t >= 0; --t) {
    for (int64_t b = 0; b < batch; ++b) {
      T* m = ap + (t * batch + b) * 4 * n;
      const T* y = yp + (t * batch + b) * n;
      const T* z = zp + (t * batch + b) * n;
      T* gb = gp + b * n;
      T* gzb = gzp + b * n;
      const T* d = (t > 0 && dp != nullptr) ? dp + ((t - 1) * batch + b) * n : nullptr;
      if (n == np) {
        backward_row<T>(m, n, y, z, gb, d, gzb, ws.data(), wy.data(), n, np, inv_dt);
        continue;
      }
      gather_groups<T>(m, n, s.m, np, n, 4);
      gather_groups<T>(y, n, s.run[0], np, n, 1);
      gather_groups<T>(z, n, s.run[1], np, n, 1);
      gather_groups<T>(gb, n, s.run[2], np, n, 1);
      gather_groups<T>(gzb, n, s.run[3], np, n, 1);
      if (d != nullptr) gather_groups<T>(d, n, s.run[4], np, n, 1);
      backward_row<T>(s.m, np, s.run[0], s.run[1], s.run[2], d == nullptr ? nullptr : s.run[4],
                      s.run[3], ws.data(), wy.data(), n, np, inv_dt);
      scatter_groups<T>(m, n, s.m, np, n, 4);
      scatter_groups<T>(gb, n, s.run[2], np, n, 1);
      scatter_groups<T>(gzb, n, s.run[3], np, n, 1);
    }
    if (grads != nullptr) {
      grads->add_step(ap + t * batch * 4 * n, yp + t * batch * n, zp + (t + 1) * batch * n,
                      x + t * batch * grads->features, batch);
    }
  }
}

template <typename T>
void backward_grads_typed(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor g,
                          at::Tensor gz, const c10::optional<at::Tensor>& direct,
                          at::Tensor ws_m, at::Tensor wy_m, double dt, at::Tensor x,
                          at::Tensor out_ws, at::Tensor out_wy, at::Tensor out_xg) {
  const int64_t batch = g.size(0), n = g.size(1);
  WeightGrads<T> grads(n, fused::padded(n, kLanes<T>), x.size(1), batch);
  backward_typed<T>(acts, ys, zs, g, gz, direct, ws_m, wy_m, dt, &grads, x.data_ptr<T>());
  grads.write(out_ws, out_wy, out_xg);
}

}  // namespace lem_fused
#endif

""" + ENTRY_SOURCE + r"""
// Same contract as forward_loop, one hand-fused pass per step and batch row.
void forward_fused(at::Tensor acts, at::Tensor ys, at::Tensor zs, at::Tensor ws_t,
                   at::Tensor wy_t, double dt) {
  check_fused({acts, ys, zs});
  TORCH_CHECK(ws_t.scalar_type() == acts.scalar_type() && wy_t.scalar_type() == acts.scalar_type(),
              "LEM's fused loops need one dtype");
#ifdef SIGNALPROP_FUSED
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lem_forward_fused", [&] {
    lem_fused::forward_typed<scalar_t>(acts, ys, zs, ws_t, wy_t, dt);
  });
#endif
}

// Same contract as backward_loop, one hand-fused pass per step and batch row.
std::vector<at::Tensor> backward_fused(at::Tensor acts, at::Tensor ys, at::Tensor zs,
                                       at::Tensor gy, at::Tensor gz,
                                       c10::optional<at::Tensor> direct, at::Tensor ws,
                                       at::Tensor wy, double dt) {
  check_fused({acts, ys, zs, gy, gz});
  TORCH_CHECK(!direct.has_value() || (direct->is_contiguous()
              && direct->scalar_type() == acts.scalar_type()),
              "LEM's fused loops need a contiguous direct gradient of the buffers' dtype");
  at::Tensor g = gy.clone();
#ifdef SIGNALPROP_FUSED
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lem_backward_fused", [&] {
    lem_fused::backward_typed<scalar_t>(acts, ys, zs, g, gz, direct, ws, wy, dt);
  });
#endif
  return {g, gz};
}

// backward_fused, and the weight gradients of all steps accumulated step by step (while each
// step's gradients are in cache) into out_ws (3n, n: the gradient of [W_z; W_1; W_2] from
// [g_{a_z}, g_{a_1}, g_{a_2}]^T y_{n-1}), out_wy (n, n: g_q^T z_n) and out_xg
// (features + 1, 4n: [x, 1]^T g, the input map's transposed gradient and the bias gradient in
// its last row); x (T B, features) are the inputs. The outputs are added to.
std::vector<at::Tensor> backward_fused_grads(at::Tensor acts, at::Tensor ys, at::Tensor zs,
                                             at::Tensor gy, at::Tensor gz,
                                             c10::optional<at::Tensor> direct, at::Tensor ws,
                                             at::Tensor wy, double dt, at::Tensor x,
                                             at::Tensor out_ws, at::Tensor out_wy,
                                             at::Tensor out_xg) {
  check_fused({acts, ys, zs, gy, gz, x, out_ws, out_wy, out_xg});
  TORCH_CHECK(!direct.has_value() || (direct->is_contiguous()
              && direct->scalar_type() == acts.scalar_type()),
              "LEM's fused loops need a contiguous direct gradient of the buffers' dtype");
  const int64_t n = gy.size(1);
  TORCH_CHECK(out_ws.size(0) == 3 * n && out_ws.size(1) == n && out_wy.size(0) == n
              && out_wy.size(1) == n && x.size(0) == acts.size(0) * acts.size(1)
              && out_xg.size(0) == x.size(1) + 1 && out_xg.size(1) == 4 * n,
              "LEM's backward_fused_grads got gradient buffers of the wrong shape");
  at::Tensor g = gy.clone();
#ifdef SIGNALPROP_FUSED
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lem_backward_fused_grads", [&] {
    lem_fused::backward_grads_typed<scalar_t>(acts, ys, zs, g, gz, direct, ws, wy, dt, x,
                                              out_ws, out_wy, out_xg);
  });
#endif
  return {g, gz};
}
"""

SOURCE = "#include <torch/extension.h>\n#include <vector>\n" + ATEN_SOURCE + FUSED_SOURCE
FUNCTIONS = ("forward_loop", "backward_loop", "forward_fused", "backward_fused",
             "backward_fused_grads", "fused_available")


def native_loops() -> ModuleType | None:
    """The compiled LEM loops, building them on the first call; None where they cannot run."""
    return load_native(NAME, SOURCE, FUNCTIONS, "LEM's C++ BPTT loops", FAST_CFLAGS)


def loop_kind(hidden: int, *tensors: Tensor | None) -> str:
    """Which time loops run for these tensors: ``"fused"``, ``"aten"`` or ``"python"`` (rules
    of :func:`signalprop.nn.filter_bptt_native.loop_kind`, with this module's
    ``FUSED_MAX_HIDDEN``)."""
    return choose_loops(native_loops(), hidden, FUSED_MAX_HIDDEN, tensors)


class Loops(NamedTuple):
    """LEM's C++ time loops of one kind, with the buffer contract of the Python loops."""

    forward: Callable[..., None]
    backward: Callable[..., list[Tensor]]
    #: ``backward`` that also accumulates the weight gradients step by step (the fused kernels'
    #: ``backward_fused_grads``), or None where they are GEMMs after the loop (ATen loops)
    backward_grads: Callable[..., list[Tensor]] | None


def time_loops(hidden: int, *tensors: Tensor | None) -> Loops | None:
    """The C++ loops :func:`loop_kind` picks; None for the Python ones."""
    kind = loop_kind(hidden, *tensors)
    native = native_loops()
    if kind == "fused":
        return Loops(native.forward_fused, native.backward_fused, native.backward_fused_grads)
    if kind == "aten":
        return Loops(native.forward_loop, native.backward_loop, None)
    return None
