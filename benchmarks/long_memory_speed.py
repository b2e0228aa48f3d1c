"""One training step (forward + backward) at T = 10,000: the additive-filter RNN's hand-written
BPTT (``filter_bptt``, the time loops its default dispatch picks; forced to the hand-fused C++
kernels, ``filter_bptt_fused``, to the C++ loops of ATen calls, ``filter_bptt_aten``, and to the
Python loops, ``filter_bptt_python``) against its autograd loop, LEM (its hand-written BPTT with
the time loops its default dispatch picks, ``lem``; forced to the hand-fused C++ kernels,
``lem_fused``, to the C++ loops of ATen calls, ``lem_aten``, and to the Python loops,
``lem_python``; and its autograd loop, ``lem_autograd_loop``) and torch.nn.LSTM, and against
the filter RNN's GEMM floor.

Adding-problem shapes (2 input features, a linear head on the last state, squared loss),
batch 50, one thread, every model timed in this process by its CPU time
(``time.process_time``, so other jobs on a shared machine count little), best of
``--repeats``. The GEMM floor is the matrix products the filter RNN must do, timed alone
(see :func:`gemm_floor`). Prints microseconds per time step and ratios and
writes them to JSON (default benchmarks/results/long_memory_speed.json).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_memory_speed.py [--steps 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from signalprop.nn.filter_bptt_native import (
    ENV,
    FUSED_ENV,
    FUSED_MAX_HIDDEN,
    loop_kind,
    native_loops,
)
from signalprop.nn.lem import LEM
from signalprop.nn.lem_bptt_native import FUSED_MAX_HIDDEN as LEM_FUSED_MAX_HIDDEN
from signalprop.nn.lem_bptt_native import loop_kind as lem_loop_kind
from signalprop.nn.lem_bptt_native import native_loops as lem_native_loops
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN
from signalprop.nn.readout import LastStepClassifier


def gemm_floor(steps: int, batch: int, hidden: int, repeats: int, narrow_first: bool = True
               ) -> tuple[float, float]:
    """CPU seconds of the filter RNN's matrix products alone: ``(sequential, batched)``.

    Sequential: per step the forward product ``h [W^T | a O^T]`` and the backward ``[g | g_z]
    [a O; W]`` (``torch.mm`` into preallocated outputs, nothing else in the loop), plus the
    products over all steps (input projections, ``dL/dW``, ``dL/dU``, ``dL/dx``). Batched: the
    same number of multiply-adds as one large product each way (no per-step overhead at all).
    ``dL/dU`` is ``(x^T g_z)^T`` as the model computes it; ``narrow_first=False`` times it as
    ``g_z^T x`` (the floor's definition before 2026-12-07 evening), which BLAS runs several
    times slower.
    """
    h, both = torch.randn(batch, hidden), torch.randn(batch, 2 * hidden)
    fused, stacked = torch.randn(hidden, 2 * hidden), torch.randn(2 * hidden, hidden)
    mixed, back = torch.empty(batch, 2 * hidden), torch.empty(batch, hidden)
    x, w_ih = torch.randn(steps * batch, 2), torch.randn(hidden, 2)
    states = torch.randn(steps * batch, hidden)
    big_h, big_both = torch.randn(steps * batch, hidden), torch.randn(steps * batch, 2 * hidden)

    def over_all_steps() -> None:
        u = x @ w_ih.t()
        grad_ih = (x.t() @ u).t() if narrow_first else u.t() @ x
        _ = u.t() @ states, grad_ih, u @ w_ih

    sequential = batched = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(steps):
            torch.mm(h, fused, out=mixed)
            torch.mm(both, stacked, out=back)
        over_all_steps()
        sequential = min(sequential, time.process_time() - started)
        started = time.process_time()
        _ = big_h @ fused, big_both @ stacked
        over_all_steps()
        batched = min(batched, time.process_time() - started)
    return sequential, batched


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """CPU seconds of the best of ``repeats`` training steps, after one untimed step of the
    same length (it builds the C++ loops and allocates the buffers reused across steps)."""
    nn.functional.mse_loss(model(x).squeeze(-1), y).backward()
    best = float("inf")
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        started = time.process_time()
        nn.functional.mse_loss(model(x).squeeze(-1), y).backward()
        best = min(best, time.process_time() - started)
    return best


#: The models with hand-written BPTT, timed again under these names with these environment
#: variables (which time loops run: :mod:`signalprop.nn.filter_bptt_native`).
VARIANTS: dict[str, dict[str, dict[str, str]]] = {
    "filter_bptt": {"filter_bptt_fused": {FUSED_ENV: "1"}, "filter_bptt_aten": {FUSED_ENV: "0"},
                    "filter_bptt_python": {ENV: "0"}},
    "lem": {"lem_fused": {FUSED_ENV: "1"}, "lem_aten": {FUSED_ENV: "0"},
            "lem_python": {ENV: "0"}},
}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def models(hidden: int, steps: int) -> dict[str, nn.Module]:
    beta = 1.0 / steps
    return {
        "filter_bptt": LastStepClassifier(AdditiveFilterRNN(2, hidden, beta=beta), 1),
        "filter_autograd_loop": LastStepClassifier(
            AdditiveFilterRNN(2, hidden, beta=beta, impl="loop"), 1),
        "lem": LastStepClassifier(LEM(2, hidden), 1),
        "lem_autograd_loop": LastStepClassifier(LEM(2, hidden, impl="loop"), 1),
        "lstm": LastStepClassifier(nn.LSTM(2, hidden, batch_first=True), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "long_memory_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.steps, 2)
    y = torch.randn(args.batch)
    report: dict = {"steps": args.steps, "batch": args.batch, "threads": 1,
                    "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "hidden": {}}
    report["native_loops"] = native_loops() is not None
    report["fused_max_hidden"] = FUSED_MAX_HIDDEN
    report["default_loops"] = {str(h): loop_kind(h, x) for h in args.hidden}
    report["lem_native_loops"] = lem_native_loops() is not None
    report["lem_fused_max_hidden"] = LEM_FUSED_MAX_HIDDEN
    report["lem_default_loops"] = {str(h): lem_loop_kind(h, x) for h in args.hidden}
    for hidden in args.hidden:
        times = {}
        for name, m in models(hidden, args.steps).items():
            with environment({FUSED_ENV: "auto"}):
                times[name] = step_time(m, x, y, args.repeats)
            for variant, values in VARIANTS.get(name, {}).items():  # other time loops
                with environment(values):
                    times[variant] = step_time(m, x, y, args.repeats)
        times["gemm_floor"], times["gemm_batched"] = gemm_floor(args.steps, args.batch, hidden,
                                                                args.repeats)
        times["gemm_floor_wide_first"] = gemm_floor(args.steps, args.batch, hidden, args.repeats,
                                                    narrow_first=False)[0]
        per_step = {k: v / args.steps * 1e6 for k, v in times.items()}
        ratios = {k: v / times["gemm_floor"] for k, v in times.items()}
        report["hidden"][str(hidden)] = {"us_per_time_step": per_step,
                                         "ratio_to_gemm_floor": ratios}
        print(f"hidden {hidden}: " + ", ".join(
            f"{k} {per_step[k]:.1f} us/step ({ratios[k]:.2f}x floor)" for k in times))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
