"""The study runner: one procedure for every experiment that compares trained variants.

An experiment declares a :class:`Study` (its variants, the sweep points, how to load the data
and how to build each model) and :func:`run_study` does the rest, once for all experiments:

1. **Validation split.** ``data.n_val`` examples are carved from the training data (never the
   test set) for tuning; the final runs train on the rest. A study whose variants are all
   untuned (``tuned=False``) carves nothing and trains on all the training data.
2. **Tuning.** Per variant and sweep point, every candidate (each of the variant's settings at
   each learning rate of ``tuning.lrs``) trains for ``tuning.epochs`` on the reduced training
   data and is scored by its validation loss; a candidate that diverges scores ``inf``. This
   happens on the first seed and the choice is kept for the other seeds, or on every seed with
   ``tuning.every_seed``.
3. **Sweep edges.** A chosen rate at either end of its grid extends the grid one step outward
   (the grid's own ratio) and tunes again, up to ``tuning.max_extensions`` steps per side;
   every extension is recorded, and a choice still at the edge after the last one is flagged
   (``edge`` in the row) so the claim row can say the optimum may lie beyond.
4. **Training.** Every seed trains at the chosen setting. A run that diverges is scored as the
   variant declares: ``"chance"`` (accuracy 1/classes, loss log(classes)) or ``"lost"`` (its
   metrics are NaN and claims leave it out); either way its status is ``"diverged"`` and the
   claim rows name it.
5. **Rows.** One tidy row per (variant, point, seed): learning rate, setting, status, metrics.
   They are written to ``rows.jsonl`` in the run directory and returned under
   ``results["rows"]``, where the claims read them through :mod:`~signalprop.experiments.evidence`.
   The standard tables (runs, tuning) and learning curves are drawn from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signalprop.config import config_part, positive, positive_values
from signalprop.errors import ConfigError, DivergenceError
from signalprop.experiments.evidence import Row, rows_table
from signalprop.experiments.lr_tuning import log_spaced, tuning_splits
from signalprop.train import TrainConfig, epoch_records, seed_everything

if TYPE_CHECKING:
    from torch import nn

    from signalprop.data.splits import Splits
    from signalprop.experiments.context import RunContext
    from signalprop.learning.base import LearningRule

Built = tuple["nn.Module", tuple["LearningRule", ...]]
#: ``build(point, setting, splits, seed) -> (model, rules)``
Builder = Callable[[Any, Any, "Splits", int], Built]
DIVERGED_POLICIES = ("chance", "lost")


# --------------------------------------------------------------------------- config parts
@config_part("data", positive=("n_train", "n_val", "n_test"))
class Data:
    """The dataset and its sizes (``data.*``). ``n_val`` validation examples are carved from
    the ``n_train`` training examples for tuning; the test split is never used to choose."""

    name: str = "fashion-mnist"
    n_train: int = 20000
    n_val: int = 2000
    n_test: int = 5000


@config_part("model", positive=("width", "depth"))
class MLPSize:
    """An MLP's ``width`` and number of hidden layers ``depth`` (``model.*``): the base of a
    study's model part, which adds its own fields (a gain, a filter scale)."""

    width: int = 128
    depth: int = 5

    def dims(self, splits: Splits) -> tuple[int, int, int, int]:
        """``(in_features, width, depth, out_features)`` of this MLP on ``splits`` (inputs
        flattened)."""
        return math.prod(splits.input_shape), self.width, self.depth, splits.num_classes


@dataclass(frozen=True)
class Tuning:
    """The learning-rate sweep every variant gets (``tuning.*``).

    ``epochs`` is the tuning horizon (0: the whole training budget). ``max_extensions``: how
    many grid steps a choice at an edge may extend the grid outward, per side. ``n_train``:
    candidates train on this many random examples of the training data left after the
    validation split (0: all of it).
    """

    lrs: tuple[float, ...] = log_spaced(1e-4, 10**-1.5, 6)
    epochs: int = 0
    every_seed: bool = False
    max_extensions: int = 2
    n_train: int = 0

    def __post_init__(self) -> None:
        positive_values("tuning.lrs", self.lrs, ": give the learning rates to tune over, e.g. "
                        "--set tuning.lrs=[0.0003,0.001,0.003]")
        if self.epochs < 0:
            raise ConfigError(f"tuning.epochs must be >= 0 (0: the whole training), got "
                              f"{self.epochs}")
        if self.max_extensions < 0:
            raise ConfigError(f"tuning.max_extensions must be >= 0, got {self.max_extensions}")
        if self.n_train < 0:
            raise ConfigError(f"tuning.n_train must be >= 0 (0: all), got {self.n_train}")


# --------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Variant:
    """One arm of a study.

    ``build(point, setting, splits, seed)`` returns a fresh model and its learning rules (the
    caller seeds torch first). ``settings`` maps labels to candidate settings tuned together
    with the learning rate (one unnamed setting, ``None``, by default). ``tuned=False`` trains
    at ``lr`` (or the training config's) without a sweep. ``on_diverge``: see the module doc.
    ``lrs``: the variant's own learning-rate grid (default ``tuning.lrs``). ``tuned_as``: the
    name of another variant whose tuned choice (setting and rate) this one reuses (an
    ablation of it; the two must share setting labels).
    ``where(point)``: the variant trains only at the points where it is true (all if None).
    """

    name: str
    build: Builder
    settings: Mapping[str, Any] = field(default_factory=lambda: {"": None})
    tuned: bool = True
    lr: float | None = None
    on_diverge: str = "chance"
    train: Callable[[Any, Any], TrainConfig] | None = None
    lrs: tuple[float, ...] | None = None
    tuned_as: str = ""
    where: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.on_diverge not in DIVERGED_POLICIES:
            raise ConfigError(f"variant {self.name!r}: on_diverge must be one of "
                              f"{DIVERGED_POLICIES}, got {self.on_diverge!r}")
        if not self.settings:
            raise ConfigError(f"variant {self.name!r} has no settings to train")


@dataclass(frozen=True)
class Study:
    """What an experiment compares: ``variants`` at every sweep ``point``, on ``seeds`` seeds.

    ``data(ctx, point)`` loads the splits for a point (the runner carves the validation split).
    ``train`` is the training config (a variant may adapt it per point). ``measure(final,
    sub_run, point)`` adds metrics to a row beyond ``result.json``'s ``test_acc``,
    ``test_loss`` and ``train_loss``; ``derive(rows, run_dir)`` may add metrics that compare rows (a
    speed-up against the baseline of the same seed). ``curve`` names the epoch-record key drawn
    for every variant's first seed. ``on_epoch(variant, sub_run, val_splits)``, when given,
    makes the epoch hook of each final (not tuning) run: ``hook(model, epoch) -> dict`` adds to
    that epoch's record. ``val_splits.test`` is the validation split (``data.n_val`` examples
    carved from the training data) when some variant is tuned or ``validation`` is set;
    otherwise no split is carved and it is the test split (for hooks that only report).
    """

    variants: Sequence[Variant]
    data: Callable[[RunContext, Any], Splits]
    train: TrainConfig
    tuning: Tuning
    seeds: int
    points: Sequence[Any] = (None,)
    measure: Callable[[dict[str, Any], Path, Any], dict[str, float]] | None = None
    derive: Callable[[list[Row], Path], list[Row]] | None = None
    curve: str = "test_acc"
    curve_title: str = "Test accuracy per epoch"
    on_epoch: Callable[[Variant, Path, Splits], Callable[[Any, int], dict[str, Any]]] | None = None
    validation: bool = False  # carve the validation split even when nothing is tuned

    def __post_init__(self) -> None:
        positive("seeds", self.seeds)
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names repeat: {names}")


# --------------------------------------------------------------------------- tuning
@dataclass
class Sweep:
    """Every candidate's validation loss for one (variant, point), with the grid extensions."""

    scores: dict[tuple[str, float], float] = field(default_factory=dict)
    extensions: list[float] = field(default_factory=list)
    edge: str = ""

    def best(self) -> tuple[str, float]:
        finite = {k: v for k, v in self.scores.items() if math.isfinite(v)}
        if not finite:
            tried = sorted({lr for _, lr in self.scores})
            raise ConfigError(f"every candidate diverged while tuning (rates {tried}); add "
                              "smaller rates to tuning.lrs")
        return min(sorted(finite, key=lambda k: k[1]), key=lambda k: finite[k])

    def record(self) -> dict[str, Any]:
        setting, lr = self.best()
        return {"setting": setting, "lr": lr, "edge": self.edge,
                "extensions": self.extensions,
                "validation_loss": {f"{s + ' ' if s else ''}lr {r:g}": v
                                    for (s, r), v in self.scores.items()}}


def _grid_ratio(lrs: Sequence[float]) -> float:
    ordered = sorted(set(lrs))
    if len(ordered) < 2:
        return math.sqrt(10.0)
    return math.exp((math.log(ordered[-1]) - math.log(ordered[0])) / (len(ordered) - 1))


def _subset(splits: Splits, n: int, seed: int) -> Splits:
    """``splits`` with ``n`` random training examples (all when ``n`` is 0)."""
    if not n:
        return splits
    import torch
    from torch.utils.data import TensorDataset

    x, y = splits.train.tensors
    if n > x.shape[0]:
        raise ConfigError(f"tuning.n_train={n} exceeds the {x.shape[0]} training examples left "
                          "after the validation split; lower it or raise data.n_train")
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return dataclasses.replace(splits, train=TensorDataset(x[pick], y[pick]))


def _name(*parts: Any) -> str:
    return "-".join(str(p) for p in parts if p not in (None, ""))


def sweep_rates(score: Callable[[str, float], float], labels: Sequence[str],
                rates: Sequence[float], max_extensions: int,
                log: Callable[[str], None]) -> Sweep:
    """Score every ``label`` × rate (``score(label, rate)``: the validation loss, ``inf`` when
    diverged); while the best rate is at an end of the grid, extend the grid one step (its own
    ratio) past that end, up to ``max_extensions`` steps a side, then flag the edge."""
    sweep = Sweep()
    lrs = sorted(set(rates))
    ratio = _grid_ratio(lrs)
    for label in labels:
        for lr in lrs:
            sweep.scores[(label, lr)] = score(label, lr)
    for _ in range(2 * max_extensions + 1):
        tried = sorted({lr for _, lr in sweep.scores})
        _, chosen = sweep.best()
        if len(tried) < 2 or chosen not in (tried[0], tried[-1]):
            sweep.edge = ""
            break
        side = "lowest" if chosen == tried[0] else "highest"
        steps = sum(1 for e in sweep.extensions if (e < lrs[0]) == (side == "lowest"))
        if steps >= max_extensions:
            sweep.edge = side
            break
        new = float(f"{(chosen / ratio if side == 'lowest' else chosen * ratio):.3g}")
        sweep.extensions.append(new)
        log(f"the chosen lr {chosen:g} is the grid's {side}; extending to {new:g}")
        for label in labels:
            sweep.scores[(label, new)] = score(label, new)
    if sweep.edge:
        log(f"the chosen lr is still the grid's {sweep.edge} after {max_extensions} "
            "extension(s); flagged")
    return sweep


def sweep_table(sweeps: dict[tuple[Any, ...], Sweep]) -> list[list[Any]]:
    """One table row per candidate: the sweep's key columns, then setting, lr, validation loss,
    "chosen", "extension" and the edge flag of the chosen one."""
    rows = []
    for key, sweep in sweeps.items():
        setting, lr = sweep.best()
        for (label, rate), score in sorted(sweep.scores.items(), key=lambda kv: kv[0][1]):
            chosen = (label, rate) == (setting, lr)
            rows.append([*key, label, f"{rate:g}",
                         round(score, 4) if math.isfinite(score) else "diverged",
                         "chosen" if chosen else "",
                         "extension" if rate in sweep.extensions else "",
                         sweep.edge if chosen else ""])
    return rows


class StudyRunner:
    """Runs a :class:`Study` inside an experiment's :class:`RunContext`."""

    def __init__(self, ctx: RunContext, study: Study) -> None:
        self.ctx = ctx
        self.study = study
        self.sweeps: dict[tuple[str, Any, int], Sweep] = {}
        self.rows: list[Row] = []
        self.curves: dict[str, list[list[float]]] = {}
        self.dataset = ""

    # ---------------------------------------------------------------- one candidate
    def _train_config(self, variant: Variant, point: Any) -> TrainConfig:
        return variant.train(self.study.train, point) if variant.train else self.study.train

    def _fit(self, name: str, variant: Variant, point: Any, setting: Any, splits: Splits,
             seed: int, cfg: TrainConfig, on_epoch: Any = None) -> dict[str, Any]:
        seed_everything(seed)
        model, rules = variant.build(point, setting, splits, seed)
        return self.ctx.fit(name, model, splits, cfg, seed=seed, rules=rules, on_epoch=on_epoch)

    def _score(self, variant: Variant, point: Any, label: str, lr: float, tune: Splits,
               seed: int) -> float:
        cfg = self._train_config(variant, point)
        epochs = self.study.tuning.epochs or cfg.epochs
        name = _name("tune", point, variant.name, label, f"s{seed}", f"lr{lr:g}")
        try:
            final = self._fit(name, variant, point, variant.settings[label], tune, seed,
                              dataclasses.replace(cfg, lr=lr, epochs=epochs))
        except DivergenceError:
            return math.inf
        loss = float(final.get("test_loss", math.inf))
        return loss if math.isfinite(loss) else math.inf

    def tune(self, variant: Variant, point: Any, tune: Splits, seed: int) -> Sweep:
        """Sweep ``variant``'s settings × rates at ``point``, extending at the edges."""
        where = f" at {point}" if point is not None else ""
        return sweep_rates(
            lambda label, lr: self._score(variant, point, label, lr, tune, seed),
            list(variant.settings), variant.lrs or self.study.tuning.lrs,
            self.study.tuning.max_extensions,
            lambda text: self.ctx.log(f"{variant.name}{where}: {text}"))

    def chosen(self, variant: Variant, point: Any, tune: Splits, seed: int
               ) -> tuple[str, float | None, Sweep | None]:
        """``(setting label, lr, sweep)`` for ``variant`` at ``point`` on ``seed``."""
        if not variant.tuned:
            label = next(iter(variant.settings))
            lr = variant.lr if variant.lr is not None else self._train_config(
                variant, point).lr
            return label, lr, None
        if variant.tuned_as:
            source = [v for v in self.study.variants if v.name == variant.tuned_as]
            if not source:
                raise ConfigError(f"variant {variant.name!r}: tuned_as names no variant "
                                  f"({variant.tuned_as!r})")
            return self.chosen(source[0], point, tune, seed)
        key_seed = seed if self.study.tuning.every_seed else self.ctx.seed
        key = (variant.name, point, key_seed)
        if key not in self.sweeps:
            self.sweeps[key] = self.tune(variant, point, tune, seed)
        sweep = self.sweeps[key]
        label, lr = sweep.best()
        return label, lr, sweep

    # ---------------------------------------------------------------- the study
    def run(self) -> list[Row]:
        ctx, study = self.ctx, self.study
        for point in study.points:
            splits = study.data(ctx, point)
            self.dataset = splits.name
            train_splits, tune_splits = splits, splits  # nothing tuned: no split carved
            if study.validation or any(v.tuned for v in study.variants):
                train_splits, tune_splits = tuning_splits(splits, ctx.config.data.n_val,
                                                          ctx.seed)
                tune_splits = _subset(tune_splits, study.tuning.n_train, ctx.seed)
            for variant in study.variants:
                if variant.where is not None and not variant.where(point):
                    continue
                for seed in ctx.seeds(study.seeds):
                    self.rows.append(self._final(variant, point, seed, train_splits,
                                                 tune_splits))
        if study.derive is not None:
            self.rows = study.derive(self.rows, ctx.run_dir)
        return self.rows

    def _final(self, variant: Variant, point: Any, seed: int, train_splits: Splits,
               tune_splits: Splits) -> Row:
        label, lr, sweep = self.chosen(variant, point, tune_splits, seed)
        cfg = self._train_config(variant, point)
        cfg = dataclasses.replace(cfg, lr=lr) if lr is not None else cfg
        name = _name(point, variant.name, label, f"s{seed}")
        status, metrics = "ok", {}
        hook = (self.study.on_epoch(variant, self.ctx.run_dir / name, tune_splits)
                if self.study.on_epoch is not None else None)
        try:
            final = self._fit(name, variant, point, variant.settings[label], train_splits,
                              seed, cfg, hook)
        except DivergenceError as exc:
            status = "diverged"
            classes = getattr(train_splits, "num_classes", 0) or 0
            self.ctx.log(f"{name}: diverged at lr {lr:g}; scored "
                         f"{'at chance' if variant.on_diverge == 'chance' else 'as lost'} "
                         f"({str(exc).splitlines()[0]})")
            if variant.on_diverge == "chance" and classes > 1:
                final = {"test_acc": 1.0 / classes, "train_loss": math.log(classes),
                         "test_loss": math.log(classes)}
            else:
                final = {}
        for key in ("test_acc", "test_loss", "train_loss", "wall_s", "step"):
            value = final.get(key)  # absent (a regression has no accuracy; a lost run): no key
            if isinstance(value, int | float):
                metrics[key] = float(value)
        sub_run = self.ctx.run_dir / name
        if status == "ok" and self.study.measure is not None:
            metrics.update(self.study.measure(final, sub_run, point))
        if seed == self.ctx.seed and status == "ok":
            line = [[r["epoch"], r[self.study.curve]] for r in epoch_records(sub_run)
                    if self.study.curve in r]
            self.curves[_name(variant.name, point)] = line
        return Row(variant=variant.name, point=point, seed=seed, lr=lr, setting=label,
                   status=status, metrics=metrics,
                   edge=sweep.edge if sweep is not None else "", run=name)

    # ---------------------------------------------------------------- output
    def tuning_record(self) -> dict[str, Any]:
        return {_name(v, p, f"s{s}"): sweep.record() for (v, p, s), sweep in self.sweeps.items()}

    def tuning_table(self) -> dict[str, Any]:
        rows = sweep_table({(variant, "" if point is None else point, seed): sweep
                            for (variant, point, seed), sweep in self.sweeps.items()})
        return {"columns": ["variant", "point", "seed", "setting", "lr", "validation loss",
                            "chosen", "grid", "still at the edge"], "rows": rows}

    def summary(self, metrics: Sequence[str] = ("test_acc", "train_loss")) -> dict[str, Any]:
        """The experiment's return value: rows, tuning record, tables and curves."""
        if self.ctx.is_main:
            self.ctx.write_jsonl("rows.jsonl", [r.to_dict() for r in self.rows])
        return {
            "results": {"dataset": self.dataset, "seeds": self.study.seeds,
                        "rows": [r.to_dict() for r in self.rows],
                        "tuning": self.tuning_record()},
            "tables": {"runs": rows_table(self.rows, metrics),
                       "lr_tuning": self.tuning_table()},
            "series": {self.study.curve: {
                "title": self.study.curve_title, "xlabel": "epoch",
                "ylabel": self.study.curve.replace("_", " "), "logy": False,
                "lines": self.curves}},
        }


def run_study(ctx: RunContext, study: Study,
              metrics: Sequence[str] = ("test_acc", "train_loss")) -> dict[str, Any]:
    """Run ``study`` and return the experiment's summary (see :class:`StudyRunner`)."""
    runner = StudyRunner(ctx, study)
    runner.run()
    return runner.summary(metrics)
