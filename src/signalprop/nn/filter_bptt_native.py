"""The additive-filter RNN's two time loops in C++ (issue 28.4), built on first use.

The model is ``h_t = a O h_{t-1} + b phi(z_t)``, ``z_t = W h_{t-1} + U x_t + c``, ``a = 1 - b``.
The loops of :mod:`signalprop.nn.orthogonal_rnn` are, forward, per step ``z_t += h_{t-1} W^T``,
the activation and ``h_t = a h_{t-1} O^T + b phi(z_t)``, and backward ``g_z = slope_t * g``,
``g_{t-1} = g_z W + a g O (+ direct)``. This extension has two versions of each:

* ``forward_loop`` / ``backward_loop`` make the same ATen calls as the Python loops, from C++,
  so a step costs the calls themselves without the interpreter between them;
* ``forward_fused`` / ``backward_fused`` are hand-fused kernels (plain loops over the
  contiguous float32 or float64 buffers, no ATen call inside the time loop): per batch row one
  pass over ``h`` accumulates ``h W^T`` and ``h O^T`` together in register-sized column blocks,
  then the activation and the update follow in the same pass; backward likewise accumulates
  ``g_z W + g (a O)``. Both take and leave the buffers exactly as the ATen loops do.

:func:`time_loops` picks one pair per call (:func:`loop_kind`): the fused kernels for CPU
float32/float64 tensors with ``hidden <= FUSED_MAX_HIDDEN`` (where their arithmetic beats the
library GEMMs plus per-call overhead; at larger ``hidden`` the GEMMs of the ATen loops win),
the ATen loops otherwise. ``SIGNALPROP_FUSED_BPTT=1`` forces the fused kernels at any size and
``=0`` never uses them (both for benchmarks and tests). ``tests/test_filter_bptt_native.py``
checks outputs and gradients of both against the Python loops in float64.

The extension is compiled with ``torch.utils.cpp_extension.load_inline`` (the system C++
compiler and ninja, ``-O3 -march=native`` and, if those flags are refused, ``-O2``) into torch's
extension cache the first time it is needed, a few minutes once per machine (the cache name
carries a hash of the CPU, :func:`cpu_tag`, so a shared cache never hands a build to a CPU
without its instructions). Compilers other than GCC and clang build only the ATen loops.
Where the build fails (no compiler), or with ``SIGNALPROP_NATIVE_BPTT=0``, or while
``torch.compile`` traces, :func:`native_loops` returns None and the Python loops run.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from signalprop.nn.native_build import (
    ENV,
    FAST_CFLAGS,
    FUSED_ENV,
    choose_loops,
    load_native,
)
from signalprop.nn.native_simd import ENTRY_SOURCE, SIMD_SOURCE

__all__ = ["ENV", "FUSED_ENV", "FUSED_MAX_HIDDEN", "NAME", "advise_huge_pages", "loop_kind",
           "native_loops", "time_loops"]

NAME = "signalprop_filter_bptt_v3"
#: Largest hidden size for which :func:`loop_kind` picks the fused kernels by default.
FUSED_MAX_HIDDEN = 56

ATEN_SOURCE = r"""
// h_t = a O h_{t-1} + b phi(z_t), z_t = (U x_t + c) + W h_{t-1}; acts holds U x_t + c on
// entry (scaled by 2 for tanh) and sigmoid(2 z_t) (tanh) or relu(z_t) on exit.
void forward_loop(at::Tensor acts, at::Tensor states, at::Tensor w_t, at::Tensor o_t,
                  double a, double b, bool tanh, bool permute) {
  const int64_t steps = acts.size(0);
  for (int64_t t = 0; t < steps; ++t) {
    at::Tensor p = acts.select(0, t);
    at::Tensor h = states.select(0, t);
    at::Tensor out = states.select(0, t + 1);
    p.addmm_(h, w_t);
    if (tanh) {
      p.sigmoid_();
      if (permute) {
        at::index_select_out(out, h, 1, o_t);
        out.mul_(a).add_(p, 2.0 * b).sub_(b);
      } else {
        at::addmm_out(out, p, h, o_t, 2.0 * b, a);
        out.sub_(b);
      }
    } else {
      p.relu_();
      if (permute) {
        at::lerp_out(out, h.index_select(1, o_t), p, b);
      } else {
        at::addmm_out(out, p, h, o_t, b, a);
      }
    }
  }
}

// acts holds the slopes b phi'(z_t) on entry and dL/dz_t on exit; returns dL/dh_0.
at::Tensor backward_loop(at::Tensor acts, at::Tensor g, c10::optional<at::Tensor> direct,
                         at::Tensor weight, at::Tensor filt_a, double a, bool permute) {
  const int64_t steps = acts.size(0);
  at::Tensor buffers[2] = {at::empty_like(g), at::empty_like(g)};
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::Tensor gz = acts.select(0, t).mul_(g);
    at::Tensor next = buffers[t % 2];
    if (t > 0 && direct.has_value()) {
      at::addmm_out(next, direct->select(0, t - 1), gz, weight);
    } else {
      at::mm_out(next, gz, weight);
    }
    if (permute) {
      next.add_(g.index_select(1, filt_a), a);
    } else {
      next.addmm_(g, filt_a);
    }
    g = next;
  }
  return g;
}
"""


FUSED_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__GNUC__)  // GCC and clang: vector extensions; elsewhere the ATen loops run
#define SIGNALPROP_FUSED 1

namespace fused {
""" + SIMD_SOURCE + r"""
// The kLanes-wide rows of m columns starting at src (m < kBlock: through a zeroed copy).
template <typename T>
inline const T* block_input(const T* src, int64_t m, T* spare) {
  if (m == kBlock<T>) return src;
  std::fill(spare, spare + kBlock<T>, T(0));
  std::copy(src, src + m, spare);
  return spare;
}

// One batch row of one forward step, kBlock columns at a time. p holds k (U x + c) on entry;
// z = p + h w (w = k W^T, column-padded), y = h o (o = O^T) or y_j = h[perm_j]; then
// p <- s = sigmoid(z) and out = a y + 2 b s - b (tanh, k = 2: tanh(z / 2) = 2 s - 1), or
// p <- relu(z) and out = a y + b relu(z) (relu, k = 1).
template <typename T, bool kDense, bool kTanh>
void forward_row(const T* h, T* p, T* out, const T* w, const T* o, const int64_t* perm,
                 int64_t n, int64_t np, T a, T b) {
  constexpr int64_t L = Simd<T>::kLanes;
  constexpr int64_t B = kBlock<T>;
  for (int64_t j0 = 0; j0 < np; j0 += B) {
    V<T> z[kVecs] = {};
    V<T> y[kVecs] = {};
    for (int64_t i = 0; i < n; ++i) {
      const V<T> hi = splat(h[i]);
      const T* wr = w + i * np + j0;
      for (int64_t v = 0; v < kVecs; ++v) z[v] += hi * load(wr + v * L);
      if constexpr (kDense) {
        const T* orow = o + i * np + j0;
        for (int64_t v = 0; v < kVecs; ++v) y[v] += hi * load(orow + v * L);
      }
    }
    const int64_t m = std::min(B, n - j0);
    T spare[B];
    const T* pin = block_input(p + j0, m, spare);
    if constexpr (!kDense) {
      T gathered[B] = {};
      for (int64_t jj = 0; jj < m; ++jj) gathered[jj] = h[perm[j0 + jj]];
      for (int64_t v = 0; v < kVecs; ++v) y[v] = load(gathered + v * L);
    }
    V<T> act[kVecs];
    V<T> next[kVecs];
    for (int64_t v = 0; v < kVecs; ++v) {
      const V<T> zv = z[v] + load(pin + v * L);
      if constexpr (kTanh) {
        act[v] = sigmoid<T>(zv);
        next[v] = a * y[v] + (T(2) * b) * act[v] - b;
      } else {
        act[v] = zv < T(0) ? V<T>{} : zv;
        next[v] = a * y[v] + b * act[v];
      }
    }
    T act_out[B];
    T next_out[B];
    const bool whole = m == B;
    for (int64_t v = 0; v < kVecs; ++v) {
      store(whole ? p + j0 + v * L : act_out + v * L, act[v]);
      store(whole ? out + j0 + v * L : next_out + v * L, next[v]);
    }
    if (!whole) {
      std::copy(act_out, act_out + m, p + j0);
      std::copy(next_out, next_out + m, out + j0);
    }
  }
}

template <typename T, bool kDense, bool kTanh>
void forward_steps(T* acts, T* states, const T* w, const T* o, const int64_t* perm,
                   int64_t steps, int64_t batch, int64_t n, int64_t np, T a, T b) {
  const int64_t stride = batch * n;
  for (int64_t t = 0; t < steps; ++t) {
    T* p = acts + t * stride;
    const T* h = states + t * stride;
    T* out = states + (t + 1) * stride;
    for (int64_t r = 0; r < batch; ++r) {
      forward_row<T, kDense, kTanh>(h + r * n, p + r * n, out + r * n, w, o, perm, n, np, a,
                                    b);
    }
  }
}

template <typename T>
void forward_typed(at::Tensor acts, at::Tensor states, at::Tensor w_t, at::Tensor o_t,
                   double a, double b, bool tanh, bool permute) {
  const int64_t steps = acts.size(0), batch = acts.size(1), n = acts.size(2);
  const int64_t np = padded(n, kBlock<T>);
  const std::vector<T> w = pad_columns<T>(w_t, np);
  const std::vector<T> o = permute ? std::vector<T>() : pad_columns<T>(o_t, np);
  const at::Tensor perm = permute ? o_t.contiguous() : at::Tensor();
  const int64_t* idx = permute ? perm.data_ptr<int64_t>() : nullptr;
  T* ap = acts.data_ptr<T>();
  T* sp = states.data_ptr<T>();
  const T ta = T(a), tb = T(b);
  if (permute && tanh) {
    forward_steps<T, false, true>(ap, sp, w.data(), nullptr, idx, steps, batch, n, np, ta, tb);
  } else if (permute) {
    forward_steps<T, false, false>(ap, sp, w.data(), nullptr, idx, steps, batch, n, np, ta,
                                   tb);
  } else if (tanh) {
    forward_steps<T, true, true>(ap, sp, w.data(), o.data(), nullptr, steps, batch, n, np, ta,
                                 tb);
  } else {
    forward_steps<T, true, false>(ap, sp, w.data(), o.data(), nullptr, steps, batch, n, np,
                                  ta, tb);
  }
}

// One batch row of one backward step: s holds the slopes b phi'(z) on entry and g_z = s g on
// exit; next = g_z W + g (a O) (dense, o = a O column-padded) or g_z W + a g[perm]
// (permutation), plus direct (dL/dh from the output) where given. The two products have
// their own accumulators, so that enough independent FMA chains are in flight.
template <typename T, bool kDense>
void backward_row(const T* g, T* s, T* next, const T* direct, const T* w, const T* o,
                  const int64_t* perm, int64_t n, int64_t np, T a) {
  constexpr int64_t L = Simd<T>::kLanes;
  constexpr int64_t B = kBlock<T>;
  for (int64_t j = 0; j < n; ++j) s[j] *= g[j];
  for (int64_t i0 = 0; i0 < np; i0 += B) {
    V<T> acc_w[kVecs] = {};
    V<T> acc_o[kVecs] = {};
    for (int64_t j = 0; j < n; ++j) {
      const V<T> gz = splat(s[j]);
      const T* wr = w + j * np + i0;
      for (int64_t v = 0; v < kVecs; ++v) acc_w[v] += gz * load(wr + v * L);
      if constexpr (kDense) {
        const V<T> gj = splat(g[j]);
        const T* orow = o + j * np + i0;
        for (int64_t v = 0; v < kVecs; ++v) acc_o[v] += gj * load(orow + v * L);
      }
    }
    T sum[B];
    for (int64_t v = 0; v < kVecs; ++v) store(sum + v * L, acc_w[v] + acc_o[v]);
    const int64_t m = std::min(B, n - i0);
    T* out = next + i0;
    for (int64_t ii = 0; ii < m; ++ii) {
      T value = sum[ii];
      if constexpr (!kDense) value += a * g[perm[i0 + ii]];
      if (direct != nullptr) value += direct[i0 + ii];
      out[ii] = value;
    }
  }
}

template <typename T, bool kDense>
void backward_steps(T* acts, T* g, T* const buffers[2], const T* direct, const T* w,
                    const T* o, const int64_t* perm, int64_t steps, int64_t batch, int64_t n,
                    int64_t np, T a) {
  const int64_t stride = batch * n;
  for (int64_t t = steps - 1; t >= 0; --t) {
    T* s = acts + t * stride;
    T* next = buffers[t % 2];
    const T* d = (t > 0 && direct != nullptr) ? direct + (t - 1) * stride : nullptr;
    for (int64_t r = 0; r < batch; ++r) {
      backward_row<T, kDense>(g + r * n, s + r * n, next + r * n,
                              d == nullptr ? nullptr : d + r * n, w, o, perm, n, np, a);
    }
    g = next;
  }
}

template <typename T>
at::Tensor backward_typed(at::Tensor acts, at::Tensor g, c10::optional<at::Tensor> direct,
                          at::Tensor weight, at::Tensor filt_a, double a, bool permute) {
  const int64_t steps = acts.size(0), batch = acts.size(1), n = acts.size(2);
  if (steps == 0) return g;
  const int64_t np = padded(n, kBlock<T>);
  const std::vector<T> w = pad_columns<T>(weight, np);
  const std::vector<T> o = permute ? std::vector<T>() : pad_columns<T>(filt_a, np);
  const at::Tensor perm = permute ? filt_a.contiguous() : at::Tensor();
  const int64_t* idx = permute ? perm.data_ptr<int64_t>() : nullptr;
  const at::Tensor d = direct.has_value() ? direct->contiguous() : at::Tensor();
  const T* dp = direct.has_value() ? d.data_ptr<T>() : nullptr;
  at::Tensor first = g.contiguous();
  at::Tensor buffers[2] = {at::empty({batch, n}, g.options()),
                           at::empty({batch, n}, g.options())};
  T* const bp[2] = {buffers[0].data_ptr<T>(), buffers[1].data_ptr<T>()};
  T* ap = acts.data_ptr<T>();
  if (permute) {
    backward_steps<T, false>(ap, first.data_ptr<T>(), bp, dp, w.data(), nullptr, idx, steps,
                             batch, n, np, T(a));
  } else {
    backward_steps<T, true>(ap, first.data_ptr<T>(), bp, dp, w.data(), o.data(), nullptr,
                            steps, batch, n, np, T(a));
  }
  return buffers[0];  // the last step written is t = 0
}

}  // namespace fused
#endif

""" + ENTRY_SOURCE + r"""
// Asks Linux to back the 2 MB-aligned part of a large, not yet written tensor with huge pages
// (transparent huge pages in "madvise" mode): writing a fresh (T + 1, B, n) state buffer
// page by page costs more page faults than its arithmetic. A hint only; elsewhere a no-op.
void advise_huge_pages(at::Tensor t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + t.numel() * t.element_size();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = end & ~(kHuge - 1);
  if (t.is_contiguous() && t.device().is_cpu() && last > first) {
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
}

// Same contract as forward_loop, one hand-fused pass per step and batch row.
void forward_fused(at::Tensor acts, at::Tensor states, at::Tensor w_t, at::Tensor o_t,
                   double a, double b, bool tanh, bool permute) {
  check_fused({acts, states});
#ifdef SIGNALPROP_FUSED
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "forward_fused", [&] {
    fused::forward_typed<scalar_t>(acts, states, w_t, o_t, a, b, tanh, permute);
  });
#endif
}

// Same contract as backward_loop, one hand-fused pass per step and batch row.
at::Tensor backward_fused(at::Tensor acts, at::Tensor g, c10::optional<at::Tensor> direct,
                          at::Tensor weight, at::Tensor filt_a, double a, bool permute) {
  check_fused({acts});
  at::Tensor result = g;
#ifdef SIGNALPROP_FUSED
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "backward_fused", [&] {
    result = fused::backward_typed<scalar_t>(acts, g, direct, weight, filt_a, a, permute);
  });
#endif
  return result;
}
"""

SOURCE = "#include <torch/extension.h>\n" + ATEN_SOURCE + FUSED_SOURCE
FUNCTIONS = ("forward_loop", "backward_loop", "forward_fused", "backward_fused",
             "fused_available", "advise_huge_pages")

#: The pair ``(forward, backward)`` of time loops with the buffer contract of the C++ loops.
Loops = tuple[Callable[..., None], Callable[..., Tensor]]

def native_loops() -> ModuleType | None:
    """The compiled loops, building them on the first call; None where they cannot run."""
    return load_native(NAME, SOURCE, FUNCTIONS, "the additive-filter RNN's C++ loops",
                       FAST_CFLAGS)


def advise_huge_pages(buffer: Tensor) -> None:
    """Hint that a large fresh CPU buffer be backed by huge pages (Linux; no-op elsewhere or
    without the extension): fewer page faults when it is first written."""
    native = native_loops()
    if native is not None and buffer.device.type == "cpu" and buffer.numel() > 0 and not (
            torch._C._functorch.is_functorch_wrapped_tensor(buffer)):
        native.advise_huge_pages(buffer)


def loop_kind(hidden: int, *tensors: Tensor | None) -> str:
    """Which time loops run for these tensors: ``"fused"``, ``"aten"`` or ``"python"``.

    ``"python"`` where :func:`native_loops` is None; ``"fused"`` for plain CPU float32/float64
    tensors when ``SIGNALPROP_FUSED_BPTT`` is ``1``, or is unset and ``hidden <=
    FUSED_MAX_HIDDEN``; ``"aten"`` otherwise."""
    return choose_loops(native_loops(), hidden, FUSED_MAX_HIDDEN, tensors)


def time_loops(hidden: int, *tensors: Tensor | None) -> Loops | None:
    """The C++ ``(forward, backward)`` loops :func:`loop_kind` picks; None for the Python ones."""
    kind = loop_kind(hidden, *tensors)
    native = native_loops()
    if kind == "fused":
        return native.forward_fused, native.backward_fused
    if kind == "aten":
        return native.forward_loop, native.backward_loop
    return None


