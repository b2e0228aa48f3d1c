"""CPU time per training step of the target-space experiments' models, both spaces.

Sizes the ``--full`` runs and the paper's scale: for each delay k, one Adam step on 100
bit-stream sequences of length k + 50 with k + 3 hidden tanh units, as an
:class:`WeightSpaceElmanRNN` and a :class:`TargetSpaceRNN` with n_bar = 100 realisation
sequences; and one full-batch step of the 2-5-5-5-2 two-spirals net. Times are process CPU
time (``time.process_time``, one thread), so a loaded machine inflates them less than
wall-clock; the median over ``--repeats`` blocks of ``--steps`` steps is reported in ms.

    python benchmarks/target_space_experiment_cost.py [--delays 5,10,20,40,60,90] [--out F.json]
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

from signalprop import data
from signalprop.nn.target_space import ShortcutMLP, TargetSpaceMLP, target_minibatch
from signalprop.nn.target_space_rnn import TargetSpaceRNN, WeightSpaceElmanRNN


def cpu_ms_per_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                    repeats: int) -> float:
    """Median CPU milliseconds of one Adam step (cross-entropy, ignore index -100)."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    blocks = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                               ignore_index=-100)
            loss.backward()
            opt.step()
        blocks.append((time.process_time() - started) / steps * 1000)
    return statistics.median(blocks)


def measure(delays: list[int], batch: int, n_bar: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    rows = []
    for k in delays:
        splits = data.load("bitstream", n_train=max(batch, n_bar), n_test=1, T=k + 50, k=k)
        x, y = splits.train.tensors
        target = TargetSpaceRNN(target_minibatch(x, n_bar), k + 3, 2, ridge=0.1)
        rows.append({"model": f"recall k={k}", "target_ms": cpu_ms_per_step(
            target, x[:batch], y[:batch], steps, repeats), "weight_ms": cpu_ms_per_step(
            WeightSpaceElmanRNN(1, k + 3, 2), x[:batch], y[:batch], steps, repeats)})
    spirals = data.load("spirals", n_train=194, n_test=1, noise=0.0, turns=3.0)
    x, y = spirals.train.tensors
    rows.append({"model": "two spirals 2-5-5-5-2", "target_ms": cpu_ms_per_step(
        TargetSpaceMLP(x, 5, 3, 2, shortcuts=True, ridge=1e-3), x, y, steps * 5, repeats),
        "weight_ms": cpu_ms_per_step(ShortcutMLP(2, 5, 3, 2, "tanh", True), x, y, steps * 5,
                                     repeats)})
    return {"benchmark": "target_space_experiment_cost", "batch": batch, "n_bar": n_bar,
            "threads": torch.get_num_threads(), "machine": platform.machine(),
            "command": "python benchmarks/target_space_experiment_cost.py",
            "ratios": {f"{r['model']}, target/weight CPU per step": r["target_ms"] / r["weight_ms"]
                       for r in rows},
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="5,10,20,40,60,90")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--n-bar", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        delays = [int(d) for d in args.delays.split(",")]
    except ValueError:
        parser.error(f"--delays must be comma-separated integers, got {args.delays!r}")
    torch.set_num_threads(1)
    result = measure(delays, args.batch, args.n_bar, args.steps, args.repeats)
    for row in result["rows"]:
        print(f"{row['model']:>24}: target {row['target_ms']:7.1f} ms, weight "
              f"{row['weight_ms']:6.1f} ms per step (CPU)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
