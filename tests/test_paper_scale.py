"""Scale in every row (issue 27.5): the paper's budget beside ours, and a "not reproduced" from
a run below that budget read as "not checked at scale" unless a positive control shows the
budget suffices."""

from __future__ import annotations

import pytest

from signalprop import config as config_lib
from signalprop.experiments.judging import judge
from signalprop.experiments.paper_budgets import SCALES, scales_of
from signalprop.experiments.paper_scale import (
    Quantity,
    Scale,
    config_value,
    default_data,
    judge_at_scale,
    scale_row,
)
from signalprop.experiments.registry import Claim, all_experiments

EPOCHS = Scale((Quantity("epochs", "train.epochs", 50.0, "paper Sec. 4"),
                Quantity("width", "model.width", None)))
CONFIG = {"train": {"epochs": 5}, "model": {"width": 100}, "lengths": [100, 1000]}


def test_config_value_reads_dotted_keys_and_the_largest_list_entry():
    assert config_value(CONFIG, "train.epochs") == 5.0
    assert config_value(CONFIG, "lengths") == 1000.0
    assert config_value(CONFIG, "train.missing") is None
    assert config_value(None, "train.epochs") is None


def test_scale_row_sets_ours_beside_the_papers_and_names_what_is_below():
    text, below = scale_row(EPOCHS, CONFIG)
    assert text == "epochs: ours 5 of the paper's 50; width: ours 100 (paper: not stated)"
    assert below == ["epochs 5 of 50"]
    assert scale_row(EPOCHS, {"train": {"epochs": 50}})[1] == []


@pytest.mark.parametrize(("verdict", "scale", "config", "expected"), [
    ("not reproduced", EPOCHS, CONFIG, "not checked"),
    ("not reproduced", EPOCHS, {"train": {"epochs": 60}}, "not reproduced"),
    ("not reproduced", Scale(EPOCHS.quantities, control="LEM"), CONFIG, "not reproduced"),
    ("partly", EPOCHS, CONFIG, "partly"),
    ("reproduced", EPOCHS, CONFIG, "reproduced"),
    ("not reproduced", None, CONFIG, "not reproduced"),
])
def test_only_a_not_reproduced_below_budget_without_a_control_becomes_not_checked(
        verdict, scale, config, expected):
    new, ours, _ = judge_at_scale(verdict, "0.5", scale, config)
    assert new == expected
    if expected != verdict:
        assert ours == "not checked at scale (ours epochs 5 of 50); 0.5"


def test_judge_applies_the_scale_rule_and_stores_the_budget():
    claim = Claim("c", "s", "p", lambda results: ("0.1", "not reproduced"))
    row = judge(claim, {"results": {}, "datasets": ["mnist"]}, command="x", quick=False,
                health={}, config=CONFIG, scale=EPOCHS)
    assert row["verdict"] == "not checked"
    assert row["our_value"].startswith("not checked at scale (ours epochs 5 of 50)")
    assert row["scale"].startswith("epochs: ours 5 of the paper's 50")


def test_default_data_names_the_configured_datasets():
    assert default_data({"data": {"name": "mnist", "also": ["fashion-mnist"]}}) == \
        "mnist, fashion-mnist"
    assert default_data({"data": {"names": ["mnist"]}}) == "mnist"
    assert default_data({}, ("adding",)) == "adding"
    assert default_data({}) == "synthetic (built in)"


def test_every_claim_has_a_scale_whose_keys_name_config_fields():
    names = {exp.name for exp in all_experiments()}
    assert set(SCALES) <= names, f"SCALES names unknown experiments: {set(SCALES) - names}"
    for exp in all_experiments():
        scales = scales_of(exp.name, len(exp.claims))
        assert len(scales) == len(exp.claims)
        if not exp.claims:
            continue
        assert exp.name in SCALES, f"{exp.name}: no entry in paper_budgets.SCALES"
        defaults = config_lib.to_dict(exp.make_config())
        for scale in scales:
            for q in scale.quantities:
                assert config_value(defaults, q.key) is not None, f"{exp.name}: {q.key}"
                assert q.paper is None or q.source, f"{exp.name}: {q.name} has no source"


def test_scales_of_rejects_a_table_that_does_not_match_the_claims():
    with pytest.raises(ValueError, match="claims"):
        scales_of(next(iter(SCALES)), 99)
