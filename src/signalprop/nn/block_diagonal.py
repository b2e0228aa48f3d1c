"""Block-diagonal views of a square matrix, for a decorrelating ``R`` restricted to blocks.

A ``d x d`` matrix is split into diagonal blocks of ``block_size`` features (the last block
takes the remainder). ``R`` stays one dense buffer whose off-block entries are zero; the blocks
are strided views of it (no copy), so updates made through them land in ``R``. Applying such an
``R`` to ``n`` rows costs ``n d b`` multiply-adds instead of ``n d^2``.

Not from Ahmad (arXiv 2407.10780), whose ``R`` is dense: a cheaper option whose cost falls by
``d / b``; each block decorrelates only the features inside it.

The entries off the blocks must be zero (the decorrelator keeps them so): a product small enough
that one dense matmul beats the per-block work (``DENSE_MACS``) is done densely.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# up to this many multiply-adds (``n d^2``) one dense matmul beats the per-block ``bmm`` and its
# copy (about 8-10 us of fixed cost): with blocks of 16 on one CPU core the crossover was
# 0.26-0.43M (``benchmarks/block_crossover.py``); 10 rows of 256 took 19 us dense, 11 by blocks
DENSE_MACS = 1 << 18
# time of one multiply-add of a block product relative to one in a dense matmul: with blocks of
# 16, ``apply_rows`` (the ``bmm`` and its copy back to row-major) ran at 23-27 GMAC/s against
# 54 GMAC/s for the dense products of the same layers (one CPU core, batch 256, d = 256, 784)
BLOCK_MAC_COST = 2.0


class BlockGroup(NamedTuple):
    """``count`` consecutive diagonal blocks of ``size`` features starting at feature ``start``."""

    start: int
    count: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.count * self.size


def block_groups(features: int, block_size: int | None) -> tuple[BlockGroup, ...]:
    """Equal blocks of ``block_size`` plus one remainder block; one block when dense."""
    if block_size is None or block_size >= features:
        return (BlockGroup(0, 1, features),)
    full, rest = divmod(features, block_size)
    groups = [BlockGroup(0, full, block_size)]
    if rest:
        groups.append(BlockGroup(full * block_size, 1, rest))
    return tuple(groups)


def block_mask(features: int, groups: tuple[BlockGroup, ...]) -> Tensor:
    """Boolean ``d x d`` mask of the diagonal blocks."""
    ids = torch.empty(features, dtype=torch.long)
    first = 0
    for g in groups:
        ids[g.start : g.stop] = torch.arange(first, first + g.count).repeat_interleave(g.size)
        first += g.count
    return ids[:, None] == ids[None, :]


def block_view(matrix: Tensor, group: BlockGroup, transpose: bool = False) -> Tensor:
    """The group's diagonal blocks of a square ``matrix`` (any strides) as a ``(count, b, b)``
    view; each block transposed when ``transpose``."""
    rows, cols = matrix.stride()
    if transpose:
        rows, cols = cols, rows
    b = group.size
    offset = matrix.storage_offset() + group.start * (rows + cols)
    return matrix.as_strided((group.count, b, b), (b * (rows + cols), rows, cols), offset)


def done_densely(rows: int, groups: tuple[BlockGroup, ...], dense_macs: int = DENSE_MACS) -> bool:
    """Whether :func:`apply_rows` multiplies ``rows`` rows by one dense matmul: ``M`` is a single
    block, or the dense product has at most ``dense_macs`` multiply-adds."""
    d = groups[-1].stop
    return (len(groups) == 1 and groups[0].count == 1) or rows * d * d <= dense_macs


def apply_rows(rows: Tensor, matrix: Tensor, groups: tuple[BlockGroup, ...],
               dense_macs: int = DENSE_MACS) -> Tensor:
    """``rows M^T`` for a block-diagonal ``M`` (``rows`` is ``(n, d)``), as a row-major
    ``(n, d)`` tensor; differentiable in ``rows`` (and ``M``) with plain autograd and
    ``torch.func``. Each group is one ``bmm`` over ``(count, n, b)`` strided views, unless
    :func:`done_densely` (``dense_macs=-1`` forces the blocks, for benchmarks)."""
    n = rows.shape[0]
    if done_densely(n, groups, dense_macs):
        return rows @ matrix.T
    parts = []
    for g in groups:
        blocks_t = block_view(matrix, g, transpose=True)
        if g.count == 1:
            parts.append(rows[:, g.start : g.stop] @ blocks_t[0])
            continue
        out = torch.bmm(split_rows(rows, g), blocks_t)
        parts.append(out.transpose(0, 1).reshape(n, g.count * g.size))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def right_multiply(weight: Tensor, matrix: Tensor, groups: tuple[BlockGroup, ...]) -> Tensor:
    """``W M`` for a block-diagonal ``M`` (``W`` is ``(out, d)``): ``W M = W (M^T)^T``."""
    if done_densely(weight.shape[0], groups):
        return weight @ matrix
    return apply_rows(weight, matrix.T, groups)


def split_rows(rows: Tensor, group: BlockGroup) -> Tensor:
    """``(n, d)`` rows restricted to the group, as ``(count, n, b)``."""
    whole = group.start == 0 and group.stop == rows.shape[1]  # no slice op (nor autograd node)
    seg = rows if whole else rows[:, group.start : group.stop]
    return seg.reshape(rows.shape[0], group.count, group.size).transpose(0, 1)
