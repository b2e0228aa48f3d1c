"""benchmarks/sal_deep_mlp_sweep.py: its models and one tiny run per kind (plain, SAL, linear)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "sal_deep_mlp_sweep.py"


def _load():
    spec = importlib.util.spec_from_file_location("sal_deep_mlp_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_orthogonal_init_scales_every_square_layer_by_the_gain():
    sweep = _load()
    model = sweep.build(argparse.Namespace(depth=3, width=16, gain=1.05, init="orthogonal"))
    square = [m.weight for m in model.modules()
              if isinstance(m, nn.Linear) and m.in_features == m.out_features]
    assert len(square) == 2
    for w in square:
        torch.testing.assert_close(w @ w.T, 1.05 ** 2 * torch.eye(16), atol=1e-5, rtol=0)
    assert isinstance(sweep.build(argparse.Namespace(depth=0)), nn.Linear)


@pytest.mark.parametrize("flags", [["--depth", "0", "--lr", "1e-2"],
                                   ["--depth", "3", "--init", "orthogonal", "--gain", "1.05"],
                                   ["--depth", "3", "--sal-lr", "0.03", "--no-guard"]])
def test_one_tiny_run_prints_its_setting_and_accuracies(flags, monkeypatch, capsys):
    sweep = _load()
    monkeypatch.setattr("sys.argv", ["sal_deep_mlp_sweep.py", "--width", "8", "--epochs", "2",
                                     *flags])
    sweep.main()
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == 2 and len(out["val_curve"]) == 2
    assert 0.0 <= out["test_acc"] <= 1.0 and out["train_loss"] > 0
    assert out["best_val_acc"] == max(out["val_curve"])
