"""The additive-filter RNN's two time loops in C++ (issue 28.4), built on first use.

The loops of :mod:`signalprop.nn.orthogonal_rnn` (forward: per step ``z_t += h_{t-1} W^T``, the
activation and ``h_t = a h_{t-1} O^T + b phi(z_t)``; backward: ``g_z = slope_t * g``,
``g_{t-1} = g_z W + a g O (+ direct)``) make the same ATen calls here, from C++, so the per-step
cost is the calls themselves without the Python interpreter between them. The arithmetic is
identical; ``tests/test_filter_bptt_native.py`` checks outputs and gradients against the Python
loops in float64.

The extension is compiled with ``torch.utils.cpp_extension.load_inline`` (the system C++
compiler and ninja) into torch's extension cache the first time it is needed, about a minute
once per machine. Where that fails (no compiler), or with ``SIGNALPROP_NATIVE_BPTT=0``, or
while ``torch.compile`` traces, :func:`native_loops` returns None and the Python loops run.
"""

from __future__ import annotations

import os
import shutil
import warnings
from types import ModuleType

import torch

ENV = "SIGNALPROP_NATIVE_BPTT"
NAME = "signalprop_filter_bptt_v1"

SOURCE = r"""
#include <torch/extension.h>

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

_state: dict[str, ModuleType | None] = {}


def enabled() -> bool:
    """Whether the native loops may be used (``SIGNALPROP_NATIVE_BPTT`` is not ``0``)."""
    return os.environ.get(ENV, "1") != "0"


def native_loops() -> ModuleType | None:
    """The compiled loops, building them on the first call; None where they cannot run."""
    return load_native(NAME, SOURCE, ("forward_loop", "backward_loop"),
                       "the additive-filter RNN's C++ loops")


def load_native(name: str, source: str, functions: tuple[str, ...], what: str
                ) -> ModuleType | None:
    """The extension ``name`` built from C++ ``source`` (cached per process and in torch's
    extension cache); None with ``SIGNALPROP_NATIVE_BPTT=0``, while ``torch.compile`` traces,
    or where the build fails (then once a warning naming ``what``). Shared by every
    hand-written BPTT with C++ time loops (this module, :mod:`signalprop.nn.lem_bptt_native`)."""
    if not enabled() or torch.compiler.is_compiling():
        return None
    if name not in _state:
        _state[name] = _build(name, source, functions, what)
    return _state[name]


def _ninja_on_path() -> None:
    """torch runs ``ninja`` from PATH; a venv not activated has the pip one off it."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _build(name: str, source: str, functions: tuple[str, ...], what: str
           ) -> ModuleType | None:
    try:
        from torch.utils.cpp_extension import load_inline

        _ninja_on_path()

        return load_inline(name=name, cpp_sources=source, functions=list(functions),
                           extra_cflags=["-O2"], verbose=False)
    except Exception as exc:  # noqa: BLE001 - any build failure falls back to Python
        warnings.warn(f"{what} could not be built ({exc!s:.200}); using the Python loops "
                      f"(set {ENV}=0 to skip the attempt)", RuntimeWarning, stacklevel=4)
        return None
