from pathlib import Path

import pytest
import torch

from signalprop import data
from signalprop.experiments.context import RunContext
from signalprop.experiments.registry import get_experiment


def test_missing_dataset_falls_back_keeping_sizes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIGNALPROP_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    if data.is_available("mnist")[0]:
        pytest.skip("MNIST is installed system-wide here")
    ctx = RunContext(get_experiment("deep-tanh-mlp"), None, Path(tmp_path), torch.device("cpu"))
    splits = ctx.load_data("mnist", fallback="mnist1d", n_train=300, n_test=100, flatten=True)
    assert splits.name == "mnist1d" and len(splits.train) == 300 and len(splits.test) == 100
    assert ctx.datasets_used == ["mnist1d"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "using mnist1d instead" in err[0]
