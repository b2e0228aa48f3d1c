"""Reader for the IDX format of (Fashion-)MNIST, gzip'd or not.

The header (magic, dtype code, ndim, dims) is validated against the file size before any
decompression or allocation, so a header claiming 10**12 elements fails at once.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signalprop.data.checksums import Expected, check
from signalprop.errors import DatasetCorrupt

GZIP_MAGIC = b"\x1f\x8b"
MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data by more than this factor
DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class IdxHeader:
    """Parsed IDX header: element dtype (big-endian), dims, and the payload offset."""

    dtype: np.dtype
    dims: tuple[int, ...]

    @property
    def offset(self) -> int:
        return 4 + 4 * len(self.dims)

    @property
    def nbytes(self) -> int:
        """Total size of the decompressed file the header describes."""
        return self.offset + math.prod(self.dims) * self.dtype.itemsize


def _corrupt(path: Path, problem: str, expected: Expected | None) -> DatasetCorrupt:
    hint = f"; expected {expected.describe()}" if expected else ""
    return DatasetCorrupt(
        f"{path} is not a valid IDX file: {problem}{hint}; "
        "delete it and reinstall or re-download it", path=path
    )


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _decompressed_size(path: Path) -> tuple[int, int]:
    """(size on disk, decompressed size mod 2**32 from the gzip trailer)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - 4, 0))
        trailer = f.read(4)
    return size, int.from_bytes(trailer.ljust(4, b"\0"), "little")


def read_header(path: Path, expected: Expected | None = None) -> IdxHeader:
    """Parse and validate the header of ``path`` against its size; raise DatasetCorrupt."""
    path = Path(path)
    gz = is_gzip(path)
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0":
                raise _corrupt(path, f"bad magic number {head.hex() or '(empty)'}", expected)
            code, ndim = head[2], head[3]
            if code not in DTYPES:
                raise _corrupt(path, f"unknown dtype code 0x{code:02x}", expected)
            if ndim == 0:
                raise _corrupt(path, "ndim is 0", expected)
            raw_dims = f.read(4 * ndim)
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, f"cannot decompress the header ({e})", expected) from e
    if len(raw_dims) < 4 * ndim:
        raise _corrupt(path, f"header truncated: {ndim} dims declared", expected)
    header = IdxHeader(DTYPES[code], struct.unpack(f">{ndim}I", raw_dims))
    want = header.nbytes
    if gz:
        on_disk, isize = _decompressed_size(path)
        if want > MAX_DEFLATE_RATIO * on_disk + 1024 or want % 2**32 != isize:
            raise _corrupt(
                path,
                f"header dims {header.dims} need {want} bytes but the gzip stream holds "
                f"{isize} (mod 2**32); the file is truncated or the header is wrong",
                expected,
            )
    elif want != path.stat().st_size:
        raise _corrupt(
            path,
            f"header dims {header.dims} need {want} bytes but the file has "
            f"{path.stat().st_size}; the file is truncated or the header is wrong",
            expected,
        )
    return header


def read_idx(path: Path | str, expected: Expected | None = None) -> np.ndarray:
    """Read an IDX file to a native-endian numpy array, validating header and checksum.

    ``expected`` (see :mod:`signalprop.data.checksums`) is checked when given; a mismatch
    raises :class:`DatasetCorrupt` naming the file and the expected checksum.
    """
    path = Path(path)
    header = read_header(path, expected)
    file_bytes = path.read_bytes()
    payload = file_bytes
    if file_bytes[:2] == GZIP_MAGIC:
        try:
            payload = gzip.decompress(file_bytes)
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt(path, f"gzip stream is damaged ({e})", expected) from e
    if len(payload) != header.nbytes:
        raise _corrupt(
            path, f"holds {len(payload)} bytes, header needs {header.nbytes}", expected
        )
    if expected is not None:
        check(path, file_bytes, payload, expected)
    array = np.frombuffer(payload, dtype=header.dtype, offset=header.offset)
    return array.reshape(header.dims).astype(header.dtype.newbyteorder("="))
