"""The decorrelation experiments: registration, model builders and verdict rules."""

from __future__ import annotations

import pytest

from signalprop.config import apply_overrides
from signalprop.experiments.context import resolve_config
from signalprop.experiments.registry import get_experiment


def test_both_experiments_registered_with_rule_override():
    for name in ("decorrelation-speedup", "decorrelation-approximate"):
        exp = get_experiment(name)
        cfg = apply_overrides(exp.make_config(), ["learning.rule=fa"])
        assert cfg.learning.rule == "fa"


@pytest.mark.parametrize("data", ["fashion-mnist", "mnist1d"])
def test_registered_models_handle_images_and_1d_inputs(data):
    """The MLP and CNN, plain and decorrelated, built through the registry (issue 18.6) on
    images and on the 1-D MNIST-1D fallback."""
    exp = get_experiment("decorrelation-speedup")
    cfg = resolve_config(exp, True, [f"data.name={data}"])
    splits = exp.sample_splits(cfg, 2, 0)
    assert list(exp.models) == ["mlp", "mlp-decor", "cnn", "cnn-decor"]
    for name in exp.models:
        assert exp.build_model(cfg, splits, name)(splits.train.tensors[0]).shape == (2, 10)


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
