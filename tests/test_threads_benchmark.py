"""benchmarks/threads_busy_cpu.py runs and reports its ratio (tiny sizes; the numbers are in
docs/threads.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from signalprop.threads import set_threads

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "threads_busy_cpu.py"


def test_threads_benchmark_reports_a_ratio():
    spec = importlib.util.spec_from_file_location("threads_busy_cpu", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        result = module.measure(repeats=1, competitors=1, experiment=None, depth=4,
                                settle_s=0.0)
    finally:
        set_threads(1)
    assert torch.get_num_threads() == 1
    (ratio,) = result["ratios"].values()
    assert ratio > 0 and set(result["threads"]) == {"torch default", "signalprop default"}
    assert result["load_average"]["during"] is not None
