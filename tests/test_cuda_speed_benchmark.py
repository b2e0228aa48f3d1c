"""benchmarks/cuda_speed.py: a tiny CPU run writes every ratio; no CUDA exits in one line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "cuda_speed.py"
TINY = ["--batch", "4", "--hidden", "8", "--steps", "10", "--depth", "6", "--width", "16",
        "--min-run-time", "0.01"]


def _load():
    spec = importlib.util.spec_from_file_location("cuda_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cuda_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cpu_run_times_every_function_next_to_its_reference(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "cuda_speed.json"
    assert bench.main(["--device", "cpu", *TINY, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["benchmark"] == "cuda_speed" and result["machine"]["device"] == "cpu"
    assert set(result["ratios"]) == set(bench.PAIRS)
    assert all(value > 0 for value in result["ratios"].values())
    for label, (custom, reference) in bench.PAIRS.items():
        seconds = result["seconds_per_step"]
        assert result["ratios"][label] == pytest.approx(seconds[custom] / seconds[reference])
    printed = capsys.readouterr().out
    assert all(label in printed for label in bench.PAIRS)


def test_cpu_run_writes_nothing_without_out(tmp_path, monkeypatch):
    bench = _load()
    monkeypatch.setattr(bench, "DEFAULT_OUT", tmp_path / "default.json")
    assert bench.main(["--device", "cpu", *TINY]) == 0
    assert not (tmp_path / "default.json").exists()


def test_without_cuda_it_exits_with_one_line(monkeypatch):
    bench = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        bench.main([])
    message = str(exit_info.value)
    assert "CUDA is not available" in message and "--device cpu" in message
    assert "\n" not in message


def test_bad_sizes_exit():
    with pytest.raises(SystemExit):
        _load().main(["--device", "cpu", "--batch", "0"])
