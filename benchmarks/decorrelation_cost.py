"""Per-step cost of decorrelated networks relative to plain ones, side by side in one process.

A step is forward + backward + Adam step (+ the R update for the decorrelated network, with
the paper's 10% sub-sample). Plain and decorrelated steps are timed back to back in each of
``--rounds`` rounds (21) of ``--repeats`` steps (10); the per-step times are medians over rounds,
the ratio is the median of the per-round ratios and its quartiles show their spread. The
clock is this process's CPU time (``time.process_time``), so other jobs' CPU time does not
count, though their load on shared caches and memory still can (the memory-bound block
products suffer most); with ``--threads 1`` it equals the single-threaded compute time.
Ratios are printed and written to JSON, with the multiply-add count of each step (counted from
the layers' shapes, forward and backward matmuls only), whose ratio is the floor a dense ``R``
sets on the time ratio. The 1.3x target is judged on the experiment's MLP (batch 256) and on
the paper's 1000-wide MLP.

    python benchmarks/decorrelation_cost.py [--quick] [--block-sizes 16,32,98] [--rounds 21]
        [--repeats 10] [--out FILE.json]

Each network is timed with the paper's dense ``R`` and with a block-diagonal ``R`` (blocks of
``b`` features, not in the paper), whose multiply-adds are ``d b`` instead of ``d^2``: the
experiment's MLP with every ``--block-sizes`` entry, the other networks with the first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from signalprop.experiments.decorrelation_models import ModelConfig, make_cnn, make_mlp
from signalprop.learning.decorrelation_rule import decorrelation_step
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear
from signalprop.nn.decorrelation_policy import decorrelate

TARGET_MLP = 1.3
BLOCK_SIZES = (16, 32, 98)  # block-diagonal R for the experiment's MLP (as decorrelation-speedup)


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              update: Callable[[nn.Module], object] | None):
    """One training step: forward, backward, Adam, then ``update(model)`` (the R update)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if update is not None:
            update(model)
    return step


def _layer_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, int, int, bool]]:
    """``(layer, rows, batch, input needs grad)`` for every Linear/Conv2d in one training forward;
    ``rows`` counts the layer's input rows (conv: images x output positions)."""
    seen: list[tuple[nn.Module, int, int, bool]] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        rows = output.numel() // output.shape[1] if output.dim() > 2 else output.shape[0]
        seen.append((module, rows, args[0].shape[0], args[0].requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Linear | nn.Conv2d)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def multiply_adds(decor: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Multiply-adds per step: the plain layers (forward, dW, dx where needed) and what ``R``
    adds (applying it in the cheaper order, and the update from the sub-sample). A dense ``R``
    has ``d^2`` entries; a block-diagonal one ``d b`` (``entries`` below)."""
    plain = apply = update = 0
    for layer, rows, batch, input_grad in _layer_shapes(decor, x):
        d = layer.weight[0].numel()
        out = layer.weight.shape[0]
        plain += rows * d * out * (2 + input_grad)
        dec = layer.decorrelator
        cost = dec.product_macs  # d^2 per row, or d b for blocks (small products: dense)
        images = dec.sample_count(batch)
        k = images * rows // batch  # conv: every position of the sampled images
        if isinstance(layer, DecorrelatedLinear) and not layer.fused(
                rows, input_grad, True, False, True):
            apply += cost(rows) * (1 + input_grad)
        else:
            assert isinstance(layer, DecorrelatedLinear | DecorrelatedConv2d)
            apply += 2 * cost(out) + cost(k)  # W R, dW R^T, z_s = R (x_s - mu)
        for g in dec.groups:
            block = g.count * g.size * g.size
            update += 2 * k * block if k <= g.size else k * block + g.count * g.size**3
        dec._sample = None
    return {"plain_madds": plain, "apply_R_madds": apply, "update_R_madds": update,
            "madds_ratio": (plain + apply + update) / plain}


def time_steps(step, repeats: int) -> float:
    """Process CPU seconds per call of ``step`` over ``repeats`` calls."""
    start = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - start) / repeats


def compare(name: str, build, x: torch.Tensor, rounds: int, repeats: int,
            block_size: int | None = None) -> dict:
    """Median per-step seconds of the plain and decorrelated builds of one network."""
    y = torch.randint(0, 10, (x.shape[0],))
    torch.manual_seed(0)
    plain = build()
    torch.manual_seed(0)
    decor = decorrelate(build(), lr=1e-5, block_size=block_size)
    steps = {"plain": make_step(plain, x, y, None),
             "decorrelated": make_step(decor, x, y, decorrelation_step)}
    for step in steps.values():  # warm-up
        time_steps(step, 2)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            times[key].append(time_steps(step, repeats))
    plain_s = statistics.median(times["plain"])
    decor_s = statistics.median(times["decorrelated"])
    # each round times both back to back: the median of the per-round ratios is less exposed
    # to the machine drifting between rounds than the ratio of the medians
    ratios = [d / p for d, p in zip(times["decorrelated"], times["plain"], strict=True)]
    ratio = statistics.median(ratios)
    # the spread of the per-round ratios: a shared machine's load moves them by a few per cent
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio,) * 3
    if block_size is not None:
        name = f"{name}, R blocks of {block_size}"
    row = {"network": name, "batch": x.shape[0], "block_size": block_size,
           "plain_ms": 1e3 * plain_s, "decorrelated_ms": 1e3 * decor_s, "ratio": ratio,
           "ratio_quartiles": [low, high],
           **multiply_adds(decor, x)}
    print(f"{name:<56} batch {x.shape[0]:>5}  plain {row['plain_ms']:8.2f} ms  "
          f"decorrelated {row['decorrelated_ms']:8.2f} ms  ratio {row['ratio']:.2f}x "
          f"[{low:.2f}-{high:.2f}]  (multiply-adds {row['madds_ratio']:.2f}x)", flush=True)
    return row


def _floor(row: dict) -> str:
    """The multiply-add floor of one row, in words."""
    return (f"floor: {row['network']}, batch {row['batch']}: the plain step is "
            f"{row['plain_madds'] / 1e6:.0f}M multiply-adds; a dense R adds "
            f"{row['apply_R_madds'] / 1e6:.0f}M to apply it (cheaper of W R and x R^T per layer) "
            f"and {row['update_R_madds'] / 1e6:.0f}M for the update: {row['madds_ratio']:.2f}x the "
            f"multiply-adds (the time ratio can differ by how fast each matmul shape runs)")


def _sizes(text: str) -> tuple[int, ...]:
    """``"16,32"`` -> ``(16, 32)``; positive integers only."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"block sizes must be positive, got {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "decorrelation_cost.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--block-sizes", type=_sizes, default=BLOCK_SIZES,
                        help="comma-separated features per diagonal block of R (default "
                        "16,32,98)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timing rounds per network (default 21, 3 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="steps per round (default 10, 3 with --quick)")
    args = parser.parse_args()
    for option in ("threads", "rounds", "repeats"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be a positive integer, got {value}")
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 21)
    repeats = args.repeats or (3 if args.quick else 10)
    mlp = ModelConfig(width=256, depth=3)
    wide = ModelConfig(width=1000, depth=4)
    tiny = ModelConfig(width=32, depth=3)
    cnn = ModelConfig(width=256, channels=(8, 16))
    sizes = args.block_sizes
    block = sizes[0]
    cases = [
        ("MLP 784-256x3-10 (Fashion-MNIST exp.)", lambda: make_mlp(784, 10, mlp),
         torch.randn(256, 784), size) for size in (None, *sizes)
    ] + [
        ("MLP 40-256x3-10 (MNIST-1D)", lambda: make_mlp(40, 10, mlp), torch.randn(256, 40), None),
        ("CNN 1-8-16 28x28 (Fashion-MNIST exp.)", lambda: make_cnn((1, 28, 28), 10, cnn),
         torch.randn(256, 1, 28, 28), None),
        ("CNN 1-8-16 28x28 (Fashion-MNIST exp.)", lambda: make_cnn((1, 28, 28), 10, cnn),
         torch.randn(256, 1, 28, 28), block),
    ]
    if not args.quick:
        cases[1 + len(sizes):1 + len(sizes)] = [
            ("MLP 784-256x3-10 (Fashion-MNIST exp.)", lambda: make_mlp(784, 10, mlp),
             torch.randn(1024, 784), None),
            ("MLP 784-256x3-10 (Fashion-MNIST exp.)", lambda: make_mlp(784, 10, mlp),
             torch.randn(1024, 784), block),
            ("MLP 784-256x3-10 (Fashion-MNIST exp.)", lambda: make_mlp(784, 10, mlp),
             torch.randn(4096, 784), None),  # R's fused cost does not grow with batch
            ("MLP 784-1000x4-10 (paper width)", lambda: make_mlp(784, 10, wide),
             torch.randn(256, 784), None),
            ("MLP 784-1000x4-10 (paper width)", lambda: make_mlp(784, 10, wide),
             torch.randn(256, 784), block),
            # almost no arithmetic: the difference in ms is the per-step cost of the extra ops
            ("MLP 64-32x3-10 (overhead probe)", lambda: make_mlp(64, 10, tiny),
             torch.randn(32, 64), None),
            ("MLP 64-32x3-10 (overhead probe)", lambda: make_mlp(64, 10, tiny),
             torch.randn(32, 64), block),
        ]
    rows = [compare(name, build, x, rounds, repeats, b) for name, build, x, b in cases]
    verdicts = {}
    # the experiment's MLP at batch 256 (dense R, then blocks), and the paper's 1000-wide MLP
    targets = rows[:1 + len(sizes)] + [row for row in rows if "paper width" in row["network"]]
    for row in targets:
        verdict = "met" if row["ratio"] < TARGET_MLP else "missed"
        kind = ("dense R (paper)" if row["block_size"] is None
                else f"R blocks of {row['block_size']}")
        if "paper width" in row["network"]:
            kind = f"paper-width MLP, {kind}"
        verdicts[kind] = verdict
        low, high = row["ratio_quartiles"]
        print(f"target: decorrelated MLP step < {TARGET_MLP}x plain, {kind} -> {verdict} "
              f"({row['ratio']:.2f}x, per-round quartiles {low:.2f}-{high:.2f}, batch "
              f"{row['batch']})")
    floor = _floor(rows[0])
    print(floor)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "decorrelation_cost", "quick": args.quick, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.machine(), "clock": "process CPU time",
        "target_mlp_ratio": TARGET_MLP, "mlp_target": verdicts, "block_sizes": list(sizes),
        "rounds": rounds, "steps_per_round": repeats, "floor": floor, "rows": rows,
        "command": "python benchmarks/decorrelation_cost.py",
        "ratios": {f"decorrelated/plain step, {r['network']}, batch {r['batch']}": r["ratio"]
                   for r in rows},
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
