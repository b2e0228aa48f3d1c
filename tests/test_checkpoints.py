"""Checkpoints: ordinary torch files with a sha256 beside them, loaded weights-only, restored
into the caller's model by ``fit`` on a finished run and by ``signalprop.load_run``."""

from __future__ import annotations

import hashlib
import io
import pathlib

import pytest
import torch
from torch import nn

import signalprop
from signalprop import storage
from signalprop.errors import CheckpointCorrupt, ConfigError, SignalpropError, UnsafeCheckpoint
from signalprop.learning.base import LearningRule
from signalprop.storage import checksum_path, load_checkpoint, previous_checkpoint, save_checkpoint
from signalprop.train import TrainConfig, fit, seed_everything

CFG = TrainConfig(epochs=2, batch_size=32, lr=1e-2, log_every=2)


def make_model(seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


class Counter(LearningRule):
    """A rule with state: the number of optimiser steps it saw."""

    def __init__(self) -> None:
        self.steps = 0

    def after_step(self, model):
        self.steps += 1
        return {}

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class Payload:
    """Unpickling this would create ``marker``: the code a hostile checkpoint would run."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _assert_model_equals_checkpoint(model: nn.Module, path: pathlib.Path) -> None:
    saved = torch.load(path)["model"]  # an ordinary torch file, weights-only by default
    own = model.state_dict()
    assert list(own) == list(saved)
    for key, value in own.items():
        assert torch.equal(value, saved[key]), key


def test_checkpoint_is_an_ordinary_torch_file_with_its_sha256_beside_it(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"a": torch.arange(3)})
    assert torch.equal(torch.load(path)["a"], torch.arange(3))
    digest, name = checksum_path(path).read_text().split()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() and name == path.name
    save_checkpoint(path, {"a": torch.arange(4)})
    prev = previous_checkpoint(path)
    assert checksum_path(prev).read_text().split() == [digest, prev.name]


def test_finished_run_loads_its_final_weights_into_the_given_model(tmp_path, blobs):
    train, test = blobs
    first = fit(make_model(0), train, test, CFG, tmp_path, seed=0, rules=(Counter(),))
    fresh, rule = make_model(1), Counter()  # another init: the weights must come from the run
    again = fit(fresh, train, test, CFG, tmp_path, seed=0, rules=(rule,))
    assert again == first
    _assert_model_equals_checkpoint(fresh, tmp_path / "checkpoint.pt")
    assert rule.steps == 16  # 2 epochs of 8 steps
    from signalprop.train import evaluate

    assert evaluate(fresh, test, nn.functional.cross_entropy, torch.device("cpu"), 1000,
                    "classification")["acc"] == pytest.approx(first["test_acc"])


def test_load_run_restores_a_trained_model(tmp_path, blobs):
    train, test = blobs
    fit(make_model(0), train, test, CFG, tmp_path / "run", seed=0)
    model = make_model(2)
    info = signalprop.load_run(tmp_path / "run", model)
    _assert_model_equals_checkpoint(model, tmp_path / "run" / "checkpoint.pt")
    assert info["epoch"] == 2 and info["finished"] and info["result"]["epoch"] == 2


def test_load_run_errors_name_the_problem(tmp_path, blobs):
    train, test = blobs
    fit(make_model(0), train, test, CFG, tmp_path / "exp" / "deep", seed=0)
    with pytest.raises(SignalpropError, match="sub-directories deep: pass one of them"):
        signalprop.load_run(tmp_path / "exp", make_model())
    with pytest.raises(ConfigError, match=r"does not fit this Sequential \(shape differs"):
        signalprop.load_run(tmp_path / "exp" / "deep", nn.Sequential(
            nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 3)))
    with pytest.raises(ConfigError, match="1 given"):
        signalprop.load_run(tmp_path / "exp" / "deep", make_model(), rules=(Counter(),))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointCorrupt, match="no checkpoint.pt"):
        signalprop.load_run(tmp_path / "empty", make_model())


def test_old_format_checkpoint_is_still_read(tmp_path):
    import numpy as np

    buffer = io.BytesIO()
    torch.save({"a": torch.arange(3), "numpy": np.random.get_state()}, buffer)
    payload = buffer.getvalue()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    state = load_checkpoint(path)
    assert torch.equal(state["a"], torch.arange(3)) and state["numpy"][0] == "MT19937"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CheckpointCorrupt, match="fails its checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize("layout", ["sidecar", "old-format"])
def test_checkpoint_carrying_code_is_refused_and_the_code_does_not_run(tmp_path, layout):
    marker = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.ones(1)}, "extra": Payload(marker)}, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()  # a hostile file can carry a valid checksum
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / "checkpoint.pt"
    if layout == "sidecar":
        path.write_bytes(payload)
        checksum_path(path).write_text(f"{digest}  checkpoint.pt\n")
    else:
        path.write_bytes(digest.encode() + b"\n" + payload)
    with pytest.raises(UnsafeCheckpoint, match=r"checkpoint .*checkpoint.pt was refused"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpoint):
        signalprop.load_run(run_dir, nn.Linear(1, 1))
    assert not marker.exists()


@pytest.mark.parametrize("crash_at", range(7))  # 4 writes and renames, 3 inner renames
def test_a_crash_while_saving_leaves_a_verifiable_checkpoint(tmp_path, monkeypatch, crash_at):
    """Stop the save before each of its file operations: the new or the previous state loads."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"a": torch.tensor(1)})
    save_checkpoint(path, {"a": torch.tensor(2)})
    calls = {"n": 0}
    real_write, real_replace = storage.atomic_write_bytes, storage.os.replace

    def count(real):
        def wrapper(*args, **kwargs):
            if calls["n"] == crash_at:
                raise KeyboardInterrupt
            calls["n"] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(storage, "atomic_write_bytes", count(real_write))
    monkeypatch.setattr(storage.os, "replace", count(real_replace))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"a": torch.tensor(3)})
    monkeypatch.undo()
    loaded = []
    for candidate in (path, previous_checkpoint(path)):
        try:
            loaded.append(int(load_checkpoint(candidate)["a"]))
        except (CheckpointCorrupt, FileNotFoundError):
            continue
    assert loaded and loaded[0] in (2, 3), loaded


def test_resume_with_another_lr_rescales_the_optimiser_and_more_epochs_continue(tmp_path, blobs):
    train, test = blobs
    fit(make_model(0), train, test, CFG, tmp_path, seed=0)
    longer = TrainConfig(epochs=3, batch_size=32, lr=1e-3, log_every=2)
    model = make_model(1)
    result = fit(model, train, test, longer, tmp_path, seed=0)
    assert result["epoch"] == 3 and result["lr"] == pytest.approx(1e-3)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 3 and state["lr"] == 1e-3
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    _assert_model_equals_checkpoint(model, tmp_path / "checkpoint.pt")
