"""Issue 30.1: a long training run prints a line at least every interval when no bar shows."""

from __future__ import annotations

import re

from signalprop import heartbeat
from signalprop.train import TrainConfig, fit


def test_fit_logs_a_line_per_interval_without_a_bar(monkeypatch, blobs, tmp_path, capsys):
    import torch

    monkeypatch.setenv("SIGNALPROP_LOG_INTERVAL", "0")  # every step is "a minute later"
    fit(torch.nn.Linear(8, 3), *blobs, TrainConfig(epochs=2, batch_size=80), tmp_path / "r",
        progress=False, desc="exp/model")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 6  # 3 steps in each of 2 epochs
    assert re.fullmatch(r"signalprop: exp/model: epoch 1/2, step 1/3, loss [\d.]+, \d+s in",
                        lines[0]), lines[0]
    assert lines[-1].startswith("signalprop: exp/model: epoch 2/2, step 3/3, loss ")


def test_quiet_within_the_interval_and_with_a_bar(monkeypatch):
    import time

    monkeypatch.setattr(heartbeat, "_LAST", [time.monotonic() - 4000])
    beat = heartbeat.Heartbeat("x", enabled=True)
    beat.every = 3600.0
    assert beat.tick(1, 1, 1, 1, 0.5) is True  # more than an hour of silence
    assert beat.tick(1, 1, 2, 2, 0.5) is False
    assert heartbeat.Heartbeat("x", enabled=False).tick(1, 1, 1, 1, 0.5) is False
