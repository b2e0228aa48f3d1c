"""Every registered experiment runs end to end at a tiny size (its ``quick`` settings, then its
``tiny`` overrides): the run directory gets a summary whose claims were judged, and a study's
rows when it declares them."""

from __future__ import annotations

import json

import pytest

from signalprop.experiments.context import run_experiment
from signalprop.experiments.registry import all_experiments

EXPERIMENTS = [e for e in all_experiments() if e.tiny]


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=[e.name for e in EXPERIMENTS])
def test_experiment_runs_end_to_end_at_a_tiny_size(experiment, tmp_path):
    overrides = [f"{k}={_text(v)}" for k, v in experiment.tiny.items()]
    run_dir = run_experiment(experiment, out=tmp_path, quick=True, progress=False,
                             overrides=overrides)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["claims"]) == len(experiment.claims)
    assert all(c["verdict"] for c in summary["claims"])
    rows = summary["results"].get("rows")
    if rows is not None:
        assert rows and (run_dir / "rows.jsonl").exists()


def test_every_experiment_declares_a_tiny_size():
    missing = [e.name for e in all_experiments() if not e.tiny]
    assert not missing, f"experiments without tiny overrides: {missing}"


def _text(value) -> str:
    if isinstance(value, tuple | list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)
