"""benchmarks/long_memory_speed.py runs at a tiny size and writes every model's time per step:
the fused C++, ATen C++ and Python time loops of the filter RNN and of LEM side by side (the
numbers are in docs/methods/orthogonal.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "long_memory_speed.py"


def test_long_memory_benchmark_times_both_loops(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("long_memory_speed", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["long_memory_speed.py", "--steps", "40", "--hidden", "4",
                                      "--repeats", "1", "--out", str(out)])
    threads = torch.get_num_threads()
    try:
        module.main()
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    per_step = report["hidden"]["4"]["us_per_time_step"]
    assert {"filter_bptt", "filter_bptt_fused", "filter_bptt_aten", "filter_bptt_python",
            "lem", "lem_fused", "lem_aten", "lem_python", "lem_autograd_loop", "lstm", "gemm_floor",
            "gemm_floor_wide_first"} <= set(per_step)
    assert all(v > 0 for v in per_step.values())
