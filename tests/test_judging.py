"""The checks every claim shares: run health, data provenance, seed labels, stored vs today's
verdicts, and the seed statistics behind stochastic claims."""

from __future__ import annotations

import dataclasses
import math

import pytest
from claim_cases import CASES

from signalprop.experiments import decorrelation_models as decorrelation
from signalprop.experiments import gated_depth, gated_variants
from signalprop.experiments.judging import judge, subrun_health
from signalprop.experiments.registry import get_experiment
from signalprop.experiments.stats import (
    Difference,
    Side,
    log_linear_fit,
    rank_correlation,
)
from signalprop.report.runs_reader import merge_claims
from signalprop.reproduce import seed_overrides

VANISHING = get_experiment("deep-tanh-mlp").claims[0]
LEARNT_GATES = get_experiment("gated-variants").claims[0]
HEALTHY = {"shallow": {"initial_loss": 2.3, "final_loss": 0.4, "comparable": True},
           "deep": {"initial_loss": 2.3, "final_loss": 2.2, "comparable": True}}


def _ratio(value: float) -> dict:
    """deep-tanh-mlp results whose deep model's last/first gradient ratio is ``value``."""
    return {"rows": [{"variant": "deep", "seed": 0, "grad_ratio_last_to_first": value}]}


def _judge(claim, results, *, datasets=("mnist1d",), quick=False, health=None, **summary):
    return judge(claim, {"results": results, "datasets": list(datasets), **summary},
                 command="signalprop run x", quick=quick,
                 health=HEALTHY if health is None else health)


def test_a_run_that_did_not_learn_is_not_checked():
    """Issue 21.7: lr=1e9 gives a huge but finite loss and zero first-layer gradients, which
    the ratio alone would call vanishing."""
    broken = {**HEALTHY, "shallow": {"initial_loss": 2.3, "final_loss": 3e10,
                                     "comparable": True}}
    row = _judge(VANISHING, _ratio(1e27), health=broken)
    assert row["verdict"] == "not checked"
    assert row["our_value"].startswith("not checked: the run failed (shallow: train loss 3e+10")
    healthy = _judge(VANISHING, _ratio(1e3))
    assert healthy["verdict"] == "reproduced"


def test_a_non_finite_loss_is_not_checked_for_any_claim():
    health = {"deep": {"initial_loss": 2.3, "final_loss": math.nan, "comparable": True}}
    row = _judge(VANISHING, _ratio(1e3), health=health)
    assert row["verdict"] == "not checked" and "deep: final train loss nan" in row["our_value"]


def test_health_read_from_a_run_directory(tmp_path):
    sub = tmp_path / "a"
    sub.mkdir()
    (sub / "metrics.jsonl").write_text(
        '{"kind": "step", "step": 1, "loss": 2.5}\n'
        '{"kind": "epoch", "epoch": 1, "train_loss": 2.0}\n')
    (sub / "result.json").write_text('{"train_loss": 1.5}')
    assert subrun_health(tmp_path) == {"a": {"initial_loss": 2.5, "final_loss": 1.5,
                                             "comparable": True}}


def test_fallback_data_caps_the_verdict_at_not_checked():
    results = CASES["gated-variants#0"]["reproduced"]
    row = _judge(LEARNT_GATES, results, fallbacks=[
        {"wanted": "fashion-mnist", "used": "mnist1d", "reason": "missing"}])
    assert row["verdict"] == "not checked"
    assert "fallback MNIST-1D because Fashion-MNIST is missing" in row["our_value"]
    about_it = dataclasses.replace(LEARNT_GATES, same_data=("mnist1d",))
    row = _judge(about_it, results, fallbacks=[{"wanted": "fashion-mnist", "used": "mnist1d"}])
    assert row["verdict"] == "reproduced" and row["label"] == "reproduced"


def test_a_fallback_is_recognised_in_runs_made_before_it_was_stored():
    results = CASES["gated-variants#0"]["reproduced"]
    row = judge(LEARNT_GATES, {"results": results, "datasets": ["mnist1d"]}, command="",
                quick=False, health={}, config={"data": {"name": "fashion-mnist"}})
    assert row["verdict"] == "not checked"


def test_a_verdict_on_other_data_names_both_datasets():
    row = _judge(LEARNT_GATES, CASES["gated-variants#0"]["reproduced"],
                 datasets=("fashion-mnist",))
    assert row["verdict"] == "reproduced"
    assert row["label"] == "reproduced on Fashion-MNIST (paper: MNIST)"
    assert _judge(LEARNT_GATES, CASES["gated-variants#0"]["reproduced"],
                  datasets=("mnist",))["label"] == "reproduced"


@pytest.mark.parametrize(("quick", "seeds", "note"), [
    (True, 1, "; indicative (1 seed)"), (False, 2, "; indicative (2 seeds)"),
    (False, 3, ""), (True, 3, "; indicative (quick run)")])
def test_quick_and_few_seed_verdicts_are_indicative(quick, seeds, note):
    results = {**CASES["gated-variants#0"]["reproduced"], "seeds": seeds}
    row = _judge(LEARNT_GATES, results, datasets=("mnist",), quick=quick)
    assert row["label"] == "reproduced" + note and row["seeds"] == seeds


def test_report_keeps_the_stored_verdict_and_shows_todays_when_the_rule_changed():
    now = _judge(get_experiment("gated-kernel").claims[0],
                 CASES["gated-kernel#0"]["partly"], datasets=("fashion-mnist",))
    stored = [{"claim": now["claim"], "verdict": "reproduced", "our_value": "old text"}]
    (row,) = merge_claims(stored, [now])
    assert row["verdict"] == "reproduced" and row["our_value"] == "old text"
    assert row["rule_version"] == 1 and row["change"] == "rule changed since the run"
    assert row["label"].startswith("reproduced on Fashion-MNIST")
    assert row["now"].startswith("partly on Fashion-MNIST") and "rule v4" in row["now"]
    assert row["rule_now"].startswith("v4: On the paper's protocol")
    same = [{**now, "our_value": "as stored"}]
    (row,) = merge_claims(same, [now])
    assert "now" not in row and row["our_value"] == "as stored"


def test_full_runs_raise_seeds_to_three_and_quick_runs_keep_theirs():
    variants = get_experiment("gated-variants")
    assert seed_overrides(variants, None) == ["seeds=3"]
    assert seed_overrides(variants, None, quick=True) == []
    assert seed_overrides(variants, 5) == ["seeds=5"]
    assert seed_overrides(get_experiment("gated-kernel"), None) == []  # 5 by default


def test_difference_of_means_and_its_standard_error():
    d = Difference(Side((1.0, 2.0, 3.0)), Side((0.0, 0.0, 0.0)))
    assert d.diff == 2.0 and d.se == pytest.approx(1 / math.sqrt(3))
    assert d.beyond_noise() and not Difference(Side((0.0, 2.0, 4.0)), Side((0.0,) * 3)
                                               ).beyond_noise()
    assert Difference(Side((0.2,)), Side((0.1,))).se == 0.0  # one seed: unknown
    assert "(n=3)" in d.text("a", "b") and "Welch p 0.0" in d.text("a", "b")


def test_welch_t_test_is_stricter_than_two_standard_errors_at_three_seeds():
    """At n = 3 per side a difference of 2.2 SE passed the old rule; Welch's one-sided test at
    0.05 needs t above about 2.1-2.9 for 2-4 degrees of freedom, so it fails here (df = 2)."""
    d = Difference(Side((2.2, 3.2, 4.2)), Side((2.0,) * 3))
    assert d.diff / d.se > 2.0 and d.diff / d.se < 2.9
    assert d.p > 0.05 and not d.beyond_noise()
    assert Side((1.1, 1.2, 1.3)).above(1.0) and not Side((0.9, 1.2, 1.5)).above(1.0)
    assert Difference(Side((0.3,)), Side((0.2,))).beyond_noise()  # one seed: the sign


def test_rank_correlation_and_log_linear_fit():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
    assert rank_correlation([1, 2, 3], [3, 2, 1]) == -1.0
    slope, r2 = log_linear_fit([1, 2, 3, 4], [0.5 ** d for d in (1, 2, 3, 4)])
    assert slope == pytest.approx(math.log(0.5)) and r2 == pytest.approx(1.0)


def test_kernel_rule_needs_more_than_the_two_ends():
    """The first rule compared only the shallowest and deepest off-diagonal, which holds for
    random gates by Cauchy–Schwarz; a plateau after the first step and a condition number that
    does not fall now fail the 'closer to diagonal' half."""
    res = CASES["gated-depth#1"]["not reproduced"]
    off = [r["off_diagonal"] for r in sorted(res["rows"], key=lambda r: r["point"])]
    assert off[-1] < off[0]  # the ends alone would have passed
    assert gated_depth._kernel_mechanism(res)[1] == "not reproduced"


def test_flnpf_share_without_a_gap_has_no_nan():
    res = CASES["gated-variants#1"]["reproduced"]
    res = {**res, "rows": [{**r, "test_acc": 0.89} if r["variant"] == "frnpf-di" else r
                           for r in res["rows"]]}
    text, verdict = gated_variants._gates_hold_the_information(res)
    assert "nan" not in text and "no gap" in text and verdict == "not reproduced"


@pytest.mark.parametrize(("mean", "text"), [
    (0.48, "mlp: 2.08x more wall-clock (speed-up 0.48x)"),
    (1.62, "mlp: 1.62x less wall-clock")])
def test_wall_clock_wording(mean, text):
    assert decorrelation.wall_text("mlp", Side((mean,)), 2.0).startswith(text)


def test_a_delayed_recall_run_from_before_v2_reads_not_checked_not_a_crash():
    """Runs made before rule v2 (delayed recall, one accuracy per model) lack the adding keys."""
    memory, baselines = get_experiment("orthogonal-long-memory").claims[:2]
    old = {"filter_test_acc": 1.0, "rnn_test_acc": None, "lstm_test_acc": 0.5, "T": 10000}
    for claim in (memory, baselines):
        row = judge(claim, {"results": old}, command="c", quick=False, health={})
        assert row["verdict"] == "not checked" and row["our_value"].startswith("missing")


def test_seed_count_falls_back_to_the_per_seed_lists():
    """A run that did not store ``seeds`` is counted by its per-seed evidence, not as 1."""
    from signalprop.experiments.judging import seed_count
    from signalprop.experiments.registry import Claim

    claim = Claim(text="t", source="s", paper_value="p", check=lambda r: ("", "partly"),
                  stochastic=True)
    assert seed_count(claim, {"a_per_seed": [1, 2, 3], "b_per_seed": [1, 2]}) == 3
    assert seed_count(claim, {"seeds": 2, "a_per_seed": [1, 2, 3]}) == 2
    assert seed_count(claim, {"a": 1.0}) == 1


def test_report_recomputes_a_stale_label_of_the_same_verdict():
    """Same verdict and rule, but the stored label says 1 seed where today's count says 3: the
    row shows today's label and names the stored one."""
    from signalprop.report.runs_reader import merge_claims

    stored = [{"claim": "c", "verdict": "partly", "rule_version": 1,
               "label": "partly; indicative (1 seed)", "our_value": "x"}]
    now = [{"claim": "c", "verdict": "partly", "rule_version": 1, "rule": "r",
            "label": "partly", "our_value": "x"}]
    row = merge_claims(stored, now)[0]
    assert row["label"] == "partly"
    assert row["change"] == "label recomputed today (stored: partly; indicative (1 seed))"
    same = merge_claims([{**stored[0], "label": "partly"}], now)[0]
    assert same["label"] == "partly" and "change" not in same
