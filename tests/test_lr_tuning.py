"""The shared learning-rate tuning: validation split, sweep, choice and record."""

from __future__ import annotations

import pytest
import torch

from signalprop.data.splits import make_splits
from signalprop.errors import ConfigError
from signalprop.experiments import lr_tuning


def _splits(n=50, classes=3):
    x = torch.randn(n, 4)
    y = torch.arange(n) % classes
    return make_splits("toy", (x, y), (x[:10], y[:10]), num_classes=classes)


def test_carve_validation_is_disjoint_and_seeded():
    splits = _splits()
    train, val = lr_tuning.carve_validation(splits, 10, seed=3)
    assert len(train.train) == 40 and len(val) == 10
    rows = {tuple(r.tolist()) for r in train.train.tensors[0]}
    assert not rows & {tuple(r.tolist()) for r in val.tensors[0]}
    again, val2 = lr_tuning.carve_validation(splits, 10, seed=3)
    assert torch.equal(val.tensors[0], val2.tensors[0])
    assert splits.test is train.test
    with pytest.raises(ConfigError):
        lr_tuning.carve_validation(splits, 50, seed=0)


def test_tuning_splits_score_on_validation_never_on_test():
    splits = _splits()
    train, tune = lr_tuning.tuning_splits(splits, 10, seed=1)
    assert train.test is splits.test
    assert tune.train is train.train and tune.test is not splits.test and len(tune.test) == 10


def test_log_spaced_sweep():
    assert lr_tuning.log_spaced(1e-4, 1e-2, 3) == (1e-4, 1e-3, 1e-2)
    assert lr_tuning.log_spaced(0.1, 0.1, 1) == (0.1,)
    with pytest.raises(ConfigError):
        lr_tuning.log_spaced(0.0, 1.0, 3)
