"""Pixel-by-pixel sequence views of image datasets (sequential and permuted MNIST)."""

from __future__ import annotations

import torch

from signalprop.data.options import choice
from signalprop.data.splits import Splits, make_splits, tensors
from signalprop.errors import ConfigError

MODES = ("pixel", "permuted")


def permutation(length: int, perm_seed: int = 0) -> torch.Tensor:
    """The fixed permutation of ``length`` steps drawn from ``manual_seed(perm_seed)``.

    It depends only on ``(length, perm_seed)``: the same in every process and DataLoader
    worker, and for train and test.
    """
    return torch.randperm(length, generator=torch.Generator().manual_seed(perm_seed))


def to_sequence(x: torch.Tensor) -> torch.Tensor:
    """Images to row-major pixel sequences: (N, C, H, W) -> (N, H*W, C); (N, H, W) or
    (N, D) -> (N, H*W or D, 1)."""
    if x.ndim == 4:
        return x.flatten(2).transpose(1, 2).contiguous()
    if x.ndim in (2, 3):
        return x.flatten(1).unsqueeze(2)
    raise ConfigError(f"cannot make pixel sequences from inputs of shape {tuple(x.shape[1:])}")


def sequential_view(splits: Splits, mode: str = "pixel", *, perm_seed: int = 0) -> Splits:
    """Turn image ``splits`` into sequences read one pixel per step.

    ``mode="pixel"`` reads in row-major order (sMNIST); ``"permuted"`` reads in the order of
    :func:`permutation` (psMNIST), identical for train and test.
    """
    choice("sequential", mode, MODES)
    x_train, y_train = tensors(splits.train)
    x_test, y_test = tensors(splits.test)
    seq_train, seq_test = to_sequence(x_train), to_sequence(x_test)
    if mode == "permuted":
        perm = permutation(seq_train.shape[1], perm_seed)
        seq_train, seq_test = seq_train[:, perm], seq_test[:, perm]
    return make_splits(
        f"{splits.name}-{mode}", (seq_train, y_train), (seq_test, y_test),
        task=splits.task, num_classes=splits.num_classes,
    )
