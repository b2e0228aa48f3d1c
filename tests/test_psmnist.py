"""orthogonal-psmnist: the filter RNN and the LSTM get the same tuned-lr sweep, recorded."""

from __future__ import annotations

import json

from signalprop.experiments.context import run_experiment
from signalprop.experiments.evidence import rows_of
from signalprop.experiments.registry import get_experiment


def test_tiny_run_tunes_both_models_on_held_out_sequences(tmp_path):
    # Fashion-MNIST when installed, else the MNIST-1D fallback (a 40-step sequence).
    run_dir = run_experiment(get_experiment("orthogonal-psmnist"), out=tmp_path, quick=True,
                             overrides=["data.names=fashion-mnist", "data.n_train=160",
                                        "data.n_val=40", "data.n_test=40", "model.hidden=8",
                                        "train.epochs=1", "tuning.n_train=80",
                                        "tuning.lrs=1e-3,1e-2", "tuning.max_extensions=0"])
    summary = json.loads((run_dir / "summary.json").read_text())
    results = summary["results"]
    rows = rows_of(results)
    assert [r.variant for r in rows] == ["filter", "lstm"]
    assert {r.point for r in rows} == {results["dataset"]}  # the permuted dataset's name
    for row in rows:
        record = results["tuning"][f"{row.variant}-fashion-mnist-s0"]
        assert set(record["validation_loss"]) == {"lr 0.001", "lr 0.01"}  # the same sweep
        best = min(record["validation_loss"], key=record["validation_loss"].get)
        assert record["lr"] == float(best.split()[1]) == row.lr
        assert record["edge"] in ("lowest", "highest")  # two rates, no extension: an edge
        assert row.value("epochs") == 1 and 0 <= row.value("acc_epoch1") <= 1
    assert {c["verdict"] for c in summary["claims"]} == {"not checked"}  # no MNIST here


def test_tuning_candidates_train_on_tuning_n_train_sequences(tmp_path):
    run_dir = run_experiment(get_experiment("orthogonal-psmnist"), out=tmp_path, quick=True,
                             overrides=[f"{k}={v}" for k, v in {
                                 "data.names": "fashion-mnist", "data.n_train": 160,
                                 "data.n_val": 40, "data.n_test": 40, "model.hidden": 8,
                                 "train.epochs": 1, "tuning.n_train": 24, "tuning.lrs": "1e-3",
                                 "train.batch_size": 8, "model.baselines": "[]"}.items()])
    steps = [json.loads(line)["step"] for line in
             (next(run_dir.glob("tune-*")) / "metrics.jsonl").read_text().splitlines()
             if '"step"' in line]
    assert max(steps) == 3  # 24 sequences, batches of 8
