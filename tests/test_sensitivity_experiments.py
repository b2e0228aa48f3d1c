"""The three SAL experiments: registration, tiny end-to-end runs, verdicts computed from numbers."""

import json

import pytest

from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config, run_experiment
from signalprop.experiments.registry import get_experiment
from signalprop.learning.sensitivity import SensitivityAdjustment

NAMES = ("sensitivity-chaos", "sensitivity-deep-mlp", "sensitivity-lag")


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_quick_config_and_claims(name):
    exp = get_experiment(name)
    assert exp.claims and exp.quick
    resolve_config(exp, quick=True, overrides=[])  # quick overrides are valid keys


def test_config_validation():
    exp = get_experiment("sensitivity-chaos")
    with pytest.raises(ConfigError, match="sal.lr"):
        resolve_config(exp, quick=False, overrides=["sal.lr=-1"])
    with pytest.raises(ConfigError, match="warmup"):
        resolve_config(exp, quick=False, overrides=["run.warmup=600"])


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_tiny_chaos_run_tracks_both_quantities(tmp_path):
    exp = get_experiment("sensitivity-chaos")
    run_dir = run_experiment(exp, out=tmp_path, quick=True, overrides=[
        "model.hidden=20", "run.steps=30", "run.eval_every=10", "run.eval_len=60",
        "run.warmup=10", "run.gains=0.3,2.0", "sal.lr=0.05"])
    summary = _summary(run_dir)
    results = summary["results"]
    assert results["final_lambda_max"] > results["initial_lambda_max"] + 0.5
    assert len(summary["series"]["sal_trace"]["lines"]["lambda_max"]) == 4
    rows = summary["tables"]["lyapunov_vs_gain"]["rows"]
    assert [r[0] for r in rows] == [0.3, 2.0] and rows[0][1] < rows[1][1]
    exp_claims = get_experiment("sensitivity-chaos").claims
    for claim, row in zip(exp_claims, summary["claims"], strict=True):
        assert (row["our_value"], row["verdict"]) == claim.check(results)  # from the numbers
        assert row["rule_version"] == claim.rule_version


def test_tiny_lag_and_deep_runs_complete(tmp_path, monkeypatch):
    run_dir = run_experiment(get_experiment("sensitivity-lag"), out=tmp_path, quick=True,
                             overrides=["data.lag=5", "data.n_train=64", "data.n_test=32",
                                        "run.seeds=1", "train.epochs=1"])
    results = _summary(run_dir)["results"]
    for variant in ("bptt", "bptt-tuned-radius", "bptt-sal"):
        accs = results[f"{variant}_mean_test_acc_per_seed"]
        result = json.loads((run_dir / variant / "seed0" / "result.json").read_text())
        assert accs == [result["test_acc"]]
        assert results[f"{variant}_success_rate"] == float(accs[0] >= 0.95)
    guards = []  # saturation_guard of every SAL rule the deep experiment builds
    original_init = SensitivityAdjustment.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        guards.append(self.saturation_guard)

    monkeypatch.setattr(SensitivityAdjustment, "__init__", recording_init)
    run_dir = run_experiment(get_experiment("sensitivity-deep-mlp"), out=tmp_path, quick=True,
                             overrides=["model.depth=4", "data.n_train=64", "data.n_test=32",
                                        "train.epochs=1", "model.width=8", "tuning.n_val=16"])
    summary = _summary(run_dir)
    lines = summary["series"]["deep_grad_norm"]["lines"]
    assert set(lines) == {f"{v}, {e}" for v in ("bp", "bp-tuned-gain", "bp-sal", "bp-sal-no-guard")
                          for e in ("epoch 1", "last epoch")}
    assert len(lines["bp, last epoch"]) == 5  # 4 hidden layers + head
    assert "bp-sal_log10_grad_first_over_last_epoch1" in summary["results"]
    # The guard ablation trains its own model: a SAL run with the guard off.
    assert "bp-sal-no-guard_test_acc" in summary["results"]
    # Four SAL candidates are tuned (2 inits x 2 rates, guard on), then BP+SAL and its ablation.
    assert guards == [True] * 5 + [False]
    assert summary["results"]["seeds"] == 1 and (run_dir / "bp-sal" / "seed0").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_quick_versions_run(tmp_path, name):
    summary = _summary(run_experiment(get_experiment(name), out=tmp_path, quick=True))
    assert summary["claims"]


def _deep(sal, other, other_key, dataset="mnist1d"):
    return {"dataset": dataset, "bp-sal_test_acc_per_seed": sal,
            f"{other_key}_test_acc_per_seed": other, "bp-sal_loss_drop": 0.3,
            "bp_loss_drop": 0.0}


@pytest.mark.parametrize(("claim", "other_key"), [(1, "bp"), (2, "bp-tuned-gain")])
def test_deep_claims_need_a_meaningful_accuracy(claim, other_key):
    """Rule v3: the reproduced margins at an accuracy below MNIST-1D's logistic regression
    (0.32) give partly with the reason; on data without a reference, partly too."""
    check = get_experiment("sensitivity-deep-mlp").claims[claim].check
    low = _deep([0.25, 0.26, 0.24], [0.089, 0.09, 0.088], other_key)
    ours, verdict = check(low)
    assert verdict == "partly" and "0.250 < 0.32" in ours and "not a meaningful" in ours
    high = _deep([0.45, 0.46, 0.44], [0.089, 0.09, 0.088], other_key)
    assert check(high)[1] == "reproduced"
    ours, verdict = check(_deep([0.45, 0.46, 0.44], [0.089, 0.09, 0.088], other_key, "other"))
    assert verdict == "partly" and "no linear-classifier reference accuracy for other" in ours
    # Below the reference a failing comparison stays not reproduced.
    assert check(_deep([0.09, 0.09, 0.09], [0.2, 0.21, 0.19], other_key))[1] == "not reproduced"


def test_tuned_init_orthogonal_redraws_only_the_tuned_variant(tmp_path, monkeypatch):
    from signalprop.experiments import sensitivity

    calls = []
    original = sensitivity.orthogonal_init_

    def recording(model, gain):
        calls.append(gain)
        return original(model, gain)

    monkeypatch.setattr(sensitivity, "orthogonal_init_", recording)
    run_dir = run_experiment(get_experiment("sensitivity-deep-mlp"), out=tmp_path, quick=True,
                             overrides=["model.depth=3", "data.n_train=64", "data.n_test=32",
                                        "train.epochs=1", "model.width=8", "tuning.epochs=0",
                                        "model.tuned_init=orthogonal", "model.tuned_gain=1.05"])
    assert calls == [1.05]  # without tuning: one seed, the bp-tuned-gain variant only
    assert _summary(run_dir)["results"]["tuned_init"] == "orthogonal"
    with pytest.raises(ConfigError, match="model.tuned_init"):
        resolve_config(get_experiment("sensitivity-deep-mlp"), quick=True,
                       overrides=["model.tuned_init=uniform"])


def test_orthogonal_init_scales_square_weights_by_the_gain():
    import torch

    from signalprop.experiments.sensitivity import orthogonal_init_
    from signalprop.nn.mlp import MLP

    model = orthogonal_init_(MLP(5, 16, 3, 4, "tanh", 0.5), 1.05)
    for layer in model.hidden:
        if isinstance(layer, torch.nn.Linear) and layer.in_features == 16:
            torch.testing.assert_close(layer.weight @ layer.weight.T,
                                       1.05 ** 2 * torch.eye(16), atol=1e-5, rtol=0)


def test_deep_mlp_tunes_every_variant_with_an_equal_budget_on_validation(tmp_path):
    from signalprop.experiments.sensitivity import deep_sweeps

    exp = get_experiment("sensitivity-deep-mlp")
    run_dir = run_experiment(exp, out=tmp_path, quick=True, overrides=[
        "model.depth=3", "data.n_train=64", "data.n_test=32", "train.epochs=1", "model.width=8",
        "tuning.n_val=16"])
    summary = _summary(run_dir)
    results = summary["results"]
    cfg = resolve_config(exp, quick=True, overrides=[])
    sweeps = deep_sweeps(cfg)
    assert len({len(sweep) for sweep in sweeps.values()}) == 1  # equal budgets
    for variant, sweep in sweeps.items():
        record = results["tuning"][variant]
        labels = [c.label for c in sweep]
        assert list(record["validation_loss"]) == labels  # every candidate scored
        best = min(labels, key=lambda k: record["validation_loss"][k])
        assert record["choice"] == best
        chosen = results[f"{variant}_setting"]
        assert {**chosen, "label": None} == {**vars(next(c for c in sweep if c.label == best)),
                                             "label": None}
        for label in labels:  # tuning sub-runs trained on 48 examples, scored on 16 held out
            assert (run_dir / f"tune-{variant}-{label}" / "result.json").exists()
    assert results["bp-sal-no-guard_setting"] == results["bp-sal_setting"]
    assert results["n_train_used"] == 48
    rows = summary["tables"]["tuning"]["rows"]
    assert [r[0] for r in rows] == ["bp", "bp-tuned-gain", "bp-sal"]
    assert "tuned on validation" in summary["claims"][2]["our_value"]


def test_deep_mlp_unequal_tuning_budget_is_refused_before_training(tmp_path):
    exp = get_experiment("sensitivity-deep-mlp")
    with pytest.raises(ConfigError, match="same tuning budget"):
        run_experiment(exp, out=tmp_path, quick=True, overrides=["tuning.bp_lrs=1e-3"])
    assert not any(tmp_path.rglob("result.json"))
