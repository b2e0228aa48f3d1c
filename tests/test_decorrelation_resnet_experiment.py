"""The decorrelation-resnet experiment: registration, models, verdict rules, a tiny run."""

from __future__ import annotations

import json

import pytest

from signalprop.config import apply_overrides
from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config, run_experiment
from signalprop.experiments.registry import get_experiment

EXPERIMENT = "decorrelation-resnet"


def test_registered_with_dalm_preset_and_dense_plus_block_variants():
    cfg = get_experiment(EXPERIMENT).make_config()
    assert cfg.decor.preset == "dalm" and cfg.block_sizes == (0, 32)
    assert apply_overrides(cfg, ["decor.preset=ahmad"]).decor.preset == "ahmad"
    with pytest.raises(ConfigError):
        apply_overrides(cfg, ["architectures=[resnet50]"])


@pytest.mark.parametrize("data", ["fashion-mnist", "mnist1d"])
def test_registered_models_for_images_and_1d_inputs(data):
    """ResNet-18 and the ViT, BP and DBP, built through the registry (issue 18.6); the ViT
    needs square images and says so on 1-D inputs."""
    exp = get_experiment(EXPERIMENT)
    cfg = resolve_config(exp, True, [f"data.name={data}"])
    splits = exp.sample_splits(cfg, 2, 0)
    image = len(splits.input_shape) == 3
    for name, spec in exp.models.items():
        if spec.image_only and not image:
            with pytest.raises(ConfigError, match="square images"):
                exp.build_model(cfg, splits, name)
            continue
        model = exp.build_model(cfg, splits, name)
        assert model(splits.train.tensors[0]).shape == (2, 10)


def test_verdicts_follow_the_paper_thresholds():
    claims = get_experiment(EXPERIMENT).claims
    base = {"dataset": "fashion-mnist", "resnet18_dbp_epoch_speedup": 2.5,
            "resnet18_dbp_step_ratio": 1.1, "resnet18_bp_test_acc": 0.9,
            "resnet18_dbp_test_acc": 0.91}
    verdicts = [[c.check({**base, "resnet18_dbp_wall_speedup": w})[1] for c in claims]
                for w in (2.1, 1.5, 1.0)]
    assert [v[0] for v in verdicts] == ["reproduced", "partly", "not reproduced"]
    assert verdicts[0][1] == "reproduced"
    worse = {**base, "resnet18_dbp_wall_speedup": 2.0, "resnet18_dbp_test_acc": 0.88}
    assert claims[1].check(worse)[1] == "not reproduced"
    assert claims[0].check({"dataset": "x"})[1] == "not checked"
    never = claims[0].check({**base, "resnet18_dbp_wall_speedup": 0.0})
    assert never[1] == "not reproduced" and "never reached" in never[0]


@pytest.mark.slow
def test_tiny_run_tunes_every_variant_and_reports_them(tmp_path):
    run_dir = run_experiment(get_experiment(EXPERIMENT), out=tmp_path, quick=True,
                             progress=False, overrides=[
                                 "architectures=[resnet18]", "data.n_train=150",
                                 "data.n_val=50", "data.n_test=50", "train.epochs=1",
                                 "model.resnet_width=4", "block_sizes=[0,8]",
                                 "lrs=[0.001,0.01]"])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["tables"]["resnet"]["rows"]
    assert [r[1] for r in rows] == ["bp", "dbp", "dbp-b8"]
    assert all(r[3] in ("0.001", "0.01") for r in rows)
    assert len(list(run_dir.glob("tune-resnet18-*"))) == 6  # 3 variants x 2 lrs, same budget
    results = summary["results"]
    assert results["resnet18_bp_wall_speedup"] == 1.0
    assert {"resnet18_dbp_step_ratio", "resnet18_dbp-b8_test_acc"} <= set(results)
    assert [c["verdict"] for c in summary["claims"]][0] in (
        "reproduced", "partly", "not reproduced")
