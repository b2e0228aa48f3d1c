"""The tiny end-to-end run both pairing studies' tests make (pairing-decor-fa and
pairing-sal-decor): every method tuned on one two-rate grid on seed 0, then trained on two
seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from signalprop.experiments.context import run_experiment
from signalprop.experiments.registry import Experiment


def tiny_pairing_run(exp: Experiment, methods: tuple[str, ...], tmp_path: Path
                     ) -> dict[str, Any]:
    """Run ``exp`` at a tiny size, check one row per method and seed and one tuning run per
    method and rate, and return the run's summary."""
    run_dir = run_experiment(exp, out=tmp_path, quick=True, progress=False, overrides=[
        "data.n_train=160", "data.n_val=40", "data.n_test=60", "train.epochs=1",
        "model.depth=3", "model.width=8", "tuning.lrs=[0.001,0.01]",
        "tuning.max_extensions=0", "seeds=2"])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["results"]["rows"]
    assert [(r["variant"], r["seed"]) for r in rows] == [(v, s) for v in methods
                                                         for s in (0, 1)]
    assert sorted(p.name for p in run_dir.glob("tune-*")) == sorted(
        f"tune-{v}-s0-lr{lr}" for v in methods for lr in ("0.001", "0.01"))
    return summary
