"""``signalprop run --resume``: divergence advice that works when followed, overrides that are
applied and recorded or refused, and failed runs that leave nothing for --resume to pick."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from cli_runner import run_cli

from signalprop.cli import EXIT_DIVERGED, EXIT_USAGE

SMALL = ("--set", "model.depth=6", "--set", "train.epochs=2", "--set", "data.n_train=512",
         "--no-progress")



def _diverge(capsys, tmp_path):
    return run_cli(capsys, "run", "deep-tanh-mlp", "--quick", "--out", str(tmp_path), *SMALL,
                   "--set", "train.lr=1e37", "--set", "train.optimizer=sgd")


def test_divergence_advice_is_true_and_following_it_succeeds(capsys, tmp_path):
    code, _, err = _diverge(capsys, tmp_path)
    assert code == EXIT_DIVERGED
    (line,) = err.strip().splitlines()
    assert "no checkpoint was written" in line  # it diverged in epoch 1: nothing is kept
    assert "max |value|" in line or "first non-finite" in line  # where it blew up
    (run_dir,) = (tmp_path / "deep-tanh-mlp").iterdir()
    advised = re.search(r"run: signalprop (run .*)$", line).group(1)
    assert f"--resume {run_dir} --set train.lr=0.001" in advised
    code, out, err = run_cli(capsys, *shlex.split(advised), "--no-progress")
    assert code == 0, err
    assert f"resuming {run_dir}" in err and out.strip() == str(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    train = saved["config"]["train"]
    assert train["lr"] == 0.001 and train["optimizer"] == "sgd"
    assert saved["overrides"][-2:] == ["train.lr=1e37", "train.optimizer=sgd"]
    assert saved["resumed"][0]["overrides"] == ["train.lr=0.001"]
    assert json.loads((run_dir / "summary.json").read_text())["results"]


def test_resume_refuses_overrides_it_cannot_apply(capsys, tmp_path):
    code, _, _ = _diverge(capsys, tmp_path)
    (run_dir,) = (tmp_path / "deep-tanh-mlp").iterdir()
    before = (run_dir / "config.json").read_text()
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--resume", str(run_dir),
                           "--set", "model.depth=3")
    assert code == EXIT_USAGE
    assert err.strip().splitlines()[-1] == (
        "signalprop: error: --set model.depth cannot change a run being resumed (only "
        "train.lr, train.epochs, train.grad_clip can); start a new run without --resume")
    assert (run_dir / "config.json").read_text() == before


def test_finished_run_refuses_an_lr_that_would_change_nothing(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--quick", "--out", str(tmp_path),
                           *SMALL)
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--resume", "--out", str(tmp_path),
                           "--set", "train.lr=1e-4")
    assert code == EXIT_USAGE and "has finished" in err and "train.epochs" in err


def test_run_failing_before_its_first_step_leaves_nothing_to_resume(capsys, tmp_path,
                                                                     monkeypatch):
    from signalprop.data import paths

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALPROP_DATA", str(tmp_path / "nodata"))
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIR", tmp_path / "nodata")
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--quick", "--out", str(tmp_path),
                           "--set", "data.name=mnist")
    assert code == EXIT_USAGE and "MNIST not found" in err
    assert not list((tmp_path / "deep-tanh-mlp").iterdir())
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--resume", "--out", str(tmp_path))
    assert code == EXIT_USAGE and "nothing to resume" in err


@pytest.mark.parametrize("epochs_done, phrase", [(0, "no checkpoint was written"),
                                                 (1, "the last good checkpoint (epoch 1) is")])
def test_divergence_message_states_what_is_kept(tmp_path, blobs, epochs_done, phrase):
    import torch
    from torch import nn

    from signalprop.errors import DivergenceError
    from signalprop.learning.base import LearningRule
    from signalprop.train import TrainConfig, fit

    class Poison(LearningRule):
        calls = 0

        def after_step(self, model):
            self.calls += 1
            if self.calls == 8 * epochs_done + 2:
                with torch.no_grad():
                    model[2].weight[0, 0] = float("inf")
            return {}

    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    with pytest.raises(DivergenceError) as caught:
        fit(model, *blobs, TrainConfig(epochs=3, batch_size=32), tmp_path, rules=(Poison(),))
    message = str(caught.value)
    assert phrase in message and "first non-finite parameter: 2.weight" in message
    assert (caught.value.checkpoint is None) == (epochs_done == 0)
    if epochs_done:
        assert str(tmp_path / "checkpoint.pt") in message
        assert caught.value.checkpoint.exists()
