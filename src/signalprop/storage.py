"""Crash-safe files: atomic writes, checksummed checkpoints, append-only metrics.

A checkpoint is an ordinary ``torch.save`` file (``torch.load("checkpoint.pt")`` reads it) with
its sha256 beside it in ``checkpoint.pt.sha256`` (``sha256sum -c`` format). Both are written to
temporary files, flushed to disk and renamed into place, in an order that leaves at least one
verifiable checkpoint (the new one or ``.prev``) at every instant; a truncated or bit-flipped
file fails its checksum. Checkpoints are loaded with ``torch.load(weights_only=True)``: a file
that needs any other object to unpickle is refused, so loading someone else's checkpoint cannot
run their code. Files of the old format (the checksum as a first line) are still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from signalprop.errors import CheckpointCorrupt, UnsafeCheckpoint


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


def checksum_path(path: Path) -> Path:
    """``<checkpoint>.sha256``: the file's sha256 in ``sha256sum`` format."""
    return Path(path).with_name(Path(path).name + ".sha256")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically save ``state`` (tensors and plain Python data only) with its checksum file;
    the previous checkpoint is kept as ``<name>.prev``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path = Path(path)
    line = f"{sha256_bytes(payload)}  {path.name}\n".encode()
    if path.exists():
        prev, old_sum = previous_checkpoint(path), checksum_path(path)
        if old_sum.exists():  # the checksum goes first: until the rename, `path` still verifies
            atomic_write_bytes(checksum_path(prev), old_sum.read_bytes().replace(
                path.name.encode(), prev.name.encode()))
        os.replace(path, prev)
    atomic_write_bytes(checksum_path(path), line)
    atomic_write_bytes(path, payload)


def previous_checkpoint(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".prev")


def _verified_payload(path: Path) -> bytes:
    """The checkpoint's bytes, checked against ``<path>.sha256`` (or the old first-line
    checksum); raises CheckpointCorrupt naming the file."""
    data = path.read_bytes()
    sums = checksum_path(path)
    if sums.exists():
        expected, payload = sums.read_text(errors="replace").split(" ")[0].strip(), data
    else:
        head, sep, payload = data.partition(b"\n")
        if not sep or len(head) != 64:
            raise CheckpointCorrupt(f"checkpoint {path} has no checksum file {sums.name} "
                                    "(truncated, or not a signalprop checkpoint)")
        expected = head.decode(errors="replace")
    actual = sha256_bytes(payload)
    if actual != expected:
        raise CheckpointCorrupt(
            f"checkpoint {path} fails its checksum (expected {expected}, got {actual}): "
            "truncated or corrupted"
        )
    return payload


def _numpy_globals() -> list[Any]:
    """NumPy types that old-format checkpoints (NumPy RNG state) need; data, not code."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, *(type(np.dtype(t)) for t in ("uint32", "<u4"))]


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint with ``torch.load(weights_only=True)``.

    Raises CheckpointCorrupt naming the file if it is damaged, and UnsafeCheckpoint (without
    running anything from it) if it holds objects other than tensors and plain data.
    """
    path = Path(path)
    payload = _verified_payload(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpoint(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain "
            f"data, which could run code when loaded ({reason[:160]}); load only checkpoints "
            "written by signalprop or that you trust"
        ) from None


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
