"""torchrun-style DDP runs: 2 gloo ranks on 127.0.0.1, started with the environment torchrun sets.

A 2-rank ``fit`` follows the single-process trajectory (also when it resumes a checkpoint),
only rank 0 writes the run directory, ``signalprop run`` makes one run directory, and a NaN on
one rank stops both ranks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from signalprop.train import TrainConfig, fit

WORLD = 2
# batch 15 over 2 ranks gives uneven shards (8 + 7), and the last batch of 64 samples has 4
CFG = TrainConfig(epochs=2, batch_size=15, lr=0.05, optimizer="sgd", momentum=0.9,
                  log_every=1, eval_batch_size=7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable[[int, Path], None], port: int, out: str, join: bool) -> None:
    """One rank: torchrun's environment, then ``fn`` (inside the process group if ``join``)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD)})
    torch.set_num_threads(1)
    if not join:
        fn(rank, Path(out))
        return
    from signalprop.distributed import process_group

    with process_group(torch.device("cpu")):
        fn(rank, Path(out))


def _launch(fn: Callable[[int, Path], None], out: Path, join: bool = True,
            timeout: float = 60.0) -> None:
    """Run ``fn`` on 2 ranks; fail (killing them) if they have not finished after ``timeout``."""
    # forkserver: one fresh server imports torch once and forks both ranks (see
    # test_ddp_decorrelation.py)
    mp.set_forkserver_preload(["torch", "signalprop.train"])
    context = mp.start_processes(_entry, args=(fn, _free_port(), str(out), join), nprocs=WORLD,
                                 join=False, start_method="forkserver")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"ranks still running after {timeout} s (hung in a collective?)")


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).long()
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))


def _fit_worker(rank: int, out: Path) -> None:
    from signalprop.errors import ConfigError
    from signalprop.learning.sensitivity import SensitivityAdjustment

    train, test = _data()
    model = _model()
    result = fit(model, train, test, CFG, out / "ddp", seed=3, progress=False)
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(result, sort_keys=True))
    again = fit(_model(), train, test, CFG, out / "ddp", seed=3, progress=False)  # finished
    assert again == result
    resumed = _model()  # both ranks continue the 1-epoch single-process run in "resume"
    fit(resumed, train, test, CFG, out / "resume", seed=3, progress=False)
    torch.save(resumed.state_dict(), out / f"resumed{rank}.pt")
    errors = []
    for cfg, rules in ((TrainConfig(epochs=1, batch_size=21), ()),  # last batch: 1 sample
                       (CFG, (SensitivityAdjustment(),))):
        try:
            fit(_model(), train, None, cfg, out / f"bad{len(errors)}", rules=rules,
                progress=False)
        except ConfigError as exc:
            errors.append(str(exc))
    (out / f"errors{rank}.json").write_text(json.dumps(errors))


def test_two_ranks_follow_the_single_process_run(tmp_path):
    train, test = _data()
    single = _model()
    expected = fit(single, train, test, CFG, tmp_path / "single", seed=3, progress=False)
    half = dataclasses.replace(CFG, epochs=1)
    fit(_model(), train, test, half, tmp_path / "resume", seed=3, progress=False)
    (tmp_path / "resume" / "result.json").unlink()  # as if stopped after epoch 1
    _launch(_fit_worker, tmp_path)

    for name in ("rank", "resumed"):
        states = [torch.load(tmp_path / f"{name}{r}.pt") for r in range(WORLD)]
        for key, value in single.state_dict().items():
            torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
            torch.testing.assert_close(states[0][key], value, rtol=0, atol=1e-5)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert results[0] == results[1]
    assert results[0]["test_acc"] == expected["test_acc"]  # rank 0 evaluates the whole test set
    assert results[0]["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-6)

    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "single").iterdir())
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(
        (tmp_path / "single" / "metrics.jsonl").read_text().splitlines())
    steps = [json.loads(line)["step"] for line in lines if '"kind": "step"' in line]
    assert steps == list(range(1, 2 * 5 + 1))

    for rank in range(WORLD):
        errors = json.loads((tmp_path / f"errors{rank}.json").read_text())
        assert len(errors) == 2
        assert "cannot be split over 2 ranks" in errors[0]
        assert "SensitivityAdjustment" in errors[1]


def _cli_worker(rank: int, out: Path) -> None:
    from signalprop.cli import main

    code = main(["run", "deep-tanh-mlp", "--quick", "--out", str(out), "--device", "cpu",
                 "--no-progress", "--set", "train.epochs=1", "--set", "data.n_train=256"])
    assert code == 0


def test_signalprop_run_on_two_ranks_makes_one_run_directory(tmp_path):
    _launch(_cli_worker, tmp_path, join=False)  # the CLI joins (and leaves) the group itself
    run_dirs = list((tmp_path / "deep-tanh-mlp").iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["meta"]["world_size"] == WORLD
    assert json.loads((run_dir / "summary.json").read_text())["claims"]
    for sub in ("deep", "shallow"):
        lines = (run_dir / sub / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == len(set(lines)) and lines
        assert (run_dir / sub / "result.json").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def _nan_worker(rank: int, out: Path) -> None:
    import torch.nn.functional as F

    from signalprop.errors import DivergenceError
    from signalprop.learning.feedback_alignment import FeedbackAlignment

    calls = [0]

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls[0] += 1  # rank 1 calls it once per step; NaN from step 7 (epoch 2) on
        loss = F.cross_entropy(output, target)
        return loss * float("nan") if rank == 1 and calls[0] >= 7 else loss

    train, test = _data()
    for name, rules in (("bp", ()), ("fa", (FeedbackAlignment(),))):
        calls[0] = 0
        try:
            fit(_model(), train, test, TrainConfig(epochs=3, batch_size=16), out / name,
                rules=rules, loss_fn=loss_fn, progress=False)
        except DivergenceError as exc:
            (out / f"{name}-rank{rank}.txt").write_text(str(exc))


def test_nan_on_one_rank_stops_both(tmp_path):
    _launch(_nan_worker, tmp_path, timeout=60.0)
    for name in ("bp", "fa"):
        for rank in range(WORLD):
            message = (tmp_path / f"{name}-rank{rank}.txt").read_text()
            assert "loss became nan at epoch 2, step 7" in message
        records = [json.loads(line) for line in
                   (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]
        assert (tmp_path / name / "checkpoint.pt").exists()
        assert not (tmp_path / name / "result.json").exists()
