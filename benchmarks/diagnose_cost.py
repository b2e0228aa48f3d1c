"""Cost of ``signalprop.diagnose`` against one training step (forward, backward, Adam step).

For each model the two are timed alternately in one process (after a warm-up call of each,
median of ``--repeats`` each); the ratio diagnose / step is the number of training steps one
diagnosis costs. The first (cold) diagnose call, which includes torch.func's one-time set-up,
is reported separately.

    python benchmarks/diagnose_cost.py [--quick] [--out benchmarks/results/diagnose_cost.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from signalprop.diagnose.core import diagnose
from signalprop.nn.elman import LastStepClassifier
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterMLP


def _models(quick: bool) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    n = 64 if quick else 128
    depth = 10 if quick else 30
    x, y = torch.randn(n, 40), torch.randint(0, 10, (n,))
    seq = torch.randn(n, 50 if quick else 200, 1)
    ys = torch.randint(0, 2, (n,))
    return {
        f"tanh MLP depth {depth}, width 64": (
            MLP(40, 64, depth, 10, "tanh", 1 / math.sqrt(3)), x, y),
        f"additive-filter MLP depth {depth * 10}, width 64": (
            AdditiveFilterMLP(40, 64, depth * 10, 10), x, y),
        f"nn.RNN(1, 64) on {seq.shape[1]} steps": (
            LastStepClassifier(nn.RNN(1, 64, batch_first=True), 2), seq, ys),
    }


def _time_pair(first, second, repeats: int) -> tuple[float, float]:
    """Medians of ``repeats`` timings of each, taken alternately so that a change in the
    machine's load during the run affects both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller models, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diagnose_cost.json"))
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 21)
    load_before = os.getloadavg()
    ratios, details = {}, {}
    for name, (model, x, y) in _models(args.quick).items():
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, x=x, y=y, opt=opt) -> None:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        cold_start = time.perf_counter()
        result = diagnose(model, (x, y))
        cold = time.perf_counter() - cold_start
        step()
        t_step, t_diag = _time_pair(
            step, lambda model=model, x=x, y=y: diagnose(model, (x, y)), repeats)
        ratios[name] = t_diag / t_step
        details[name] = {"step_s": t_step, "diagnose_s": t_diag, "diagnose_cold_s": cold,
                         "phases_s": result.cost, "jacobian": result.jacobian["method"],
                         "verdict": result.verdict}
        print(f"{name:45s} step {t_step * 1e3:8.1f} ms  diagnose {t_diag * 1e3:8.1f} ms  "
              f"ratio {ratios[name]:6.1f}  (cold {cold:.2f} s, {result.jacobian['method']})",
              flush=True)
    data = {
        "benchmark": "diagnose_cost",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": "cpu", "cpus": os.cpu_count(),
                    "load_average_1min": {"before": load_before[0],
                                          "after": os.getloadavg()[0]}},
        "command": " ".join(["python", *sys.argv]),
        "ratios": ratios,
        "details": details,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
