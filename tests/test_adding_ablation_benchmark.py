"""benchmarks/adding_ablation.py: its variants change what they say, and results accumulate."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load():
    spec = importlib.util.spec_from_file_location("adding_ablation",
                                                  BENCHMARKS / "adding_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_parse_to_one_change_each():
    bench = _load()
    assert bench.parse_variant("base", 400) == {}
    assert bench.parse_variant("b=10/T,lr=3e-3", 400) == {"b": 0.025, "lr": 3e-3}
    assert bench.parse_variant("filter=identity,frozen=1", 10) == {"filter": "identity",
                                                                   "frozen": True}
    with pytest.raises(SystemExit, match="unknown variant key 'depth'"):
        bench.parse_variant("depth=3", 10)


def test_models_follow_the_variant():
    bench = _load()
    model = bench.build(20, 8, 0, {"filter": "identity", "frozen": True, "b": 0.1})
    assert torch.equal(model.rnn.cell.filter, torch.eye(8))
    assert model.scale == pytest.approx(10.0)
    assert not any(p.requires_grad for p in model.rnn.parameters())
    assert bench.build(20, 8, 0, {"scale": 1.0}).scale == 1.0


def test_cli_appends_rows_to_its_json(tmp_path, monkeypatch):
    bench = _load()
    out = tmp_path / "ablation.json"
    for variant in ("base", "frozen=1"):
        monkeypatch.setattr(sys, "argv", ["adding_ablation.py", "--T", "6", "--steps", "2",
                                          "--eval-every", "1", "--hidden", "4", "--variants",
                                          variant, "--out", str(out)])
        bench.main()
    rows = json.loads(out.read_text())
    assert set(rows) == {"T=6 base hidden=4 steps=2 seed=0", "T=6 frozen=1 hidden=4 steps=2 seed=0"}
    base = rows["T=6 base hidden=4 steps=2 seed=0"]
    assert [step for step, _ in base["test_mse_curve"]] == [1, 2]
    assert base["recurrent_drive"] >= 0 and base["weight_hh_norm"] > 0
