"""Shared plumbing for synthetic tasks: per-split generators and size checks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from signalprop.data.options import derive_seed, positive_int
from signalprop.data.splits import Splits, make_splits

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def generator(seed: int, split: str) -> torch.Generator:
    """A CPU generator for ``split`` ("train" or "test"); the two splits never share a seed."""
    return torch.Generator().manual_seed(derive_seed(seed, split))


def build(
    name: str,
    sample: Sampler,
    *,
    seed: int,
    n_train: int,
    n_test: int,
    task: str = "classification",
    num_classes: int | None = None,
) -> Splits:
    """Draw ``n_train``/``n_test`` examples with ``sample(n, generator)`` and wrap them."""
    n_train = positive_int("n_train", n_train)
    n_test = positive_int("n_test", n_test)
    train = sample(n_train, generator(seed, f"{name}/train"))
    test = sample(n_test, generator(seed, f"{name}/test"))
    return make_splits(name, train, test, task=task, num_classes=num_classes)
