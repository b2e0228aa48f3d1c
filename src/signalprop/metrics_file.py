"""A sub-run's metrics file, plain (``metrics.jsonl``, as ``fit`` writes it) or as a report
keeps it (``metrics.jsonl.gz``: gzip, step records possibly thinned).

Every epoch record is kept. When a sub-run logged more than ``max_steps`` step records, the copy
keeps ``max_steps`` of them, evenly spread and always the first and the last, and starts with a
record ``{"kind": "thinned", "step_records": N, "kept_step_records": K}`` that says so. Readers
(:mod:`signalprop.report.runs_reader`, :func:`signalprop.experiments.judging.subrun_health`)
go through :func:`metrics_path` and :func:`metrics_lines`, so they read either form.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

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


def _kind(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("kind") if isinstance(record, dict) else None


def thin_lines(lines: list[str], max_steps: int = MAX_STEP_RECORDS) -> list[str]:
    """``lines`` with at most ``max_steps`` step records (evenly spread, first and last kept),
    preceded by a :data:`THINNED` record when any were dropped; every other line is kept in
    order."""
    steps = [i for i, line in enumerate(lines) if _kind(line) == "step"]
    if len(steps) <= max_steps:
        return list(lines)
    if max_steps < 2:
        raise ValueError(f"max_steps must be at least 2, got {max_steps}")
    span = len(steps) - 1
    keep = {steps[round(j * span / (max_steps - 1))] for j in range(max_steps)}
    dropped = set(steps) - keep
    note = json.dumps({"kind": THINNED, "step_records": len(steps),
                       "kept_step_records": len(keep)}) + "\n"
    return [note] + [line for i, line in enumerate(lines) if i not in dropped]


def compressed_copy(data: bytes, max_steps: int = MAX_STEP_RECORDS) -> bytes:
    """The report's copy of a plain or gzip metrics file's bytes: thinned (see
    :func:`thin_lines`) and gzip-compressed, byte-for-byte reproducible (no timestamp)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if not any(_kind(line) == THINNED for line in lines):
        lines = thin_lines(lines, max_steps)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write("".join(lines).encode("utf-8"))
    return buffer.getvalue()
