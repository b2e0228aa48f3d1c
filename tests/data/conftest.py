"""Fixtures for the data tests: an isolated filesystem view, synthetic IDX files and a
local HTTP mirror."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from signalprop.data import paths
from signalprop.data.checksums import FILES, Expected

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` (uint8, int32 or float32) as an uncompressed IDX file."""
    big = array.astype(array.dtype.newbyteorder(">"))
    head = bytes([0, 0, IDX_CODES[big.dtype], array.ndim])
    return head + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()


def fake_mnist(n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Four small MNIST-shaped arrays keyed by IDX file stem."""
    rng = np.random.default_rng(seed)
    return {
        FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        FILES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }


def expected_of(blob: bytes) -> Expected:
    """Checksums of a (gzip'd) IDX blob as the pinned table would hold them."""
    raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    return Expected(md5=hashlib.md5(blob).hexdigest(), raw_sha256=hashlib.sha256(raw).hexdigest())


class FakeSet:
    """Gzip'd IDX blobs for a fake dataset plus the checksum table that matches them."""

    def __init__(self, seed: int = 0, n_train: int = 12, n_test: int = 6) -> None:
        self.arrays = fake_mnist(n_train, n_test, seed)
        self.blobs = {s: gzip.compress(idx_bytes(a), mtime=0) for s, a in self.arrays.items()}
        self.checksums = {s: expected_of(b) for s, b in self.blobs.items()}

    def write(self, directory: Path, *, gz: bool = True) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for stem, blob in self.blobs.items():
            if gz:
                (directory / f"{stem}.gz").write_bytes(blob)
            else:
                (directory / stem).write_bytes(gzip.decompress(blob))
        return directory


@pytest.fixture
def fake_set() -> FakeSet:
    return FakeSet()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME, cwd and the system data folder inside ``tmp_path``; no SIGNALPROP_* env."""
    for var in ("SIGNALPROP_DATA", "SIGNALPROP_CACHE", "SIGNALPROP_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


@pytest.fixture
def use_checksums(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict], None]:
    """Replace the pinned checksum table of a dataset for one test."""
    from signalprop.data import checksums

    def use(name: str, table: dict[str, Expected]) -> None:
        monkeypatch.setitem(checksums.CHECKSUMS, name, table)

    return use


@pytest.fixture
def http_mirror() -> Iterator[Callable[[dict[str, bytes]], str]]:
    """Start local HTTP servers on 127.0.0.1; ``serve({name: bytes})`` returns a base URL.

    A body starting with ``b"SHORT"`` is sent with a Content-Length 100 bytes too long,
    simulating a connection dropped mid-transfer.
    """
    servers: list[http.server.HTTPServer] = []

    def serve(files: dict[str, bytes]) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                claimed = len(body) + (100 if body.startswith(b"SHORT") else 0)
                self.send_header("Content-Length", str(claimed))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_fake_set() -> type[FakeSet]:
    return FakeSet


@pytest.fixture
def idx_encode() -> Callable[[np.ndarray], bytes]:
    return idx_bytes
