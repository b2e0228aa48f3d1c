"""`signalprop diagnose EXPERIMENT`: the adapters run, and the docs list exactly them."""

import pytest

from signalprop.cli import main
from signalprop.diagnose.adapters import ADAPTERS


@pytest.mark.parametrize("experiment", ["sensitivity-deep-mlp", "sensitivity-lag"])
def test_diagnose_runs_on_experiment_models(experiment, capsys):
    assert experiment in ADAPTERS
    assert main(["diagnose", experiment, "--quick", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "signalprop diagnosis: vanishing" in out  # both start from small weights


def test_experiment_without_adapter_says_which_exist(capsys):
    assert main(["diagnose", "target-space-spirals"]) == 2
    err = capsys.readouterr().err
    assert "has no diagnose adapter" in err and "sensitivity-lag" in err


def test_docs_list_exactly_the_experiments_diagnose_supports():
    """Issue 21.11: docs/diagnose.md's table is the code's ADAPTERS, name and model."""
    import re
    from pathlib import Path

    from signalprop.experiments.registry import all_experiments

    docs = (Path(__file__).resolve().parent.parent / "docs" / "diagnose.md").read_text()
    table = docs[docs.index("| experiment | model diagnosed |"):]
    table = table[:table.index("\n\n")]
    listed = dict(re.findall(r"^\s*\| `([a-z0-9-]+)` \| (.+?) \|$", table, re.M))
    assert listed == {name: a.model for name, a in ADAPTERS.items()}
    assert set(ADAPTERS) <= {e.name for e in all_experiments()}
