"""Where one dense matmul beats the block-by-block product of a block-diagonal ``R``.

Times ``rows @ R^T`` done densely (``n d^2`` multiply-adds) against ``apply_rows`` over blocks
(``bmm`` per block group plus the copy back to row-major), side by side for a grid of widths
``d`` and row counts ``n``, and prints the dense multiply-add count where blocks start to win.
``signalprop.nn.block_diagonal.DENSE_MACS`` is set from this crossover.

    python benchmarks/block_crossover.py [--block-size 16] [--repeats 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from signalprop.nn.block_diagonal import DENSE_MACS, apply_rows
from signalprop.nn.decorrelation import Decorrelator

WIDTHS = (32, 64, 128, 256, 784)
ROWS = (1, 4, 10, 26, 64, 256)


def by_blocks(rows: torch.Tensor, dec: Decorrelator) -> torch.Tensor:
    """``rows R^T`` over ``R``'s blocks, always (``apply_rows`` without its dense shortcut)."""
    return apply_rows(rows, dec.R, dec.groups, dense_macs=-1)


def microseconds(fn, repeats: int) -> float:
    """Median of 5 timings of ``repeats`` calls, in process CPU microseconds per call."""
    for _ in range(max(10, repeats // 50)):
        fn()
    times = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeats):
            fn()
        times.append((time.process_time() - start) / repeats * 1e6)
    return sorted(times)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.block_size < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--block-size, --repeats and --threads must be positive integers")
    torch.set_num_threads(args.threads)
    print(f"{'d':>5} {'n':>5} {'dense MACs':>11} {'dense us':>9} {'blocks us':>9}  faster")
    dense_wins, block_wins = [], []
    for d in WIDTHS:
        if d <= args.block_size:
            continue
        dec = Decorrelator(d, block_size=args.block_size)
        for n in ROWS:
            rows = torch.randn(n, d)
            dense = microseconds(lambda rows=rows, dec=dec: rows @ dec.R.T, args.repeats)
            blocks = microseconds(lambda rows=rows, dec=dec: by_blocks(rows, dec), args.repeats)
            macs = n * d * d
            (dense_wins if dense <= blocks else block_wins).append(macs)
            print(f"{d:5d} {n:5d} {macs:11,d} {dense:9.1f} {blocks:9.1f}  "
                  f"{'dense' if dense <= blocks else 'blocks'}")
    largest_dense = max(dense_wins, default=0)
    smallest_block = min(block_wins, default=0)
    print(f"dense won up to {largest_dense:,d} multiply-adds; blocks won from "
          f"{smallest_block:,d}; DENSE_MACS = {DENSE_MACS:,d}")


if __name__ == "__main__":
    main()
