"""IDX parsing, header validation before allocation, and checksum verification."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from signalprop.data import checksums
from signalprop.data.checksums import Expected
from signalprop.data.idx import read_header, read_idx
from signalprop.errors import DatasetCorrupt


@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f4"])
@pytest.mark.parametrize("gz", [False, True])
def test_roundtrip(tmp_path, idx_encode, dtype, gz):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    blob = idx_encode(array)
    path = tmp_path / ("a.gz" if gz else "a")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetCorrupt, match=r"bad.*magic number 01020801"):
        read_idx(path)


def test_unknown_dtype_code(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetCorrupt, match="unknown dtype code 0x07"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_size_mismatch(tmp_path, idx_encode, gz):
    blob = idx_encode(np.zeros((4, 5), np.uint8))[:-3]
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(DatasetCorrupt, match=r"short\.gz.*need 32 bytes"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_huge_dims_fail_fast(tmp_path, gz):
    blob = b"\x00\x00\x0d\x03" + struct.pack(">3I", 10**4, 10**4, 10**4) + b"\x00" * 64
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(DatasetCorrupt, match=r"\(10000, 10000, 10000\)"):
        read_idx(path)


def test_truncated_gz_names_file_and_checksum(tmp_path, fake_set):
    stem = "train-images-idx3-ubyte"
    path = tmp_path / f"{stem}.gz"
    path.write_bytes(fake_set.blobs[stem][:-100])
    expected = fake_set.checksums[stem]
    with pytest.raises(DatasetCorrupt) as info:
        read_idx(path, expected)
    assert str(path) in str(info.value) and expected.md5 in str(info.value)


def test_checksum_mismatch_on_valid_file(tmp_path, fake_set):
    stem = "t10k-labels-idx1-ubyte"
    path = tmp_path / f"{stem}.gz"
    path.write_bytes(fake_set.blobs[stem])
    wrong = Expected(md5="0" * 32, raw_sha256="1" * 64)
    with pytest.raises(DatasetCorrupt, match=f"{stem}.gz fails its checksum.*{'0' * 32}"):
        read_idx(path, wrong)


def test_recompressed_file_verifies_by_payload(tmp_path, fake_set):
    stem = "t10k-labels-idx1-ubyte"
    path = tmp_path / f"{stem}.gz"
    raw = gzip.decompress(fake_set.blobs[stem])
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
    read_idx(path, fake_set.checksums[stem])  # md5 differs, decompressed sha256 matches
    assert checksums.is_verified(path, fake_set.checksums[stem])


def test_uncompressed_file_without_payload_hash_is_accepted(tmp_path, fake_set):
    stem = "t10k-labels-idx1-ubyte"
    path = tmp_path / stem
    path.write_bytes(gzip.decompress(fake_set.blobs[stem]))
    out = read_idx(path, Expected(md5=fake_set.checksums[stem].md5))
    assert out.shape == (6,)


def test_verification_is_cached(tmp_path, fake_set, monkeypatch):
    stem = "train-labels-idx1-ubyte"
    path = tmp_path / f"{stem}.gz"
    path.write_bytes(fake_set.blobs[stem])
    expected = fake_set.checksums[stem]
    read_idx(path, expected)
    calls = []
    monkeypatch.setattr(checksums.hashlib, "md5", lambda *a: calls.append(a) or hashlib.md5())
    read_idx(path, expected)
    assert calls == []
    path.write_bytes(fake_set.blobs[stem][:-1])  # changed size: cache entry no longer applies
    with pytest.raises(DatasetCorrupt):
        read_idx(path, expected)


def test_read_header_does_not_read_payload(tmp_path, idx_encode):
    path = tmp_path / "x"
    path.write_bytes(idx_encode(np.zeros((3, 7), np.uint8)))
    header = read_header(path)
    assert header.dims == (3, 7) and header.offset == 12 and header.nbytes == 33
