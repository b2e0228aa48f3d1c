"""Issue 30.1: the thread count suits a busy CPU, can be chosen, and every run records it."""

from __future__ import annotations

import json

import pytest
import torch

from signalprop import threads
from signalprop.cli import main
from signalprop.errors import ConfigError


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.3, 2), (2, 1.2, 1), (2, 9.0, 1), (16, 3.7, 13), (4, float("nan"), 4),
])
def test_default_counts_only_the_free_cores(cores, load, expected):
    assert threads.default_threads(cores, load, processes=1) == expected


def test_torchrun_ranks_share_the_free_cores(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.default_threads(16, 3.7) == 6 and threads.default_threads(2, 0.0) == 1


def test_set_threads_checks_and_records(monkeypatch):
    monkeypatch.setattr(threads, "_CHOICE", {})
    try:
        with pytest.raises(ConfigError, match="--threads must be an integer >= 1"):
            threads.set_threads(0)
        monkeypatch.setattr(threads, "load_average", lambda: 5.0)
        assert threads.set_threads() == 1 == torch.get_num_threads()
        assert threads.record() == {"threads": 1,
                                    "threads_how": f"default: {threads.available_cores()} "
                                                   "cores, load average 5.00"}
    finally:
        threads.set_threads(1)


def test_fit_applies_the_default_only_when_nothing_chose(monkeypatch, blobs, tmp_path):
    from signalprop.train import TrainConfig, fit

    monkeypatch.setattr(threads, "_CHOICE", {})
    monkeypatch.setattr(threads, "load_average", lambda: 99.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_AT_IMPORT", 3)
    torch.set_num_threads(3)  # as torch starts: one thread per core
    try:
        fit(torch.nn.Linear(8, 3), *blobs, TrainConfig(epochs=1), tmp_path / "a")
        assert torch.get_num_threads() == 1  # the machine is busy: one thread
        (record,) = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").open()
                     if '"epoch"' in line and '"kind": "epoch"' in line]
        assert record["threads"] == 1
        monkeypatch.setattr(threads, "_CHOICE", {})
        torch.set_num_threads(2)  # the user's own choice is kept
        fit(torch.nn.Linear(8, 3), *blobs, TrainConfig(epochs=1), tmp_path / "b")
        assert torch.get_num_threads() == 2
        assert threads.record()["threads_how"] == "torch.set_num_threads"
    finally:
        threads.set_threads(1)


def test_cli_threads_option_is_recorded_in_the_run(capsys, tmp_path):
    try:
        code = main(["run", "deep-tanh-mlp", "--quick", "--threads", "2", "--out", str(tmp_path),
                     "--set", "model.depth=4", "--set", "train.epochs=1", "--no-progress"])
        assert code == 0, capsys.readouterr().err
        (run,) = (tmp_path / "deep-tanh-mlp").iterdir()
        meta = json.loads((run / "config.json").read_text())["meta"]
        assert meta["threads"] == 2 and meta["threads_how"] == "chosen"
    finally:
        threads.set_threads(1)
