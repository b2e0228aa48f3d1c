"""orthogonal-psmnist: the filter RNN and the LSTM get the same tuned-lr sweep, recorded."""

from __future__ import annotations

import json

from signalprop.experiments.context import run_experiment
from signalprop.experiments.registry import get_experiment


def test_tiny_run_tunes_both_models_on_held_out_sequences(tmp_path):
    # Fashion-MNIST when installed, else the MNIST-1D fallback (a 40-step sequence).
    run_dir = run_experiment(get_experiment("orthogonal-psmnist"), out=tmp_path, quick=True,
                             overrides=["data.names=fashion-mnist", "data.n_train=160",
                                        "data.n_test=40", "model.hidden=8", "train.epochs=1",
                                        "tuning.n_train=120", "tuning.n_val=40",
                                        "tuning.lrs=1e-3,1e-2"])
    summary = json.loads((run_dir / "summary.json").read_text())
    results = summary["results"]
    for model in ("filter", "lstm"):
        record = results[f"{results['dataset']}_{model}_tuning"]
        assert set(record["validation_loss"]) == {"0.001", "0.01"}  # the same sweep for both
        best = min(record["validation_loss"], key=record["validation_loss"].get)
        assert record["lr"] == float(best) == results[f"{results['dataset']}_{model}_lr"]
        assert record["sweep_edge"] in ("lowest", "highest")  # two rates: always an edge
    rows = summary["tables"]["psmnist"]["rows"]
    assert [r[1] for r in rows] == ["filter", "lstm"]
    assert all(r[4] != "not tuned" for r in rows)
