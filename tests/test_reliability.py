"""Faults lose nothing: SIGKILL at random points, corrupt files, concurrent runs, fuzzed input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalprop.config import apply_overrides
from signalprop.errors import ConfigError
from signalprop.experiments.deep_tanh_mlp import TanhMLPConfig as BaselineConfig
from signalprop.storage import load_checkpoint, read_jsonl

WORKER = Path(__file__).parent / "helpers" / "train_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run_worker(run_dir: Path, delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(run_dir), str(delay)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _comparable(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"}
            for r in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    run_dir = tmp_path_factory.mktemp("reference")
    assert _run_worker(run_dir).wait(timeout=120) == 0
    return _comparable(run_dir)


def _metrics_size(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.stat().st_size if path.exists() else 0


def test_sigkill_at_random_points_then_resume_matches(tmp_path, reference):
    rng = random.Random(1234)
    kills = 0
    for _ in range(8):
        before = _metrics_size(tmp_path)
        proc = _run_worker(tmp_path, delay=0.01)
        deadline = time.monotonic() + 60
        while _metrics_size(tmp_path) <= before and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))  # somewhere inside an epoch or a checkpoint write
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if (tmp_path / "checkpoint.pt").exists():
            load_checkpoint(tmp_path / "checkpoint.pt")  # never half-written
        if (tmp_path / "result.json").exists():
            break
    assert kills >= 5
    if not (tmp_path / "result.json").exists():
        assert _run_worker(tmp_path).wait(timeout=120) == 0
    assert _comparable(tmp_path) == reference


@pytest.mark.parametrize("target", ["checkpoint.pt", "metrics.jsonl"])
def test_corrupt_state_falls_back_and_still_matches(tmp_path, reference, target):
    assert _run_worker(tmp_path).wait(timeout=120) == 0
    (tmp_path / "result.json").unlink()  # pretend the run stopped after its last checkpoint
    path = tmp_path / target
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x55
    path.write_bytes(bytes(data))
    proc = _run_worker(tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert target in err.decode()  # the damaged file is reported by name
    assert _comparable(tmp_path) == reference


def test_concurrent_runs_get_their_own_directories(tmp_path):
    argv = [sys.executable, "-m", "signalprop.cli", "run", "deep-tanh-mlp", "--quick", "--out",
            str(tmp_path), "--no-progress", "--set", "train.epochs=1", "--set", "model.depth=3",
            "--set", "data.n_train=200"]
    procs = [subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    run_dirs = {o[0].decode().strip() for o in outs}
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert json.loads((Path(run_dir) / "summary.json").read_text())["results"]


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["model.depth", "model.gain", "model.width", "train.lr",
                            "train.epochs", "train.optimizer", "train.grad_norms", "data.name",
                            "nope", "model", "train.lr.x", ""]),
       value=st.one_of(st.text(max_size=12), st.integers(-5, 5).map(str),
                       st.sampled_from(["nan", "inf", "-inf", "0", "-1e-3", "1e400", "true"])))
def test_override_parser_never_crashes(key, value):
    try:
        cfg = apply_overrides(BaselineConfig(), [f"{key}={value}"])
    except ConfigError as exc:
        assert str(exc)
        return
    assert cfg.model.depth > 0 and cfg.model.gain > 0 and cfg.train.lr > 0


@pytest.mark.parametrize("override", ["model.depth=0", "train.lr=-0.1", "model.gain=nan",
                                      "model.width=abc", "train.epochs=1.5"])
def test_cli_rejects_out_of_range_values(override, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "signalprop.cli", "run", "deep-tanh-mlp",
                           "--out", str(tmp_path), "--set", override], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written for a rejected run
