"""The decorrelation-resnet experiment: registration, models, verdict rules, a tiny run."""

from __future__ import annotations

import json

import pytest
import torch

from signalprop.config import apply_overrides
from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config, run_experiment
from signalprop.experiments.decorrelation_resnet import make
from signalprop.experiments.registry import get_experiment
from signalprop.nn.decorrelation import decorrelators

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
    assert [r["variant"] for r in rows] == ["bp-decorbp", "dbp-decorbp", "bp", "dbp", "dbp-b8"]
    assert [r["lr"] for r in rows[:2]] == [1e-4, 1e-4]  # decorbp: one fixed Adam lr
    assert all(f"{r['lr']:g}" in ("0.001", "0.01") for r in rows[2:])
    assert len(list(run_dir.glob("tune-resnet18-*"))) == 6  # 3 variants x 2 lrs, same budget
    assert "wall_speedup" not in rows[0] and "wall_speedup" not in rows[2]
    for row in (rows[1], rows[3], rows[4]):  # each against its own protocol's BP
        assert {"step_time_ratio", "wall_speedup", "epoch_speedup"} <= set(row)
    assert summary["results"]["archs"] == "resnet18"
    assert summary["results"]["budget"] == {"epochs": 1, "width": 4, "train_images": 100}
    assert "decorbp protocol" in summary["claims"][0]["our_value"]
    speed = summary["claims"][0]
    assert speed["verdict"] in ("reproduced", "partly", "not checked")
    assert "of the paper's 20 epochs of 50,000 images, width 64" in speed["our_value"]
    if speed["verdict"] == "not checked":  # far below the paper's budget
        assert "not checked at scale (ours 1 epoch of 100 images" in speed["our_value"]


def _both_arms(ours_acc: float, decorbp_acc: float, budget: dict | None = None) -> dict:
    """Rows of both protocols: ours as in :func:`_rows`, decorbp's at one fixed lr."""
    results = _rows(1.5, ours_acc)
    for seed in range(3):
        jitter = 0.01 * (seed - 1)
        results["rows"] += [
            {"variant": "bp-decorbp", "point": "resnet18", "seed": seed, "lr": 1e-4,
             "test_acc": 0.9 + jitter},
            {"variant": "dbp-decorbp", "point": "resnet18", "seed": seed, "lr": 1e-4,
             "test_acc": decorbp_acc + jitter, "wall_speedup": 0.8 + jitter,
             "epoch_speedup": 1.0, "step_time_ratio": 1.4}]
    if budget is not None:
        results["budget"] = budget
    return results


def test_the_decorbp_arm_is_judged_and_ours_reported_beside_it():
    speed, acc = get_experiment(EXPERIMENT).claims
    text, verdict = speed.check(_both_arms(0.95, 0.95))
    assert verdict == "not reproduced"  # decorbp's 0.8x, not ours 1.5x
    assert text.startswith("decorbp protocol") and "fixed Adam lr BP/DBP 0.0001/0.0001" in text
    assert "beside it, not judged, our protocol" in text and "tuned Adam lr" in text
    assert acc.check(_both_arms(0.95, 0.85))[1] == "not reproduced"
    assert acc.check(_both_arms(0.85, 0.95))[1] == "reproduced"


def test_partly_needs_dbp_ahead():
    """v3: a DBP a little behind BP is not reproduced (v2 called it partly); a little ahead,
    within the seeds' noise, is partly."""
    acc = get_experiment(EXPERIMENT).claims[1]
    assert acc.check(_rows(1.0, 0.897))[1] == "not reproduced"
    ahead = _rows(1.0, 0.9)
    for row, value in zip([r for r in ahead["rows"] if r["variant"] == "dbp"],
                          (0.92, 0.88, 0.91), strict=True):
        row["test_acc"] = value
    assert acc.check(ahead)[1] == "partly"


def test_not_reproduced_below_the_papers_budget_is_not_checked_at_scale():
    speed, acc = get_experiment(EXPERIMENT).claims
    small = {"epochs": 5, "train_images": 4000, "width": 32}
    text, verdict = speed.check(_both_arms(0.9, 0.9, small))
    assert verdict == "not checked"
    assert ("not checked at scale (ours 5 epochs of 4,000 images, width 32 of the paper's "
            "20 epochs of 50,000 images, width 64)") in text
    full = {"epochs": 20, "train_images": 50000, "width": 64}
    assert speed.check(_both_arms(0.9, 0.9, full))[1] == "not reproduced"
    text, verdict = acc.check(_both_arms(0.85, 0.95, small))
    assert verdict == "reproduced" and "budget: ours 5 epochs" in text


def test_decorbp_protocol_settings_and_model():
    cfg = get_experiment(EXPERIMENT).make_config()
    assert cfg.protocols == ("decorbp", "ours")
    p = cfg.decorbp
    assert (p.lr, p.decor_lr, p.kappa, p.sample_fraction, p.variance) == (
        1e-4, 1e-4, 0.01, 0.1, "columns")  # decorbp's CIFAR10_RESNET18.txt
    with pytest.raises(ConfigError, match="protocols"):
        apply_overrides(cfg, ["protocols=[paper]"])
    with pytest.raises(ConfigError, match="variance"):
        apply_overrides(cfg, ["decorbp.variance=both"])
    exp = get_experiment(EXPERIMENT)
    small = resolve_config(exp, True, ["data.name=mnist1d"])
    splits = exp.sample_splits(small, 2, 0)
    model, rules = make("resnet18", 0, splits, small, "decorbp")
    decs = [dec for _, dec in decorrelators(model)]
    assert decs and rules
    assert {(d.rule, d.lr, d.kappa, d.variance, d.center, d.subsample, d.block_size)
            for d in decs} == {("whiten", 1e-4, 0.01, "columns", False, "replacement", None)}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # kept
