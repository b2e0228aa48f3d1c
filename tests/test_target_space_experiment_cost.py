"""benchmarks/target_space_experiment_cost.py: a tiny run times both spaces for every row."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "target_space_experiment_cost.py"


def _load():
    spec = importlib.util.spec_from_file_location("target_space_experiment_cost", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["target_space_experiment_cost"] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_both_spaces_per_row(tmp_path, capsys):
    out = tmp_path / "cost.json"
    args = ["--delays", "2,3", "--batch", "4", "--n-bar", "4", "--steps", "1", "--repeats", "1"]
    assert _load().main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert len(result["ratios"]) == 3 and all(v > 0 for v in result["ratios"].values())
    assert [r["model"] for r in rows] == ["recall k=2", "recall k=3", "two spirals 2-5-5-5-2"]
    assert all(r["target_ms"] > 0 and r["weight_ms"] > 0 for r in rows)
    assert "recall k=3" in capsys.readouterr().out
