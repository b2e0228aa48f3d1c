"""Cost of one training step in target space relative to weight space (arXiv 2006.01578).

For each width and target-minibatch size n_bar, an MLP (784 -> width -> width -> 10, tanh)
takes one Adam step on a minibatch of 100 in weight space (``nn.Sequential``) and in target
space (:class:`TargetSpaceSequential`: a pass of X_bar through the realisation network plus one
ridge solve per layer, then the ordinary forward and backward pass). A CNN row uses the
paper's conv layout (two 3x3 stride-2 convs). Times are medians over repeated steps in one
process; the ratio target/weight is printed and written to JSON.

    python benchmarks/target_space_cost.py [--quick] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from signalprop.nn.target_space import TargetConv2d, TargetLinear, TargetSpaceSequential


def _mlp(width: int, target: bool) -> list[nn.Module]:
    dense = TargetLinear if target else nn.Linear
    return [nn.Flatten(), dense(784, width), nn.Tanh(), dense(width, width), nn.Tanh(),
            dense(width, 10)]


def _cnn(channels: int, target: bool) -> list[nn.Module]:
    conv = (lambda i, o: TargetConv2d(i, o, 3, 2, 1)) if target else (
        lambda i, o: nn.Conv2d(i, o, 3, 2, 1))
    dense = TargetLinear if target else nn.Linear
    return [conv(1, channels), nn.LeakyReLU(0.01), conv(channels, 2 * channels),
            nn.LeakyReLU(0.01), nn.Flatten(), dense(2 * channels * 7 * 7, 10)]


def _step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "target_space_cost.json")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    widths = (32, 128) if args.quick else (32, 128, 512)
    n_bars = (50, 200) if args.quick else (50, 200, 1000)
    channels = (8,) if args.quick else (8, 32)
    repeats = 5 if args.quick else 15
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    rows = []
    print(f"{'model':>10} {'size':>6} {'n_bar':>6} {'weight ms':>10} {'target ms':>10} "
          f"{'ratio':>7}")
    for kind, sizes, build in (("mlp", widths, _mlp), ("cnn", channels, _cnn)):
        for size in sizes:
            weight_ms = 1e3 * _step_time(nn.Sequential(*build(size, False)), x, y, repeats)
            for n_bar in n_bars:
                x_bar = torch.randn(n_bar, 1, 28, 28)
                model = TargetSpaceSequential(x_bar, build(size, True),
                                              ridge=1e-3 if kind == "mlp" else 0.1)
                target_ms = 1e3 * _step_time(model, x, y, repeats)
                ratio = target_ms / weight_ms
                rows.append({"model": kind, "size": size, "n_bar": n_bar, "batch": args.batch,
                             "weight_ms": weight_ms, "target_ms": target_ms, "ratio": ratio})
                print(f"{kind:>10} {size:>6} {n_bar:>6} {weight_ms:>10.2f} {target_ms:>10.2f} "
                      f"{ratio:>7.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "target_space_cost", "quick": args.quick, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "note": "median wall-clock of one Adam step (forward + backward + update), CPU; size "
                "is the MLP width or the CNN's first-layer channels",
        "rows": rows,
        "command": "python benchmarks/target_space_cost.py",
        "ratios": {f"target/weight step, {r['model']} size {r['size']}, {r['n_bar']} targets":
                   r["ratio"] for r in rows},
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
