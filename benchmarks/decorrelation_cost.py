"""Per-step cost of decorrelated networks relative to plain ones, side by side in one process.

A step is forward + backward + Adam step (+ the R update for the decorrelated network, with
the paper's 10% sub-sample). Plain and decorrelated steps are timed in interleaved rounds and
the median per-step time is reported. Ratios are printed and written to JSON.

    python benchmarks/decorrelation_cost.py [--quick] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from signalprop.experiments.decorrelation import ModelConfig, make_cnn, make_mlp
from signalprop.learning.decorrelation_rule import decorrelation_step
from signalprop.nn.decorrelated_layers import decorrelate

TARGET_MLP = 1.3


def _step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, decorrelated: bool):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if decorrelated:
            decorrelation_step(model)
    return step


def _time(step, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def compare(name: str, build, x: torch.Tensor, rounds: int, repeats: int) -> dict:
    """Median per-step seconds of the plain and decorrelated builds of one network."""
    y = torch.randint(0, 10, (x.shape[0],))
    torch.manual_seed(0)
    plain = build()
    torch.manual_seed(0)
    decor = decorrelate(build(), lr=1e-5)
    steps = {"plain": _step_fn(plain, x, y, False), "decorrelated": _step_fn(decor, x, y, True)}
    for step in steps.values():  # warm-up
        _time(step, 2)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            times[key].append(_time(step, repeats))
    plain_s = statistics.median(times["plain"])
    decor_s = statistics.median(times["decorrelated"])
    row = {"network": name, "batch": x.shape[0], "plain_ms": 1e3 * plain_s,
           "decorrelated_ms": 1e3 * decor_s, "ratio": decor_s / plain_s}
    print(f"{name:<40} batch {x.shape[0]:>5}  plain {row['plain_ms']:8.2f} ms  "
          f"decorrelated {row['decorrelated_ms']:8.2f} ms  ratio {row['ratio']:.2f}x", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "decorrelation_cost.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds, repeats = (3, 3) if args.quick else (7, 5)
    mlp = ModelConfig(width=256, depth=3)
    wide = ModelConfig(width=1000, depth=4)
    cnn = ModelConfig(width=256, channels=(8, 16))
    cases = [
        ("MLP 784-256x3-10 (Fashion-MNIST exp.)", lambda: make_mlp(784, 10, mlp),
         torch.randn(256, 784)),
        ("MLP 40-256x3-10 (MNIST-1D)", lambda: make_mlp(40, 10, mlp), torch.randn(256, 40)),
        ("CNN 1-8-16 28x28 (Fashion-MNIST exp.)", lambda: make_cnn((1, 28, 28), 10, cnn),
         torch.randn(256, 1, 28, 28)),
    ]
    if not args.quick:
        cases.insert(1, ("MLP 784-256x3-10 (Fashion-MNIST exp.)", lambda: make_mlp(784, 10, mlp),
                         torch.randn(1024, 784)))
        cases.insert(2, ("MLP 784-1000x4-10 (paper width)", lambda: make_mlp(784, 10, wide),
                         torch.randn(256, 784)))
    rows = [compare(name, build, x, rounds, repeats) for name, build, x in cases]
    main_ratio = rows[0]["ratio"]
    verdict = "met" if main_ratio < TARGET_MLP else "missed"
    print(f"target: decorrelated MLP step < {TARGET_MLP}x plain -> {verdict} "
          f"({main_ratio:.2f}x for {rows[0]['network']}, batch {rows[0]['batch']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "decorrelation_cost", "quick": args.quick, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.machine(),
        "target_mlp_ratio": TARGET_MLP, "mlp_target": verdict, "rows": rows,
        "command": "python benchmarks/decorrelation_cost.py",
        "ratios": {f"decorrelated/plain step, {r['network']}, batch {r['batch']}": r["ratio"]
                   for r in rows},
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
