"""Benchmark results for the report: the ratios each ``benchmarks/*.py`` wrote to JSON.

A benchmark file ideally looks like ``{"benchmark": name, "machine": ..., "command": ...,
"ratios": {label: value}}``; for other layouts every numeric leaf whose key path mentions
"ratio" is taken, so the report never has to know a benchmark's internals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchmarkRecord:
    name: str
    path: Path
    machine: str
    command: str
    ratios: dict[str, float] = field(default_factory=dict)


def _machine_text(data: dict[str, Any]) -> str:
    machine = data.get("machine") or data.get("device") or data.get("env") or {}
    if isinstance(machine, dict):
        keys = ("device_name", "device", "cpu", "processor", "platform", "threads", "torch")
        parts = [f"{k}={machine[k]}" for k in keys if k in machine]
        return ", ".join(parts) or json.dumps(machine)[:200]
    return str(machine)


def _ratio_leaves(value: Any, path: tuple[str, ...] = ()) -> dict[str, float]:
    found: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(_ratio_leaves(item, (*path, str(key))))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            label = item.get("name") or item.get("label") if isinstance(item, dict) else None
            found.update(_ratio_leaves(item, (*path, str(label or index))))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if any("ratio" in part.lower() or part.lower().endswith("_x") for part in path):
            found[" / ".join(p for p in path if p != "ratios")] = float(value)
    return found


def load_benchmark(path: Path) -> BenchmarkRecord | None:
    """Read one benchmark JSON; None if it is unreadable or holds no ratios."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    ratios = data.get("ratios")
    if not (isinstance(ratios, dict) and ratios and all(
            isinstance(v, int | float) for v in ratios.values())):
        ratios = _ratio_leaves(data)
    if not ratios:
        return None
    return BenchmarkRecord(
        name=str(data.get("benchmark") or Path(path).stem), path=Path(path),
        machine=_machine_text(data),
        command=str(data.get("command") or f"python benchmarks/{Path(path).stem}.py"),
        ratios={str(k): float(v) for k, v in ratios.items()},
    )


def load_benchmarks(paths: list[Path]) -> list[BenchmarkRecord]:
    """Every readable benchmark JSON among ``paths`` (files or directories of ``*.json``)."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return [record for f in files if (record := load_benchmark(f)) is not None]
