"""Learning-rate tuning with an equal budget for a method and its baselines.

Every variant compared in a claim gets the same log-spaced sweep of learning rates, each trained
for the same number of epochs on the training data minus a held-out validation split and scored
by its validation loss; the test split is never looked at. The chosen rate and the score of
every candidate are recorded in the run (``TunedLR.record``), so the choice can be audited.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import nn
from torch.utils.data import TensorDataset

from signalprop.data.splits import tensors
from signalprop.errors import ConfigError, DivergenceError
from signalprop.learning.base import LearningRule
from signalprop.train import TrainConfig, seed_everything

Choice = TypeVar("Choice")
ModelFactory = Callable[[], tuple[nn.Module, tuple[LearningRule, ...]]]
#: A candidate setting: builds its model, learning rules and training config (lr included).
Candidate = Callable[[], tuple[nn.Module, tuple[LearningRule, ...], TrainConfig]]


def log_spaced(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` learning rates spaced evenly in log between ``low`` and ``high`` (inclusive)."""
    if not 0 < low <= high or count < 1:
        raise ConfigError(f"need 0 < low <= high and count >= 1, got {low}, {high}, {count}")
    if count == 1:
        return (low,)
    step = math.log(high / low) / (count - 1)
    return tuple(float(f"{low * math.exp(i * step):.3g}") for i in range(count))


def sweep_edge(lr: float, lrs: Sequence[float]) -> str:
    """"lowest"/"highest" when ``lr`` is the sweep's smallest/largest (the optimum may lie
    beyond it: widen the sweep, for every variant alike), else ""."""
    if len(lrs) < 2:
        return ""
    return {min(lrs): "lowest", max(lrs): "highest"}.get(lr, "")


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


@dataclass(frozen=True)
class TunedLR:
    """The chosen learning rate and the validation loss of every candidate (inf: diverged)."""

    lr: float
    scores: dict[float, float]

    def record(self) -> dict[str, Any]:
        """JSON-ready: ``{"lr": ..., "validation_loss": {"0.001": ...}}``."""
        return {"lr": self.lr, "validation_loss": {f"{k:g}": v for k, v in self.scores.items()}}

    def text(self) -> str:
        return ", ".join(f"{k:g}: {v:.3g}" for k, v in self.scores.items())

    def edge(self) -> str:
        """:func:`sweep_edge` of the chosen rate within the rates tried."""
        return sweep_edge(self.lr, tuple(self.scores))


def choose(scores: dict[float, float]) -> float:
    """The learning rate with the lowest finite score; ties go to the smaller rate."""
    finite = {lr: s for lr, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise ConfigError(f"every learning rate in {sorted(scores)} diverged while tuning; "
                          "add smaller rates to the sweep")
    return min(sorted(finite), key=lambda lr: finite[lr])


def _validation_loss(ctx: Any, name: str, model: nn.Module, rules: tuple[LearningRule, ...],
                     tune_splits: Any, train: TrainConfig, seed: int,
                     fit_kwargs: dict[str, Any] | None) -> float:
    """Train one candidate in the sub-run ``name``; its validation loss (inf if it diverged)."""
    try:
        final = ctx.fit(name, model, tune_splits, train, seed=seed, rules=rules,
                        **(fit_kwargs or {}))
    except DivergenceError:  # a diverging candidate loses, it does not end the run
        return math.inf
    loss = float(final.get("test_loss", math.inf))
    return loss if math.isfinite(loss) else math.inf


def tune_lr(ctx: Any, name: str, make: ModelFactory, tune_splits: Any, train: TrainConfig,
            lrs: Sequence[float], epochs: int, seed: int,
            fit_kwargs: dict[str, Any] | None = None) -> TunedLR:
    """Train ``make()`` for ``epochs`` at every rate of ``lrs`` (sub-runs
    ``tune-<name>-lr<lr>``) and pick the one with the lowest validation loss."""
    if not lrs:
        raise ConfigError(f"no learning rates to tune {name!r} over")
    scores: dict[float, float] = {}
    for lr in lrs:
        seed_everything(seed)
        model, rules = make()
        config = dataclasses.replace(train, lr=lr, epochs=epochs)
        scores[lr] = _validation_loss(ctx, f"tune-{name}-lr{lr:g}", model, rules, tune_splits,
                                      config, seed, fit_kwargs)
    return TunedLR(choose(scores), scores)


@dataclass(frozen=True)
class TunedSetting:
    """The chosen candidate's label and the validation loss of every candidate (inf: diverged)."""

    label: str
    scores: dict[str, float]

    def record(self) -> dict[str, Any]:
        """JSON-ready: ``{"choice": ..., "validation_loss": {label: ...}}``."""
        return {"choice": self.label, "validation_loss": dict(self.scores)}

    def text(self) -> str:
        return ", ".join(f"{k}: {v:.3g}" for k, v in self.scores.items())


def tune_settings(ctx: Any, name: str, candidates: Mapping[str, Candidate], tune_splits: Any,
                  epochs: int, seed: int) -> TunedSetting:
    """Train every candidate for ``epochs`` (sub-runs ``tune-<name>-<label>``) and pick the one
    with the lowest validation loss; ties go to the first listed. Use this where more than the
    learning rate is tuned (an initial gain, a learning rule's own rate)."""
    if not candidates:
        raise ConfigError(f"no candidate settings to tune {name!r} over")
    scores: dict[str, float] = {}
    for label, make in candidates.items():
        seed_everything(seed)
        model, rules, train = make()
        config = dataclasses.replace(train, epochs=epochs)
        scores[label] = _validation_loss(ctx, f"tune-{name}-{label}", model, rules, tune_splits,
                                         config, seed, None)
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise ConfigError(f"every candidate of {name!r} diverged while tuning "
                          f"({', '.join(scores)}); add smaller rates to the sweep")
    return TunedSetting(min(finite, key=lambda k: finite[k]), scores)


class FirstSeedTuning(Generic[Choice]):
    """Tune each key once, on the first seed that asks for it, and reuse the choice on the later
    seeds (CPU budget); ``every_seed=True`` tunes again on every seed. ``fresh`` says whether
    the last :meth:`get` ran a sweep (so the caller records it once)."""

    def __init__(self, every_seed: bool = False) -> None:
        self.every_seed = every_seed
        self.fresh = False
        self._chosen: dict[Any, Choice] = {}

    def get(self, key: Any, tune: Callable[[], Choice]) -> Choice:
        self.fresh = key not in self._chosen or self.every_seed
        if self.fresh:
            self._chosen[key] = tune()
        return self._chosen[key]
