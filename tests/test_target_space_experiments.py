"""The target-space experiments: configs, rows, legacy runs, spirals' sweep edges, recall's
diverged runs (quick end-to-end runs are slow)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from signalprop.errors import ConfigError, DivergenceError
from signalprop.experiments import target_space_spirals as spirals
from signalprop.experiments.context import RunContext, resolve_config, run_experiment
from signalprop.experiments.evidence import rows_of, select
from signalprop.experiments.registry import get_experiment

NAMES = ("target-space-spirals", "target-space-images", "target-space-recall")


def _tiny(name: str, *extra: str) -> list[str]:
    def text(v):
        return "[" + ",".join(map(str, v)) + "]" if isinstance(v, tuple) else str(v)
    return [f"{k}={text(v)}" for k, v in get_experiment(name).tiny.items()] + list(extra)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_a_claim_and_a_valid_quick_config(name: str) -> None:
    experiment = get_experiment(name)
    assert experiment.claims and experiment.legacy_rows is not None
    cfg = resolve_config(experiment, quick=True, overrides=[])
    assert cfg.seeds >= 1


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve_config(get_experiment("target-space-spirals"), False, ["model.mode=fast"])
    with pytest.raises(ConfigError):  # the old spelling is gone
        resolve_config(get_experiment("target-space-images"), False, ["lrs=[0.1]"])


def test_spirals_sweeps_are_equal_in_size_and_log_spaced() -> None:
    tuning = spirals.SpiralsTuning()
    assert len(tuning.target.lrs) == len(tuning.weight.lrs) >= 4
    for lrs in (tuning.target.lrs, tuning.weight.lrs):
        ratios = [math.log(b / a) for a, b in zip(lrs, lrs[1:], strict=False)]
        assert max(ratios) - min(ratios) < 0.01 and min(ratios) > 0


def test_unequal_spirals_sweeps_stop_the_run_before_training(tmp_path) -> None:
    with pytest.raises(ConfigError, match="same number"):
        run_experiment(get_experiment("target-space-spirals"), out=tmp_path, quick=True,
                       overrides=["tuning.target.lrs=[0.1]"], progress=False)
    assert not list((tmp_path / "target-space-spirals").glob("*/summary.json"))


def test_spirals_choice_at_the_edge_extends_the_sweep_up_to_the_cap(monkeypatch, tmp_path):
    # success grows with the rate: every extension upward wins, until the cap
    def fake(side, x, y, lr, seeds, cfg, epochs=0):
        return spirals.Solves(lr, [100] * min(10, round(lr * 100)) + [None], [])

    monkeypatch.setattr(spirals, "solves", fake)
    cfg = resolve_config(get_experiment("target-space-spirals"), False,
                         ["tuning.weight.lrs=[0.01,0.02,0.04]", "tuning.weight.max_extensions=1"])
    ctx = RunContext(get_experiment("target-space-spirals"), cfg, tmp_path, torch.device("cpu"))
    best, tried, edge = spirals.tune(ctx, "weight", None, None, cfg)
    assert [s.lr for s in tried] == [0.01, 0.02, 0.04, 0.08]
    assert best.lr == 0.08 and edge == "highest"


def _recall(target: list[float], weight: list[float]) -> dict:
    out: dict = {"delays": [5, 10], "seeds": 3}
    for side, accs in (("target", target), ("weight", weight)):
        for k, acc in zip((5, 10), accs, strict=True):
            out[f"k{k}_{side}_test_acc_per_seed"] = [acc - 0.002, acc, acc + 0.002]
    return get_experiment("target-space-recall").with_rows(out)


def _judge(name: str, results: dict) -> tuple[str, str]:
    return get_experiment(name).claims[0].check(results)


def test_recall_gap_within_the_margin_is_no_difference() -> None:
    # both memorise: a 0.005 gap is inside the 0.01 margin, so the delays do not separate them
    ours, verdict = _judge("target-space-recall", _recall([0.997, 0.997], [0.992, 0.992]))
    assert verdict == "partly" and "ahead beyond noise at none" in ours


def test_recall_weight_ahead_is_not_reproduced() -> None:
    ours, verdict = _judge("target-space-recall", _recall([0.90, 0.80], [0.99, 0.99]))
    assert verdict == "not reproduced" and "behind at 5, 10" in ours and "Welch p" in ours


def test_recall_rule_judges_one_seed_runs_stored_without_per_seed_lists() -> None:
    # the 2026-11-26 full run's numbers (one seed, version-1 results)
    old = {"k5_target_test_acc": 1.0, "k10_target_test_acc": 1.0, "k20_target_test_acc": 1.0,
           "k5_weight_test_acc": 0.988, "k10_weight_test_acc": 0.981,
           "k20_weight_test_acc": 0.597}
    ours, verdict = _judge("target-space-recall", get_experiment(
        "target-space-recall").with_rows(old))
    assert verdict == "reproduced" and ours.startswith("mean test acc") and "20: 1.000" in ours


def test_images_legacy_rows_keep_every_seed_and_the_tuned_lr() -> None:
    stored = {"mlp_target_lr": 0.1, "mlp_target_train_loss_per_seed": [0.3, 0.31],
              "mlp_target_test_acc_per_seed": [0.8, 0.81], "mlp_target_train_loss": 0.305}
    for key in ("mlp_weight", "cnn_target", "cnn_weight"):
        stored[f"{key}_train_loss"] = 0.4
    rows = rows_of(get_experiment("target-space-images").with_rows(stored))
    target = select(rows, "mlp-target")
    assert [(r.seed, r.lr, r.value("test_acc")) for r in target] == [(0, 0.1, 0.8),
                                                                      (1, 0.1, 0.81)]
    assert len(select(rows, "cnn-weight")) == 1


def test_a_diverged_recall_run_is_scored_at_chance_and_named(tmp_path, monkeypatch) -> None:
    real_fit = RunContext.fit

    def fit(self, name, *args, **kwargs):
        if name == "3-target-s0":
            raise DivergenceError("loss is nan")
        return real_fit(self, name, *args, **kwargs)

    monkeypatch.setattr(RunContext, "fit", fit)
    run_dir = run_experiment(get_experiment("target-space-recall"), out=tmp_path, quick=True,
                             overrides=_tiny("target-space-recall", "delays=[2,3]"),
                             progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = rows_of(summary["results"])
    lost = [r for r in rows if r.status == "diverged"]
    assert [(r.variant, r.point, r.value("test_acc")) for r in lost] == [("target", 3, 0.5)]
    assert sorted({r.point for r in rows}) == [2, 3] and summary["results"]["delays"] == [2, 3]
    assert "diverged: 3-target-s0" in summary["claims"][0]["our_value"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_quick_run_end_to_end(name: str, tmp_path) -> None:
    run_dir = run_experiment(get_experiment(name), out=tmp_path, quick=True, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    claim = get_experiment(name).claims[0]
    ours, verdict = claim.check(summary["results"])  # the stored verdict is the rule's
    row = summary["claims"][0]
    assert row["verdict"] in (verdict, "not checked") and row["rule"] == claim.rule
    rows = rows_of(summary["results"])
    assert rows and all(r.lr and r.lr > 0 for r in rows)
    assert (run_dir / "rows.jsonl").exists() and summary["series"]
    if name != "target-space-spirals":  # tuned on a validation split: tune-* sub-runs
        subruns = {p.name for p in run_dir.iterdir() if p.is_dir()}
        assert any(n.startswith("tune-") for n in subruns)
        assert any(n.endswith("-s0") and not n.startswith("tune-") for n in subruns)
