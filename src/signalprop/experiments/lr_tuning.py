"""The pieces of learning-rate tuning that the study runner (:mod:`.study`) and experiment
declarations share: a log-spaced grid, and the validation split carved from the training data.

Every variant compared in a claim is tuned on the same grid, each candidate trained on the
training data minus the validation split and scored by its validation loss; the test split is
never looked at (:func:`tuning_splits` puts the validation split where tuning runs read "test").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch.utils.data import TensorDataset

from signalprop.data.splits import tensors
from signalprop.errors import ConfigError


def log_spaced(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` learning rates spaced evenly in log between ``low`` and ``high`` (inclusive)."""
    if not 0 < low <= high or count < 1:
        raise ConfigError(f"need 0 < low <= high and count >= 1, got {low}, {high}, {count}")
    if count == 1:
        return (low,)
    step = math.log(high / low) / (count - 1)
    return tuple(float(f"{low * math.exp(i * step):.3g}") for i in range(count))


def _subset(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> TensorDataset:
    return TensorDataset(x[index], y[index])


def carve_validation(splits: Any, n_val: int, seed: int) -> tuple[Any, TensorDataset]:
    """Split ``n_val`` random training examples off as a validation set (test set untouched)."""
    x, y = tensors(splits.train)
    if not 0 < n_val < x.shape[0]:
        raise ConfigError(f"n_val={n_val} must be between 1 and the {x.shape[0]} training examples")
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    val = _subset(x, y, order[:n_val])
    return dataclasses.replace(splits, train=_subset(x, y, order[n_val:])), val


def tuning_splits(splits: Any, n_val: int, seed: int) -> tuple[Any, Any]:
    """``(train_splits, tune_splits)``: the training data without the validation split, and the
    same with the validation split in the place of the test split (what tuning runs score on)."""
    train_splits, val = carve_validation(splits, n_val, seed)
    return train_splits, dataclasses.replace(train_splits, test=val)
