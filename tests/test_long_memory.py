"""orthogonal-long-memory: the adding problem and cue recall, the frozen control, tuning, rules."""

from __future__ import annotations

import json
import math

import pytest
import torch
from claim_cases import _FAIL, _memory

from signalprop.cli import main
from signalprop.config import apply_overrides
from signalprop.errors import ConfigError
from signalprop.experiments import orthogonal_long_memory as om
from signalprop.experiments.evidence import rows_of, select
from signalprop.experiments.orthogonal_models import rnn_classifier
from signalprop.experiments.registry import get_experiment
from signalprop.train import TrainConfig, fit

TINY = ["adding.lengths=6,12", "adding.steps=4,3", "adding.baselines_up_to=6",
        "recall.lengths=5", "recall.steps=3", "lag.lengths=4", "lag.steps=2", "seeds=2",
        "evals=1", "tuning.lrs=[0.001,0.01]",
        "tuning.max_extensions=0", "data.n_test=20", "data.n_val=10"]


def test_frozen_control_trains_only_its_readout(tmp_path):
    from signalprop import data

    splits = data.load("adding", T=8, n_train=64, n_test=16)
    model = _build("frozen", 8, om.MemoryModel())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.scale == pytest.approx(8.0)  # read out at h_T / b, b = 1/T
    fit(model, splits.train, splits.test, TrainConfig(epochs=1, batch_size=16, lr=0.1),
        tmp_path / "run", task="regression", progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("rnn."))
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_models_per_length():
    cfg = om.LongMemoryConfig()
    study = om.study(_Ctx(cfg))
    assert list(study.points) == ["adding-T100", "adding-T1000", "adding-T10000", "recall-T1000",
                                  "lag-T100", "lag-T1000"]
    at = {v.name: [p for p in study.points if v.where(p)] for v in study.variants}
    assert at["filter"] == at["frozen"] == at["lem"] == list(study.points)
    assert at["lstm"] == at["rnn"] == ["adding-T100", "adding-T1000", "recall-T1000",
                                       "lag-T100", "lag-T1000"]
    m = cfg.model
    assert _build("filter", 400, m).rnn.cell.b == pytest.approx(1 / 400)
    assert _build("filter", 400, om.MemoryModel(beta_scale=10)).rnn.cell.b == \
        pytest.approx(10 / 400)


def _build(kind, length, m):
    """The model the study builds for the adding problem at T = ``length``."""
    return rnn_classifier(kind, 2, 1, m, m.b(length))


class _Ctx:
    def __init__(self, config):
        self.config = config


@pytest.mark.parametrize(("override", "message"), [
    ("recall.classes=4", "recall.classes must be >= 8"),
    ("tuning.lrs=[0.001,-1]", "tuning.lrs"),
    ("adding.lengths=1", "adding.lengths must be >= 2"),
])
def test_bad_config_names_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(om.LongMemoryConfig(), [override])


@pytest.mark.parametrize(("task", "max_elements"), [("adding", 40_000_000), ("lag", 40_000_000),
                                                     ("recall", 400_000_000)])
def test_a_capped_training_set_still_gets_the_whole_step_budget(task, max_elements):
    cfg = apply_overrides(om.LongMemoryConfig(), [f"data.max_elements={max_elements}"])
    train = om.train_config(cfg, task, 1000, 2000)
    batches = math.ceil(om.training_examples(cfg, task, 1000, 2000) / cfg.train.batch_size)
    assert train.max_steps_per_epoch <= batches
    assert 2000 <= train.epochs * train.max_steps_per_epoch < 2000 + train.epochs
    assert train.epochs >= cfg.evals


def test_an_empty_length_list_skips_that_task():
    cfg = apply_overrides(om.LongMemoryConfig(), ["adding.lengths=[]", "adding.steps=[]",
                                                  "recall.lengths=[]", "recall.steps=[]"])
    assert list(om.study(_Ctx(cfg)).points) == ["lag-T100", "lag-T1000"]
    with pytest.raises(ConfigError, match="all empty"):
        apply_overrides(cfg, ["lag.lengths=[]", "lag.steps=[]"])


def test_lengths_without_matching_steps_fail_before_training(tmp_path, capsys):
    code = main(["run", "orthogonal-long-memory", "--quick", "--out", str(tmp_path), "--set",
                 "adding.lengths=30,100,300"])
    assert code != 0
    assert "adding.steps" in capsys.readouterr().err
    assert not list(tmp_path.rglob("metrics.jsonl"))


def test_tiny_run_records_every_model_seed_and_tuned_rate(tmp_path):
    sets = [arg for item in TINY for arg in ("--set", item)]
    assert main(["run", "orthogonal-long-memory", "--out", str(tmp_path), *sets]) == 0
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    rows = rows_of(summary["results"])
    assert om.lengths(rows, "adding") == [6, 12] and om.lengths(rows, "recall") == [5]
    for kind, point in (("lstm", "adding-T6"), ("frozen", "adding-T12"), ("rnn", "recall-T5")):
        assert len(select(rows, kind, point)) == 2
    assert all(math.isfinite(r.value("test_mse")) for r in rows if r.point.startswith("add"))
    assert not select(rows, "lstm", "adding-T12")  # baselines only up to baselines_up_to
    tuning = summary["results"]["tuning"]["filter-adding-T6-s0"]
    assert set(tuning["validation_loss"]) == {"lr 0.001", "lr 0.01"}
    assert [r.variant for r in rows if r.seed == 0 and r.point.startswith("adding")] == [
        "filter", "frozen", "rnn", "lstm", "lem", "filter", "frozen", "lem"]
    assert len(select(rows, "lem", "lag-T4")) == 2 and om.lengths(rows, "lag") == [4]
    assert {c["verdict"] for c in summary["claims"]} <= {"not reproduced", "partly",
                                                          "not checked"}


def test_one_seed_cannot_show_learning():
    one = _memory("adding", {100: {"filter": 0.001, **_FAIL}})
    for key in [k for k in one if k.endswith("_per_seed")]:
        one[key] = one[key][:1]
    one["seeds"] = 1
    assert om.adding_learns(with_rows(one))[1] == "not reproduced"


def test_learning_needs_both_marked_values():
    """Beating a bad control is not enough: the MSE must fall below 1/12 (one value known)."""
    res = _memory("adding", {1000: {"filter": 0.1, **_FAIL}})
    text, verdict = om.adding_learns(with_rows(res))
    assert verdict == "not reproduced" and "filter 0.1 ± 0.002" in text


def test_claims_are_registered_with_new_rule_versions():
    claims = get_experiment("orthogonal-long-memory").claims
    assert [c.rule_version for c in claims] == [5, 5, 3, 1]
    assert all(c.stochastic for c in claims)


def with_rows(results: dict) -> dict:
    return get_experiment("orthogonal-long-memory").with_rows(results)


def test_positive_control_decides_what_is_checked():
    """Where LEM did not learn (and the filter did not), the row is not checked; a run without
    LEM (before rule v4) is judged as before."""
    fails = {"filter": 0.165, **_FAIL}
    no_lem = _memory("adding", {100: fails})
    assert om.adding_learns(with_rows(no_lem))[1] == "not reproduced"
    lem_fails = _memory("adding", {100: {**fails, "lem": 0.17}})
    text, verdict = om.adding_learns(with_rows(lem_fails))
    assert verdict == "not checked"
    assert "not checked: the harness did not show success at T=100" in text
    lem_learns = _memory("adding", {100: {**fails, "lem": 0.001}})
    assert om.adding_learns(with_rows(lem_learns))[1] == "not reproduced"
    # a filter success needs no control: it shows success at T itself
    filter_learns = _memory("adding", {100: {**_FAIL, "filter": 0.01, "lem": 0.17}})
    assert om.adding_learns(with_rows(filter_learns))[1] == "partly"
    assert om.beats_baselines(with_rows(lem_fails))[1] == "not checked"
    lag = _memory("lag", {100: {"filter": 0.126, "frozen": 0.125, "lem": 0.126}})
    assert om.lag_learns(with_rows(lag))[1] == "not checked"


def test_a_frozen_seed_worse_than_the_constant_predictor_counts_as_the_constant():
    """Rule v5: one frozen seed ending far above the always-1 MSE (a failed readout fit) must
    not hide that LEM learned (the T = 1,000 run of 2026-12-07 had frozen 0.181, 0.674, 0.168)."""
    results = _memory("adding", {1000: {"filter": 0.173, "frozen": 0.17, "lem": 0.001}})
    results["adding_T1000_frozen_test_mse_per_seed"] = [0.181, 0.674, 0.168]
    text, verdict = om.adding_learns(with_rows(results))
    assert verdict == "not reproduced" and "LEM learned" in text
    results["adding_T1000_frozen_test_mse_per_seed"] = [0.181, 0.174, 0.168]
    assert om.adding_learns(with_rows(results))[1] == "not reproduced"
