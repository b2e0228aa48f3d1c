"""A sub-run's metrics file, plain (``metrics.jsonl``, as ``fit`` writes it) or as a report
keeps it (``metrics.jsonl.gz``: gzip, step records possibly thinned).

Every epoch record is kept. When a sub-run logged more than ``max_steps`` step records, the copy
keeps ``max_steps`` of them, evenly spread and always the first and the last; per-layer
``grad_norms`` stay on the first and the last epoch that logged a usable profile (the two the
report draws) and leave the epochs between. A thinned copy starts with a record
``{"kind": "thinned", "step_records": N, "kept_step_records": K, "grad_norms_epochs": E,
"kept_grad_norms_epochs": G}`` that says so. Readers
(:mod:`signalprop.report.runs_reader`, :func:`signalprop.experiments.judging.subrun_health`)
go through :func:`metrics_path` and :func:`metrics_lines`, so they read either form.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from signalprop.runs import METRICS, METRICS_GZ

THINNED = "thinned"  #: the ``kind`` of the record that says a copy's step records were thinned
MAX_STEP_RECORDS = 200  #: step records a report keeps per sub-run


def metrics_path(sub_dir: Path) -> Path | None:
    """The sub-run's metrics file: :data:`~signalprop.runs.METRICS` if present, else
    :data:`~signalprop.runs.METRICS_GZ`, else None."""
    for name in (METRICS, METRICS_GZ):
        path = Path(sub_dir) / name
        if path.is_file():
            return path
    return None


def metrics_lines(path: Path) -> Iterator[str]:
    """The text lines of a metrics file, gzip-compressed (``.gz``) or not; undecodable bytes are
    replaced. Raises ``OSError`` (or ``EOFError`` for a truncated gzip file) as ``open`` does."""
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            yield from fh
    else:
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield from fh


def usable_profile(grad_norms: Any) -> bool:
    """Whether an epoch's ``grad_norms`` is a dict holding a positive finite norm."""
    return isinstance(grad_norms, dict) and any(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in grad_norms.values())


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def thin_lines(lines: list[str], max_steps: int = MAX_STEP_RECORDS) -> list[str]:
    """``lines`` with at most ``max_steps`` step records (evenly spread, first and last kept)
    and ``grad_norms`` only on the first and last epoch with a usable profile, preceded by a
    :data:`THINNED` record when anything was dropped; every other line is kept as it is."""
    if max_steps < 2:
        raise ValueError(f"max_steps must be at least 2, got {max_steps}")
    records = [_record(line) for line in lines]
    steps = [i for i, r in enumerate(records) if r is not None and r.get("kind") == "step"]
    keep = set(steps)
    if len(steps) > max_steps:
        span = len(steps) - 1
        keep = {steps[round(j * span / (max_steps - 1))] for j in range(max_steps)}
    epochs = {i for i, r in enumerate(records)
              if r is not None and r.get("kind") == "epoch" and "grad_norms" in r}
    usable = sorted(i for i in epochs if usable_profile(records[i]["grad_norms"]))
    profiles = {usable[0], usable[-1]} if usable else set()
    if len(keep) == len(steps) and len(profiles) == len(epochs):
        return list(lines)
    note = {"kind": THINNED, "step_records": len(steps), "kept_step_records": len(keep),
            "grad_norms_epochs": len(epochs), "kept_grad_norms_epochs": len(profiles)}
    out = [json.dumps(note) + "\n"]
    for i, line in enumerate(lines):
        if i in epochs and i not in profiles:
            line = json.dumps({k: v for k, v in records[i].items() if k != "grad_norms"}) + "\n"
        if i in keep or records[i] is None or records[i].get("kind") != "step":
            out.append(line)
    return out


def compressed_copy(data: bytes, max_steps: int = MAX_STEP_RECORDS) -> bytes:
    """The report's copy of a plain or gzip metrics file's bytes: thinned (see
    :func:`thin_lines`) and gzip-compressed, byte-for-byte reproducible (no timestamp)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if not any((_record(line) or {}).get("kind") == THINNED for line in lines):
        lines = thin_lines(lines, max_steps)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write("".join(lines).encode("utf-8"))
    return buffer.getvalue()
