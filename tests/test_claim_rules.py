"""Every registered claim's rule can return every verdict, and states itself."""

from __future__ import annotations

import re

import pytest
from claim_cases import CASES

from signalprop.experiments.registry import all_experiments

CLAIMS = [(f"{e.name}#{i}", c) for e in all_experiments() for i, c in enumerate(e.claims)]
EXPERIMENTS = {e.name: e for e in all_experiments()}


def case(key: str, verdict: str) -> dict:
    """The results of ``key``'s case for ``verdict``; cases written in a run's stored keys
    are read into rows by the experiment's legacy reader, as a committed run's are."""
    return EXPERIMENTS[key.split("#")[0]].with_rows(CASES[key][verdict])


@pytest.mark.parametrize(("key", "claim"), CLAIMS, ids=[k for k, _ in CLAIMS])
@pytest.mark.parametrize("verdict", ["reproduced", "partly", "not reproduced"])
def test_rule_returns_every_verdict(key, claim, verdict):
    assert key in CASES, f"{key} has no holds/half-holds/fails cases in tests/claim_cases.py"
    ours, got = claim.check(case(key, verdict))
    assert got == verdict, f"{key}: expected {verdict!r}, got {got!r} ({ours})"
    assert not re.search(r"\bnan\b", ours.lower()), ours


@pytest.mark.parametrize(("key", "claim"), CLAIMS, ids=[k for k, _ in CLAIMS])
def test_claim_states_its_rule_and_data(key, claim):
    assert len(claim.rule) > 30 and "\n" not in claim.rule
    assert claim.rule_version >= 1
    assert claim.paper_data


def test_no_cases_for_unregistered_claims():
    assert set(CASES) <= {k for k, _ in CLAIMS}
