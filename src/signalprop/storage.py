"""Crash-safe files: atomic writes, checksummed checkpoints, append-only metrics.

A checkpoint file is ``<64 hex sha256>\\n<torch.save bytes>``: it is written to a temporary
file, flushed to disk and renamed into place, so a reader sees either the old or the new file
and detects any truncation or bit flip by the checksum.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from signalprop.errors import CheckpointCorrupt


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files and reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_prefix(path: Path, length: int) -> str:
    """sha256 of the first ``length`` bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically save ``state``; the previous checkpoint is kept as ``<name>.prev``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    data = sha256_bytes(payload).encode() + b"\n" + payload
    path = Path(path)
    if path.exists():
        os.replace(path, previous_checkpoint(path))
    atomic_write_bytes(path, data)


def previous_checkpoint(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".prev")


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint; raise CheckpointCorrupt naming the file if it is damaged."""
    path = Path(path)
    data = path.read_bytes()
    head, sep, payload = data.partition(b"\n")
    if not sep or len(head) != 64:
        raise CheckpointCorrupt(f"checkpoint {path} is truncated or not a signalprop checkpoint")
    actual = sha256_bytes(payload)
    if actual != head.decode(errors="replace"):
        raise CheckpointCorrupt(
            f"checkpoint {path} fails its checksum (expected {head.decode(errors='replace')}, "
            f"got {actual}): truncated or corrupted"
        )
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)


class MetricsLog:
    """Append-only JSON-lines log; each line is flushed so the file is always parseable."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "ab")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write((json.dumps(record, default=float) + "\n").encode())
        self._handle.flush()

    def tell(self) -> int:
        self._handle.flush()
        return self._handle.tell()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSON-lines file, skipping blank and unparsable (e.g. half-written) lines."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
