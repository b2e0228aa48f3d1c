"""The shared learning-rate tuning: validation split, sweep, choice and record."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from signalprop.data.splits import make_splits
from signalprop.errors import ConfigError, DivergenceError
from signalprop.experiments import lr_tuning
from signalprop.train import TrainConfig, fit


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


def test_choose_skips_diverged_rates_and_breaks_ties_low():
    assert lr_tuning.choose({0.1: math.inf, 0.01: 0.5, 0.001: 0.7}) == 0.01
    assert lr_tuning.choose({0.1: 0.5, 0.01: 0.5}) == 0.01
    with pytest.raises(ConfigError, match="diverged"):
        lr_tuning.choose({0.1: math.inf})


class _Ctx:
    """Scores each rate by a fixed validation loss; one rate diverges."""

    def __init__(self, losses: dict[float, float | None]):
        self.losses, self.names = losses, []

    def fit(self, name: str, model: nn.Module, splits: Any, train: TrainConfig, **_: Any):
        self.names.append(name)
        loss = self.losses[train.lr]
        if loss is None:
            raise DivergenceError("loss is nan")
        return {"test_loss": loss}


def test_tune_lr_picks_the_best_validation_loss_and_records_every_candidate():
    ctx = _Ctx({1e-3: 0.9, 1e-2: 0.4, 1e-1: None})
    tuned = lr_tuning.tune_lr(ctx, "bp", lambda: (nn.Linear(4, 3), ()), _splits(),
                              TrainConfig(epochs=9), (1e-3, 1e-2, 1e-1), epochs=1, seed=0)
    assert tuned.lr == 1e-2
    assert tuned.scores[1e-1] == math.inf
    assert tuned.record() == {"lr": 1e-2, "validation_loss": {"0.001": 0.9, "0.01": 0.4,
                                                                "0.1": math.inf}}
    assert ctx.names == ["tune-bp-lr0.001", "tune-bp-lr0.01", "tune-bp-lr0.1"]


def test_tune_lr_trains_for_real(tmp_path: Path):
    """With a real ``fit``, a tiny rate cannot beat a reasonable one on separable data."""
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    y = (x[:, 0] > 0).long()
    splits = make_splits("toy", (x, y), (x[:50], y[:50]), num_classes=2)
    train_splits, tune = lr_tuning.tuning_splits(splits, 50, seed=0)

    class Ctx:
        def fit(self, name, model, splits, train, seed, rules):
            return fit(model, splits.train, splits.test, train, tmp_path / name, seed=seed,
                       task=splits.task, rules=rules, progress=False)

    tuned = lr_tuning.tune_lr(Ctx(), "lin", lambda: (nn.Linear(4, 2), ()), tune,
                              TrainConfig(batch_size=25, optimizer="sgd"), (1e-5, 0.3),
                              epochs=3, seed=0)
    assert tuned.lr == 0.3 and tuned.scores[0.3] < tuned.scores[1e-5]


def test_tune_settings_picks_the_best_candidate_and_diverged_ones_lose():
    ctx = _Ctx({1e-3: 0.9, 1e-2: 0.4, 1e-1: None})

    def candidate(lr: float):
        return lambda: (nn.Linear(4, 3), (), TrainConfig(epochs=9, lr=lr))

    candidates = {"slow": candidate(1e-3), "fast": candidate(1e-2), "wild": candidate(1e-1)}
    tuned = lr_tuning.tune_settings(ctx, "sal", candidates, _splits(), epochs=1, seed=0)
    assert tuned.label == "fast"
    assert tuned.record() == {"choice": "fast",
                              "validation_loss": {"slow": 0.9, "fast": 0.4, "wild": math.inf}}
    assert ctx.names == ["tune-sal-slow", "tune-sal-fast", "tune-sal-wild"]
    with pytest.raises(ConfigError, match="diverged"):
        lr_tuning.tune_settings(ctx, "sal", {"wild": candidate(1e-1)}, _splits(), 1, 0)
    with pytest.raises(ConfigError, match="no candidate"):
        lr_tuning.tune_settings(ctx, "sal", {}, _splits(), 1, 0)


def test_first_seed_tuning_sweeps_once_per_key_unless_every_seed():
    sweeps = []

    def sweep(tag: str):
        sweeps.append(tag)
        return f"choice-{tag}"

    once = lr_tuning.FirstSeedTuning[str]()
    assert once.get("bp", lambda: sweep("bp-s0")) == "choice-bp-s0" and once.fresh
    assert once.get("bp", lambda: sweep("bp-s1")) == "choice-bp-s0" and not once.fresh
    assert once.get("decor", lambda: sweep("decor-s1")) == "choice-decor-s1" and once.fresh
    every = lr_tuning.FirstSeedTuning[str](every_seed=True)
    every.get("bp", lambda: sweep("e0"))
    assert every.get("bp", lambda: sweep("e1")) == "choice-e1" and every.fresh
    assert sweeps == ["bp-s0", "decor-s1", "e0", "e1"]
