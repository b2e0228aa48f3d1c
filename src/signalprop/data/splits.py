"""The :class:`Splits` record that every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, TensorDataset


@dataclass
class Splits:
    """A train/test pair of datasets plus what a model needs to know about them.

    ``train`` and ``test`` are ``TensorDataset(x, y)``. ``input_shape`` and ``output_shape``
    are per example: ``output_shape`` is ``()`` for one label per example, ``(T,)`` for
    per-step labels and ``(1,)`` for a scalar regression target.
    """

    name: str
    train: Dataset
    test: Dataset
    task: str
    num_classes: int | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] = ()


def make_splits(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    task: str = "classification",
    num_classes: int | None = None,
) -> Splits:
    """Wrap ``(x, y)`` tensor pairs as :class:`Splits`, reading the shapes off the tensors."""
    x_train, y_train = train
    return Splits(
        name=name,
        train=TensorDataset(x_train, y_train),
        test=TensorDataset(*test),
        task=task,
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[1:]),
        output_shape=tuple(y_train.shape[1:]),
    )


def tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the ``(x, y)`` tensors of a two-tensor ``TensorDataset``."""
    if not isinstance(dataset, TensorDataset) or len(dataset.tensors) != 2:
        raise TypeError(f"expected TensorDataset(x, y), got {type(dataset).__name__}")
    x, y = dataset.tensors
    return x, y
