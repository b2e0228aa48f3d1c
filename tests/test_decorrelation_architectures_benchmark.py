"""benchmarks/decorrelation_architectures.py: its rows, its memory probe and its CLI checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(
        "decorrelation_architectures", BENCHMARKS / "decorrelation_architectures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_time_plain_dense_and_blocks_side_by_side(monkeypatch):
    bench = _load()
    monkeypatch.setattr(bench, "peak_memory_mib", lambda arch, variant, quick: 1.0)
    rows = bench.compare("vit", (16,), rounds=1, repeats=1, quick=True)
    assert [r["R"] for r in rows] == ["plain", "dense", "16"]
    assert rows[0]["ratio"] == 1.0 and all(r["ratio"] > 0 for r in rows)
    assert all(r["batch"] == 32 and r["peak_mib"] == 1.0 for r in rows)


def test_bad_arguments_exit(monkeypatch):
    bench = _load()
    monkeypatch.setattr("sys.argv", ["decorrelation_architectures.py", "--archs", "resnet50"])
    with pytest.raises(SystemExit):
        bench.main()
    monkeypatch.setattr("sys.argv", ["decorrelation_architectures.py", "--rounds", "0"])
    with pytest.raises(SystemExit):
        bench.main()


@pytest.mark.slow
def test_memory_probe_sees_the_dense_r_buffers():
    bench = _load()
    plain = bench.peak_memory_mib("resnet18", "plain", True)
    dense = bench.peak_memory_mib("resnet18", "dense", True)
    assert 0 < plain < dense
