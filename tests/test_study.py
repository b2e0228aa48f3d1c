"""The study runner: validation split, tuning with grid extension, diverged runs, rows."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from signalprop.data.splits import make_splits
from signalprop.errors import ConfigError, DivergenceError
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, notes, per_seed, rows_of
from signalprop.experiments.registry import Experiment
from signalprop.experiments.study import Data, Study, StudyRunner, Tuning, Variant, run_study
from signalprop.train import TrainConfig


@dataclass(frozen=True)
class TinyConfig:
    data: Data = field(default_factory=lambda: Data(name="tiny", n_train=60, n_val=20,
                                                    n_test=20))


def _splits():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 4, generator=g), torch.randint(0, 3, (80,), generator=g)
    return make_splits("tiny", (x[:60], y[:60]), (x[60:], y[60:]), num_classes=3)


def _ctx(tmp_path: Path) -> RunContext:
    exp = Experiment(name="tiny", summary="", paper="", make_config=TinyConfig,
                     run=lambda ctx: {})
    return RunContext(exp, TinyConfig(), tmp_path, torch.device("cpu"), progress=False)


def _variant(name: str = "mlp", **kwargs) -> Variant:
    return Variant(name, lambda point, setting, splits, seed: (nn.Linear(4, 3), ()), **kwargs)


def _study(variants, tuning: Tuning, seeds: int = 2) -> Study:
    return Study(variants=variants, data=lambda ctx, point: _splits(), tuning=tuning,
                 train=TrainConfig(epochs=1, batch_size=20), seeds=seeds)


def test_rows_tuning_and_validation_split(tmp_path):
    seen = []
    real = StudyRunner._score

    def spy(self, variant, point, label, lr, tune, seed):
        seen.append((len(tune.train), len(tune.test)))
        return real(self, variant, point, label, lr, tune, seed)

    StudyRunner._score = spy
    try:
        summary = run_study(_ctx(tmp_path), _study([_variant()], Tuning(
            lrs=(1e-3, 1e-2, 1e-1), max_extensions=0)))
    finally:
        StudyRunner._score = real
    assert set(seen) == {(40, 20)}  # 20 validation examples carved from the 60 training ones
    rows = rows_of(summary["results"])
    assert [(r.variant, r.seed) for r in rows] == [("mlp", 0), ("mlp", 1)]
    assert rows[0].lr == rows[1].lr  # tuned once, on the first seed
    assert per_seed(rows, variant="mlp", metric="test_acc").n == 2
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 2
    assert len(summary["tables"]["lr_tuning"]["rows"]) == 3


def test_a_choice_at_the_edge_extends_the_grid_up_to_the_cap(tmp_path):
    scores = {1e-3: 0.9, 1e-2: 0.5, 1e-1: 0.4, 1.0: 0.3, 10.0: 0.2}
    runner = StudyRunner(_ctx(tmp_path), _study([_variant()], Tuning(
        lrs=(1e-3, 1e-2, 1e-1), max_extensions=1)))
    runner._score = lambda variant, point, label, lr, tune, seed: scores[round(lr, 6)]
    sweep = runner.tune(_variant(), None, _splits(), 0)
    assert sweep.extensions == [1.0]  # one step outward, then the cap
    assert sweep.best() == ("", 1.0) and sweep.edge == "highest"
    runner2 = StudyRunner(_ctx(tmp_path), _study([_variant()], Tuning(
        lrs=(1e-3, 1e-2, 1e-1), max_extensions=3)))
    runner2._score = lambda variant, point, label, lr, tune, seed: {
        **scores, 100.0: math.inf}[round(lr, 6)]
    sweep2 = runner2.tune(_variant(), None, _splits(), 0)
    assert sweep2.extensions == [1.0, 10.0, 100.0]
    assert sweep2.best() == ("", 10.0) and sweep2.edge == ""  # the next step diverged


def test_settings_are_tuned_with_the_rate(tmp_path):
    runner = StudyRunner(_ctx(tmp_path), _study([], Tuning(lrs=(1e-2, 1e-1),
                                                            max_extensions=0)))
    variant = _variant(settings={"a": 1, "b": 2})
    runner._score = lambda v, p, label, lr, t, s: {("a", 0.01): 0.5, ("a", 0.1): 0.7,
                                                   ("b", 0.01): 0.6, ("b", 0.1): 0.2}[
        (label, lr)]
    assert runner.tune(variant, None, _splits(), 0).best() == ("b", 0.1)


def test_every_candidate_diverging_is_a_clear_error(tmp_path):
    runner = StudyRunner(_ctx(tmp_path), _study([], Tuning(lrs=(1e-2,))))
    runner._score = lambda *args: math.inf
    with pytest.raises(ConfigError, match="every candidate diverged"):
        runner.tune(_variant(), None, _splits(), 0)


@pytest.mark.parametrize(("policy", "acc"), [("chance", 1 / 3), ("lost", math.nan)])
def test_a_diverged_run_is_scored_as_declared_and_named(tmp_path, monkeypatch, policy, acc):
    real = RunContext.fit

    def fit(self, name, *args, **kwargs):
        if name == "mlp-s1":
            raise DivergenceError("loss became NaN")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(RunContext, "fit", fit)
    summary = run_study(_ctx(tmp_path), _study([_variant(on_diverge=policy)],
                                               Tuning(lrs=(1e-2,), max_extensions=0)))
    rows = rows_of(summary["results"])
    assert rows[1].status == "diverged"
    assert rows[1].value("test_acc") == pytest.approx(acc, nan_ok=True)
    assert "diverged: mlp-s1" in notes(rows, ("mlp",))
    assert per_seed(rows, variant="mlp", metric="test_acc").n == (2 if policy == "chance"
                                                                   else 1)


def test_bad_declarations_are_refused():
    with pytest.raises(ConfigError, match="on_diverge"):
        _variant(on_diverge="ignore")
    with pytest.raises(ConfigError, match="repeat"):
        _study([_variant(), _variant()], Tuning())
    with pytest.raises(ConfigError, match="tuning.lrs"):
        Tuning(lrs=())


def test_rows_round_trip_through_json():
    row = Row(variant="a", seed=1, point=100, lr=1e-3, metrics={"test_acc": 0.5})
    assert Row.from_dict(json.loads(json.dumps(row.to_dict()))) == row


def test_on_epoch_hooks_the_final_runs_only_with_the_validation_split(tmp_path):
    calls = []

    def hook(variant, sub_run, val):
        calls.append((variant.name, sub_run.name, len(val.test)))
        return lambda model, epoch: {"val_size": len(val.test)}

    study = Study(variants=[_variant(), _variant("fixed", tuned=False)],
                  data=lambda ctx, point: _splits(), tuning=Tuning(lrs=(1e-2,),
                                                                   max_extensions=0),
                  train=TrainConfig(epochs=1, batch_size=20), seeds=1, on_epoch=hook)
    run_study(_ctx(tmp_path), study)
    assert calls == [("mlp", "mlp-s0", 20), ("fixed", "fixed-s0", 20)]  # no tuning run
    records = [json.loads(line) for line in
               (tmp_path / "mlp-s0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_size"] for r in records if r.get("kind") == "epoch"] == [20]
