"""``orthogonal-psmnist``: one additive-filter RNN layer (Ceni, arXiv 2210.01245) against an LSTM
of the same hidden size on permuted pixel-by-pixel (Fashion-)MNIST, 784 steps of one pixel.

The filter RNN updates ``h_t = (1 - b) O h_{t-1} + b tanh(W h_{t-1} + U x_t + c)`` (``b =
model.beta``, ``O`` random orthogonal) and is read out at ``h_T / b``. Every model gets its Adam
lr from the same validation sweep (:mod:`~signalprop.experiments.study`; candidates train one
epoch on ``tuning.n_train`` sequences); the claims read the test accuracy after the first and
after the last epoch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import TensorDataset

from signalprop.config import positive
from signalprop.errors import ConfigError
from signalprop.experiments import orthogonal_models as om
from signalprop.experiments.common import at_least, curve
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, per_seed, rows_of
from signalprop.experiments.registry import Claim, Model, declare
from signalprop.experiments.samples import load_sample
from signalprop.experiments.study import Study, Tuning, Variant, run_study
from signalprop.train import TrainConfig


@dataclass(frozen=True)
class PSMNISTData:
    """The datasets (one sweep point each; one missing after the first is skipped) and sizes;
    ``n_val`` validation sequences are carved from the ``n_train`` training ones."""

    names: tuple[str, ...] = ("fashion-mnist", "mnist")
    n_train: int = 60000
    n_val: int = 1000
    n_test: int = 10000
    perm_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test"):
            positive(f"data.{name}", getattr(self, name))
        if not self.names:
            raise ConfigError("data.names must name at least one dataset")


@dataclass(frozen=True)
class PSMNISTConfig:
    data: PSMNISTData = field(default_factory=PSMNISTData)
    model: om.RNNModel = field(default_factory=om.RNNModel)
    tuning: Tuning = field(default_factory=lambda: Tuning(
        lrs=(1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2), epochs=1, n_train=4000))
    seeds: int = 1
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, batch_size=128, lr=1e-3, grad_clip=1.0, eval_batch_size=1000))

    def __post_init__(self) -> None:
        if not self.model.beta > 0:
            raise ConfigError(f"model.beta must be > 0 (the filter RNN's b), got "
                              f"{self.model.beta}")


def as_sequence(splits: Any) -> Any:
    """MNIST-1D fallback: ``(N, 40)`` becomes a 40-step sequence ``(N, 40, 1)``."""
    if len(splits.input_shape) == 2:
        return splits
    for part in ("train", "test"):
        x, y = getattr(splits, part).tensors
        setattr(splits, part, TensorDataset(x.reshape(x.shape[0], -1, 1), y))
    splits.input_shape = (math.prod(splits.input_shape), 1)
    return splits


def psmnist_model(name: str, inputs: int, classes: int, m: om.RNNModel) -> nn.Module:
    """The filter RNN (``name="filter"``, ``b = model.beta``) or a baseline (``rnn``, ``lstm``)."""
    return om.rnn_classifier(name, inputs, classes, m, m.beta)


def _points(ctx: RunContext, names: tuple[str, ...]) -> list[str]:
    """The datasets to run: the first always (its fallback if missing), later ones if there."""
    from signalprop import data
    from signalprop.data.paths import short_missing

    points = []
    for index, name in enumerate(names):
        if index > 0 and not data.is_available(name)[0]:
            ctx.note_once(f"{short_missing(name)}; {ctx.experiment.name} skips it")
        elif name not in points:
            points.append(name)
    return points


def _epochs(final: dict[str, Any], sub_run: Path, point: Any) -> dict[str, float]:
    accs = curve(sub_run, "test_acc")
    return {"acc_epoch1": accs[0][1] if accs else math.nan,
            "acc_final": accs[-1][1] if accs else math.nan, "epochs": float(len(accs))}


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: PSMNISTConfig = ctx.config
    loaded: dict[str, str] = {}  # configured name -> the permuted dataset's name

    def load(ctx: RunContext, name: str) -> Any:
        splits = as_sequence(ctx.load_data(
            name, fallback="mnist1d", sequential="permuted", perm_seed=cfg.data.perm_seed,
            n_train=cfg.data.n_train, n_test=cfg.data.n_test))
        loaded[name] = splits.name
        return splits

    def rename(rows: list[Row], run_dir: Path) -> list[Row]:
        return [dataclasses.replace(r, point=loaded[r.point]) for r in rows]

    def variant(name: str) -> Variant:
        return Variant(name, lambda point, setting, splits, seed: (psmnist_model(
            name, splits.input_shape[-1], splits.num_classes, cfg.model), ()))

    study = Study(variants=[variant(n) for n in ("filter", *cfg.model.baselines)],
                  points=_points(ctx, cfg.data.names), data=load, train=cfg.train,
                  tuning=cfg.tuning, seeds=cfg.seeds, measure=_epochs, derive=rename)
    summary = run_study(ctx, study, ("acc_epoch1", "acc_final", "epochs"))
    summary["results"]["dataset"] = ", ".join(dict.fromkeys(loaded.values()))
    return summary


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before the study runner (``{dataset}_{model}_acc_final`` keys)."""
    rows = []
    for dataset in str(results.get("dataset", "")).split(", "):
        for model in ("filter", "rnn", "lstm"):
            key = f"{dataset}_{model}"
            metrics = {m: results[f"{key}_{m}"] for m in ("acc_epoch1", "acc_final", "epochs")
                       if f"{key}_{m}" in results}
            if metrics:
                rows.append({"variant": model, "point": dataset, "seed": 0, **metrics,
                             "lr": results.get(f"{key}_lr"), "run": f"{dataset}-{model}"})
    return rows


def _acc(rows: list[Row], variant: str, point: str, metric: str) -> float:
    """``metric`` of ``variant`` at ``point``, mean over seeds; NaN when a run diverged."""
    return per_seed(rows, variant=variant, metric=metric, point=point, include_lost=True).mean


def _text(x: float, fmt: str = ".3f", missing: str = "diverged") -> str:
    return f"{x:{fmt}}" if math.isfinite(x) else missing


def _dataset_text(rows: list[Row], dataset: str, metric: str) -> str:
    epochs = _text(_acc(rows, "filter", dataset, "epochs"), ".0f", "?")
    lstm = [r for r in rows if r.point == dataset and r.variant == "lstm"]
    note = f"; LSTM {_text(_acc(rows, 'lstm', dataset, metric))}" if lstm else ""
    return f"{dataset} {_text(_acc(rows, 'filter', dataset, metric))} ({epochs} epochs run{note})"


def check(metric: str, good: float, partly: float):
    """The filter RNN's MNIST test accuracy at ``metric`` (after epoch 1 or the last one)."""
    def judge(results: dict[str, Any]) -> tuple[str, str]:
        rows = rows_of(results)
        used = list(dict.fromkeys(r.point for r in rows))
        value = "filter RNN " + "; ".join(_dataset_text(rows, d, metric) for d in used)
        mnist = [d for d in used if d.startswith("mnist")]
        if not mnist:  # the claim is about MNIST; Fashion-MNIST is harder
            return value + "; MNIST not available", "not checked"
        acc = _acc(rows, "filter", mnist[0], metric)
        return value, at_least(acc if math.isfinite(acc) else 0.0, good, partly)
    return judge


MODELS = {
    "filter": Model("one additive-filter RNN layer (b = model.beta)", lambda cfg, splits:
                    psmnist_model("filter", splits.input_shape[-1], splits.num_classes,
                                  cfg.model)),
    **om.RNN_BASELINES,
}


def sample(cfg: PSMNISTConfig, n: int, seed: int) -> Any:
    return as_sequence(load_sample(cfg.data.names[0], n, seed, sequential="permuted",
                                   perm_seed=cfg.data.perm_seed))


LEARNS = ("fashion-mnist*-filter*", "mnist*-filter*")  # the final runs, not "tune-*"
declare(
    __name__, PSMNISTConfig,
    summary="One additive-filter RNN layer on permuted pixel-by-pixel (Fashion-)MNIST vs LSTM.",
    paper=om.PAPER,
    quick={"data.n_train": 160, "data.n_val": 32, "data.n_test": 128, "train.epochs": 1,
           "train.batch_size": 64, "data.names": ("fashion-mnist",), "tuning.n_train": 96,
           "tuning.lrs": (1e-3, 3e-3), "tuning.max_extensions": 0},
    tiny={"data.n_train": 96, "data.n_val": 32, "data.n_test": 32, "model.hidden": 8,
          "tuning.n_train": 32, "tuning.lrs": (1e-3,)},
    claims=tuple(
        Claim(text=f"psMNIST test accuracy above {good:.0%} after {when}",
              source="arXiv 2210.01245, abstract", paper_value=f"> {good:.0%} after {short}",
              check=check(metric, good, partly),
              rule=f"filter RNN's psMNIST test acc after {rule}: reproduced >= {good:g}, partly "
                   f">= {partly:g}, else not reproduced; not checked without MNIST",
              paper_data="psMNIST", same_data=("mnist", "mnist-permuted"), learns=LEARNS)
        for metric, good, partly, when, short, rule in (
            ("acc_epoch1", 0.94, 0.85, "the first epoch", "epoch 1", "epoch 1"),
            ("acc_final", 0.98, 0.9, "ten epochs", "10 epochs", "ten epochs"))),
)
