"""Every committed run in docs/results, re-judged from its stored files by today's code, gives
the verdicts recorded in tests/data/committed_verdicts.json. A rule change that moves a verdict
updates that file and is listed in docs/rules.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signalprop.report.runs_reader import _current_claims, find_run_dirs, read_run

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "results" / "runs"
EXPECTED = json.loads((Path(__file__).parent / "data" / "committed_verdicts.json").read_text())


@pytest.mark.parametrize("run", sorted(EXPECTED))
def test_committed_run_rejudged_gives_the_recorded_verdicts(run):
    run_dir = RUNS / run
    if not run_dir.is_dir():
        pytest.skip(f"{run} is not in this checkout")
    summary = json.loads((run_dir / "summary.json").read_text())
    claims = _current_claims(read_run(run_dir), summary) or []  # a study without claims
    assert [(c["claim"], c["verdict"]) for c in claims] == [
        (c["claim"], c["verdict"]) for c in EXPECTED[run]]


def test_every_committed_run_is_listed():
    found = {d.relative_to(RUNS).as_posix() for d in find_run_dirs(RUNS)}
    assert found == set(EXPECTED)
