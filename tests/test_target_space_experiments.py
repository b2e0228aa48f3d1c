"""The target-space experiments are registered, validate their configs and run (quick, slow)."""

from __future__ import annotations

import json
import math

import pytest

from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config, run_experiment
from signalprop.experiments.lr_tuning import sweep_edge
from signalprop.experiments.registry import get_experiment
from signalprop.experiments.target_space import SpiralsSweep, _recall_check

NAMES = ("target-space-spirals", "target-space-images", "target-space-recall")


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_a_claim_and_a_valid_quick_config(name: str) -> None:
    experiment = get_experiment(name)
    assert experiment.claims
    resolve_config(experiment, quick=True, overrides=[])


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve_config(get_experiment("target-space-spirals"), False, ["model.mode=fast"])


def test_spirals_sweeps_are_equal_in_size_and_log_spaced() -> None:
    sweep = SpiralsSweep()
    assert len(sweep.target_lrs) == len(sweep.weight_lrs) >= 4
    for lrs in (sweep.target_lrs, sweep.weight_lrs):
        ratios = [math.log(b / a) for a, b in zip(lrs, lrs[1:], strict=False)]
        assert max(ratios) - min(ratios) < 0.01 and min(ratios) > 0


def test_a_tuned_lr_at_the_sweep_edge_is_flagged() -> None:
    assert sweep_edge(0.1, (0.01, 0.1)) == "highest" and sweep_edge(0.01, (0.01, 0.1)) == "lowest"
    assert not sweep_edge(0.03, (0.01, 0.03, 0.1)) and not sweep_edge(0.1, (0.1,))


def test_unequal_spirals_sweeps_stop_the_run_before_training(tmp_path) -> None:
    with pytest.raises(ConfigError, match="same number"):
        run_experiment(get_experiment("target-space-spirals"), out=tmp_path, quick=True,
                       overrides=["sweep.target_lrs=0.1"], progress=False)
    assert not list((tmp_path / "target-space-spirals").glob("*/summary.json"))


def _recall_results(target: list[float], weight: list[float]) -> dict:
    out: dict = {"delays": [5, 10], "seeds": 3}
    for side, accs in (("target", target), ("weight", weight)):
        for k, acc in zip((5, 10), accs, strict=True):
            values = [acc - 0.002, acc, acc + 0.002]
            out[f"k{k}_{side}_test_acc_per_seed"] = values
            out[f"k{k}_{side}_test_acc"] = sum(values) / 3
    return out


def test_recall_gap_within_the_margin_is_no_difference() -> None:
    # both memorise: a 0.005 gap is inside the 0.01 margin, so the delays do not separate them
    ours, verdict = _recall_check(_recall_results([0.997, 0.997], [0.992, 0.992]))
    assert verdict == "partly" and "ahead beyond noise at none" in ours


def test_recall_weight_ahead_is_not_reproduced() -> None:
    ours, verdict = _recall_check(_recall_results([0.90, 0.80], [0.99, 0.99]))
    assert verdict == "not reproduced" and "behind at 5, 10" in ours


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_quick_run_end_to_end(name: str, tmp_path) -> None:
    run_dir = run_experiment(get_experiment(name), out=tmp_path, quick=True, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    claims = get_experiment(name).claims
    assert len(summary["claims"]) == len(claims)
    for claim, row in zip(claims, summary["claims"], strict=True):
        ours, verdict = claim.check(summary["results"])  # the stored verdict is the rule's
        assert row["verdict"] in (verdict, "not checked") and row["rule"] == claim.rule
        assert row["verdict"] == "not checked" or row["our_value"] == ours
    assert summary["series"]
    results = summary["results"]
    prefix = "mlp_target" if name == "target-space-images" else "target"
    assert results[f"{prefix}_lr"] > 0 and isinstance(results[f"{prefix}_lr_at_edge"], bool)
    if name == "target-space-spirals":  # tuned on held-out points, every candidate recorded
        tuning = summary["tables"]["spirals_tuning"]["rows"]
        assert {row[1] for row in tuning if row[0] == "target"} == set(
            resolve_config(get_experiment(name), True, []).sweep.target_lrs)
    else:  # tuned on a validation split: tune-* sub-runs, then one sub-run per seed
        subruns = {p.name for p in run_dir.iterdir() if p.is_dir()}
        assert any(n.startswith("tune-") for n in subruns)
        assert any(n.endswith("-s0") and not n.startswith("tune-") for n in subruns)
        key = "target_tuning" if name == "target-space-recall" else "mlp_weight_tuning"
        assert len(results[key]["validation_loss"]) == 2


def test_recall_rule_judges_runs_stored_without_the_delays_list() -> None:
    # the 2026-11-26 full run's numbers (one seed, version-1 results)
    old = {"k5_target_test_acc": 1.0, "k10_target_test_acc": 1.0, "k20_target_test_acc": 1.0,
           "k5_weight_test_acc": 0.988, "k10_weight_test_acc": 0.981,
           "k20_weight_test_acc": 0.597}
    ours, verdict = _recall_check(old)
    assert verdict == "reproduced" and ours.startswith("mean test acc") and "20: 1.000" in ours


@pytest.mark.slow
def test_a_diverged_recall_run_is_scored_at_chance_and_named(tmp_path, monkeypatch) -> None:
    from signalprop.errors import DivergenceError
    from signalprop.experiments.context import RunContext

    real_fit = RunContext.fit

    def fit(self, name, *args, **kwargs):
        if name == "k4-target-s0":
            raise DivergenceError("loss is nan")
        return real_fit(self, name, *args, **kwargs)

    monkeypatch.setattr(RunContext, "fit", fit)
    run_dir = run_experiment(get_experiment("target-space-recall"), out=tmp_path, quick=True,
                             overrides=["train.epochs=1"], progress=False)
    results = json.loads((run_dir / "summary.json").read_text())["results"]
    assert results["diverged"] == ["k4-target-s0"]
    assert results["k4_target_test_acc_per_seed"] == [0.5]
    assert "k2_target_wall_s" in results and "k4_target_wall_s" not in results


@pytest.mark.slow
def test_recall_can_tune_both_spaces_at_every_delay(tmp_path) -> None:
    run_dir = run_experiment(get_experiment("target-space-recall"), out=tmp_path, quick=True,
                             overrides=["tune_every_delay=true", "train.epochs=1"],
                             progress=False)
    results = json.loads((run_dir / "summary.json").read_text())["results"]
    for k in (2, 4):
        for side in ("target", "weight"):
            assert results[f"k{k}_{side}_lr"] in (0.003, 0.03)
            assert len(results[f"k{k}_{side}_tuning"]["validation_loss"]) == 2
    assert "target_lr" not in results
    assert (run_dir / "tune-k4-weight-lr0.03").is_dir()
