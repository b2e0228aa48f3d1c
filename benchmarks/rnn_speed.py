"""One training step (forward + backward) of the additive-filter RNN vs torch.nn.RNN / LSTM.

Batch 128, hidden 128, 784 steps, 1 input feature, a linear head on the last state and a
cross-entropy loss; all models timed in the same process, interleaved, best of ``--repeats``.
Times are this process's CPU time (``time.process_time``, one thread), so other jobs on a
shared machine do not count.
Prints the ratios and writes them to JSON (default benchmarks/results/rnn_speed.json).
``additive_filter_bptt`` is the paper's Haar-random filter (hand-written BPTT),
``additive_filter_loop`` the lean autograd loop, ``additive_filter_perm_bptt`` the cheaper
random-permutation filter option (``O h`` is a gather, one GEMM per step each way).

Each model is timed twice, in two child processes: with PyTorch's default CPU allocator and
with ``THP_MEM_ALLOC_ENABLE=1`` (large tensors on transparent huge pages, which removes most
page faults of fresh 50 MB buffers). ``ratios`` holds both, the second with a ``_thp`` suffix.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rnn_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN, LastStepClassifier


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    started = time.process_time()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return time.process_time() - started


MODELS = ("additive_filter_bptt", "additive_filter_loop", "additive_filter_perm_bptt")
ALLOCATORS = {"": "0", "_thp": "1"}  # ratio-key suffix -> THP_MEM_ALLOC_ENABLE


def measure(steps: int, batch: int, h: int, repeats: int) -> dict[str, list[float]]:
    """Per-step seconds of every model, interleaved, after one warm-up step each."""
    torch.manual_seed(0)
    x = torch.randn(batch, steps, 1)
    y = torch.randint(0, 10, (batch,))
    models = {
        "additive_filter_bptt": LastStepClassifier(AdditiveFilterRNN(1, h, impl="bptt"), 10),
        "additive_filter_loop": LastStepClassifier(AdditiveFilterRNN(1, h, impl="loop"), 10),
        "additive_filter_perm_bptt": LastStepClassifier(
            AdditiveFilterRNN(1, h, filter="permutation"), 10),
        "torch_rnn": LastStepClassifier(nn.RNN(1, h, batch_first=True), 10),
        "torch_lstm": LastStepClassifier(nn.LSTM(1, h, batch_first=True), 10),
    }
    for model in models.values():  # warm-up
        step_time(model, x, y)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(step_time(model, x, y))
    return times


def gemm_seconds(batch: int, hidden: int, repeats: int = 200) -> float:
    """Best time of one ``(batch x hidden) @ (hidden x hidden)`` GEMM, the per-step unit."""
    a, b = torch.randn(batch, hidden), torch.randn(hidden, hidden)
    out = torch.empty(batch, hidden)
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        best = min(best, (time.process_time() - started) / repeats)
    return best


# per time step, in units of one batch x hidden x hidden GEMM: forward W h and O h, backward
# g_z W and g O, and the weight gradient sum_t g_z,t^T h_t-1 (one GEMM's worth per step)
HAAR_GEMMS_PER_STEP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="196 steps, 2 repeats")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "rnn_speed.json")
    args = parser.parse_args()
    steps = args.steps or (196 if args.quick else 784)
    repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(args.threads)
    if args.child:  # one allocator setting: print the raw times as JSON
        raw = measure(steps, args.batch, args.hidden, repeats)
        raw["gemm"] = [gemm_seconds(args.batch, args.hidden)]
        print(json.dumps(raw))
        return
    child_args = [sys.executable, __file__, "--child", "--steps", str(steps),
                  "--batch", str(args.batch), "--hidden", str(args.hidden),
                  "--repeats", str(repeats), "--threads", str(args.threads)]
    times, best, ratios, floors = {}, {}, {}, {}
    for suffix, flag in ALLOCATORS.items():
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": flag}
        done = subprocess.run(child_args, env=env, capture_output=True, text=True, check=True)
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        gemm = raw.pop("gemm")[0]
        for name, values in raw.items():
            times[name + suffix] = values
            best[name + suffix] = min(values)
        floor = HAAR_GEMMS_PER_STEP * steps * gemm  # GEMM time alone, no other work
        floors[f"additive_filter_bptt_gemm_floor_vs_torch_rnn{suffix}"] = (
            floor / best[f"torch_rnn{suffix}"])
        for name in MODELS:
            for base in ("rnn", "lstm"):
                ratios[f"{name}_vs_torch_{base}{suffix}"] = (
                    best[name + suffix] / best[f"torch_{base}{suffix}"])
    for name, value in best.items():
        print(f"{name:30s} {value:.4f} s/step")
    for name, value in {**ratios, **floors}.items():
        print(f"{name:44s} {value:.3f}x")
    result = {
        "config": {"batch": args.batch, "hidden": args.hidden, "steps": steps,
                   "repeats": repeats, "quick": args.quick,
                   "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "machine": platform.machine(), "clock": "process CPU time",
                   "allocators": {"default": "THP_MEM_ALLOC_ENABLE=0",
                                  "_thp": "THP_MEM_ALLOC_ENABLE=1"}},
        "seconds_per_step": best, "all_times": times, "ratios": ratios,
        "floor": {"ratios": floors, "haar_gemms_per_step": HAAR_GEMMS_PER_STEP,
                  "note": "the Haar filter's per-step GEMMs alone (measured GEMM time x "
                          f"{HAAR_GEMMS_PER_STEP} x steps) relative to torch.nn.RNN's step"},
        "targets": {"vs_torch_rnn": 1.0, "vs_torch_lstm": 0.5},
        "benchmark": "rnn_speed", "command": "python benchmarks/rnn_speed.py",
        "machine": {"device": "cpu", "processor": platform.machine(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
