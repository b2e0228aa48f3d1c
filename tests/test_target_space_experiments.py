"""The target-space experiments are registered, validate their configs and run (quick, slow)."""

from __future__ import annotations

import json

import pytest

from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config, run_experiment
from signalprop.experiments.registry import get_experiment

NAMES = ("target-space-spirals", "target-space-images", "target-space-recall")


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_a_claim_and_a_valid_quick_config(name: str) -> None:
    experiment = get_experiment(name)
    assert experiment.claims
    resolve_config(experiment, quick=True, overrides=[])


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve_config(get_experiment("target-space-spirals"), False, ["model.mode=fast"])


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
