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
    assert cfg.tuning.lrs == (3e-4, 1e-3, 3e-3) and cfg.tuning.epochs == 1 and cfg.seeds == 1
    assert apply_overrides(cfg, ["tuning.lrs=[0.001]"]).tuning.lrs == (0.001,)
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


def _rows(wall: float, dbp_acc: float, seeds: int = 3) -> dict:
    """Rows of BP and dense-R DBP on ResNet-18 (speed-up ``wall`` and accuracy ``dbp_acc``,
    with a little spread over seeds)."""
    rows = []
    for seed in range(seeds):
        jitter = 0.01 * (seed - 1)
        rows.append({"variant": "bp", "point": "resnet18", "seed": seed, "lr": 1e-3,
                     "test_acc": 0.9 + jitter / 10})
        rows.append({"variant": "dbp", "point": "resnet18", "seed": seed, "lr": 3e-3,
                     "test_acc": dbp_acc + jitter / 10, "wall_speedup": wall + jitter,
                     "epoch_speedup": 2.5, "step_time_ratio": 1.1})
    return {"dataset": "fashion-mnist", "rows": rows}


def test_verdicts_follow_the_paper_thresholds():
    claims = get_experiment(EXPERIMENT).claims
    verdicts = [[c.check(_rows(w, 0.91))[1] for c in claims] for w in (2.1, 1.5, 1.0)]
    assert [v[0] for v in verdicts] == ["reproduced", "partly", "not reproduced"]
    assert verdicts[0][1] == "reproduced"
    ours = claims[0].check(_rows(2.1, 0.91))[0]
    assert "t-test p" in ours and "tuned Adam lr BP/DBP 0.001/0.003" in ours
    assert claims[1].check(_rows(2.0, 0.88))[1] == "not reproduced"
    assert "Welch p" in claims[1].check(_rows(2.0, 0.88))[0]
    assert claims[0].check({"dataset": "x", "rows": []})[1] == "not checked"
    never = claims[0].check(_rows(0.0, 0.91))
    assert never[1] == "not reproduced" and "never reached" in never[0]


def test_a_run_made_before_the_runner_is_read_into_rows():
    exp = get_experiment(EXPERIMENT)
    old = {"archs": "resnet18", "resnet18_bp_test_acc_per_seed": [0.8, 0.81],
           "resnet18_bp_test_acc": 0.805, "resnet18_dbp_test_acc_per_seed": [0.82, 0.83],
           "resnet18_dbp_test_acc": 0.825, "resnet18_dbp_step_ratio": 1.4,
           "resnet18_dbp_wall_speedup_per_seed": [0.5, 0.6]}
    rows = exp.with_rows(old)["rows"]
    assert [(r["variant"], r["seed"]) for r in rows] == [("bp", 0), ("bp", 1), ("dbp", 0),
                                                         ("dbp", 1)]
    assert rows[3]["wall_speedup"] == 0.6 and rows[3]["step_time_ratio"] == 1.4
    assert rows[3]["run"] == "resnet18-dbp-s1"


@pytest.mark.slow
def test_tiny_run_tunes_every_variant_and_reports_them(tmp_path):
    run_dir = run_experiment(get_experiment(EXPERIMENT), out=tmp_path, quick=True,
                             progress=False, overrides=[
                                 "architectures=[resnet18]", "data.n_train=150",
                                 "data.n_val=50", "data.n_test=50", "train.epochs=1",
                                 "model.resnet_width=4", "block_sizes=[0,8]",
                                 "tuning.lrs=[0.001,0.01]", "tuning.max_extensions=0"])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["results"]["rows"]
    assert [r["variant"] for r in rows] == ["bp", "dbp", "dbp-b8"]
    assert all(f"{r['lr']:g}" in ("0.001", "0.01") for r in rows)
    assert len(list(run_dir.glob("tune-resnet18-*"))) == 6  # 3 variants x 2 lrs, same budget
    assert "wall_speedup" not in rows[0]
    assert {"step_time_ratio", "wall_speedup", "epoch_speedup"} <= set(rows[1]) & set(rows[2])
    assert summary["results"]["archs"] == "resnet18"
    assert [c["verdict"] for c in summary["claims"]][0] in (
        "reproduced", "partly", "not reproduced")
