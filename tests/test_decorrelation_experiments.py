"""The decorrelation experiments: registration, model builders and verdict rules."""

from __future__ import annotations

import torch

from signalprop.config import apply_overrides
from signalprop.experiments.decorrelation import ModelConfig, make_cnn, make_mlp
from signalprop.experiments.registry import get_experiment


def test_both_experiments_registered_with_rule_override():
    for name in ("decorrelation-speedup", "decorrelation-approximate"):
        exp = get_experiment(name)
        cfg = apply_overrides(exp.make_config(), ["learning.rule=fa"])
        assert cfg.learning.rule == "fa"


def test_cnn_handles_images_and_1d_inputs():
    cfg = ModelConfig(width=16, channels=(2, 3))
    assert make_cnn((1, 28, 28), 10, cfg)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert make_cnn((40,), 10, cfg)(torch.randn(2, 40)).shape == (2, 10)
    assert make_mlp(40, 10, cfg)(torch.randn(2, 40)).shape == (2, 10)


def test_speedup_verdicts_follow_numbers():
    exp = get_experiment("decorrelation-speedup")
    fast = {"archs": "mlp,cnn", "mlp_epoch_speedup": 2.0, "cnn_epoch_speedup": 1.6,
            "mlp_wall_speedup": 1.5, "cnn_wall_speedup": 1.3, "mlp_step_time_ratio": 1.2,
            "cnn_step_time_ratio": 1.1}
    assert [c.check(fast)[1] for c in exp.claims] == ["reproduced", "reproduced"]
    slow = {**fast, "cnn_epoch_speedup": 1.0, "mlp_wall_speedup": 0.5}
    assert [c.check(slow)[1] for c in exp.claims] == ["not reproduced", "not reproduced"]


def test_approximate_verdicts_follow_numbers():
    exp = get_experiment("decorrelation-approximate")
    results = {"bp_test_acc": 0.85, "fa_test_acc": 0.5, "fa+decor_test_acc": 0.83,
               "np_test_acc": 0.5, "np+decor_test_acc": 0.5, "bp_train_loss": 0.2,
               "fa_train_loss": 1.0, "fa+decor_train_loss": 0.3, "np_train_loss": 1.0,
               "np+decor_train_loss": 1.0}
    assert [c.check(results)[1] for c in exp.claims] == ["reproduced", "not reproduced"]


def test_speedup_adds_block_diagonal_runs_to_table_and_results(tmp_path):
    import json

    from signalprop.experiments.context import run_experiment

    run_dir = run_experiment(get_experiment("decorrelation-speedup"), out=tmp_path, quick=True,
                             progress=False, overrides=[
                                 "architectures=[mlp]", "data.n_train=300", "data.n_test=100",
                                 "train.epochs=2", "block_sizes=[16]"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r[0] for r in summary["tables"]["speedup"]["rows"]] == ["mlp", "mlp, R blocks of 16"]
    results = summary["results"]
    assert {"mlp_epoch_speedup", "mlp_b16_epoch_speedup", "mlp_b16_step_time_ratio"} <= set(results)
    model_dir = run_dir / "mlp-decor-b16-s0"
    assert model_dir.is_dir()


def test_speedup_rejects_bad_block_sizes():
    import pytest

    from signalprop.errors import ConfigError

    exp = get_experiment("decorrelation-speedup")
    with pytest.raises(ConfigError, match="block_sizes"):
        apply_overrides(exp.make_config(), ["block_sizes=[0]"])
