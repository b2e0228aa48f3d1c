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
