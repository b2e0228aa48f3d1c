"""One training step (forward + backward) of the additive-filter RNN vs torch.nn.RNN / LSTM.

Batch 128, hidden 128, 784 steps, 1 input feature, a linear head on the last state and a
cross-entropy loss; all models timed in the same process, interleaved, best of ``--repeats``.
Prints the ratios and writes them to JSON (default benchmarks/results/rnn_speed.json).
``additive_filter_bptt`` is the paper's Haar-random filter (hand-written BPTT),
``additive_filter_loop`` the lean autograd loop, ``additive_filter_perm_bptt`` the cheaper
random-permutation filter option (``O h`` is a gather, one GEMM per step each way).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rnn_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN, LastStepClassifier


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="196 steps, 2 repeats")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "rnn_speed.json")
    args = parser.parse_args()
    steps = args.steps or (196 if args.quick else 784)
    repeats = args.repeats or (2 if args.quick else 5)
    torch.manual_seed(0)
    x = torch.randn(args.batch, steps, 1)
    y = torch.randint(0, 10, (args.batch,))
    h = args.hidden
    models = {
        "additive_filter_bptt": LastStepClassifier(AdditiveFilterRNN(1, h, impl="bptt"), h, 10),
        "additive_filter_loop": LastStepClassifier(AdditiveFilterRNN(1, h, impl="loop"), h, 10),
        "additive_filter_perm_bptt": LastStepClassifier(
            AdditiveFilterRNN(1, h, filter="permutation"), h, 10),
        "torch_rnn": LastStepClassifier(nn.RNN(1, h, batch_first=True), h, 10),
        "torch_lstm": LastStepClassifier(nn.LSTM(1, h, batch_first=True), h, 10),
    }
    for model in models.values():  # warm-up
        step_time(model, x, y)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(step_time(model, x, y))
    best = {name: min(values) for name, values in times.items()}
    ratios = {
        f"{name}_vs_torch_{base}": best[name] / best[f"torch_{base}"]
        for name in ("additive_filter_bptt", "additive_filter_loop", "additive_filter_perm_bptt")
        for base in ("rnn", "lstm")
    }
    for name, value in best.items():
        print(f"{name:24s} {value:.4f} s/step")
    for name, value in ratios.items():
        print(f"{name:40s} {value:.3f}x")
    result = {
        "config": {"batch": args.batch, "hidden": h, "steps": steps, "repeats": repeats,
                   "quick": args.quick, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "machine": platform.machine()},
        "seconds_per_step": best, "all_times": times, "ratios": ratios,
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
