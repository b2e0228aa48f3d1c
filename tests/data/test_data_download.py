"""download(): mirrors on a local HTTP server, verification before os.replace."""

from __future__ import annotations

import pytest

from signalprop.data import download
from signalprop.data.checksums import FILES
from signalprop.errors import ConfigError, DatasetCorrupt, SignalpropError


def gz_files(fake_set, corrupt: bool = False) -> dict[str, bytes]:
    files = {f"{s}.gz": b for s, b in fake_set.blobs.items()}
    if corrupt:
        files = {n: b[:-20] + b"\x00" * 20 for n, b in files.items()}
    return files


def test_good_download(tmp_path, fake_set, http_mirror):
    mirror = http_mirror(gz_files(fake_set))
    dest = download("mnist", tmp_path / "d", [mirror], checksums=fake_set.checksums)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{s}.gz" for s in FILES)
    for stem in FILES:
        assert (dest / f"{stem}.gz").read_bytes() == fake_set.blobs[stem]


def test_corrupt_mirror_then_good_mirror(tmp_path, fake_set, http_mirror):
    bad, good = http_mirror(gz_files(fake_set, corrupt=True)), http_mirror(gz_files(fake_set))
    dest = download("fashion-mnist", tmp_path, [bad, good], checksums=fake_set.checksums)
    assert (dest / f"{FILES[0]}.gz").read_bytes() == fake_set.blobs[FILES[0]]
    assert not list(tmp_path.glob("*.part"))


def test_all_mirrors_bad_leaves_nothing(tmp_path, fake_set, http_mirror):
    bad1, bad2 = (http_mirror(gz_files(fake_set, corrupt=True)) for _ in range(2))
    with pytest.raises(DatasetCorrupt) as info:
        download("mnist", tmp_path, [bad1, bad2], checksums=fake_set.checksums)
    message = str(info.value)
    assert bad1 in message and bad2 in message and "checksum mismatch" in message
    assert fake_set.checksums[FILES[0]].md5 in message
    assert list(tmp_path.iterdir()) == []


def test_unreachable_and_missing_files(tmp_path, fake_set, http_mirror):
    empty = http_mirror({})
    with pytest.raises(SignalpropError, match="404") as info:
        download("mnist", tmp_path, [empty], checksums=fake_set.checksums, timeout=5)
    assert "SIGNALPROP_MIRRORS" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_good_file_is_never_overwritten(tmp_path, fake_set, http_mirror):
    fake_set.write(tmp_path)
    bad = http_mirror(gz_files(fake_set, corrupt=True))
    download("mnist", tmp_path, [bad], checksums=fake_set.checksums)
    for stem in FILES:
        assert (tmp_path / f"{stem}.gz").read_bytes() == fake_set.blobs[stem]


def test_bad_existing_file_is_replaced_by_good(tmp_path, fake_set, http_mirror):
    target = tmp_path / f"{FILES[1]}.gz"
    target.write_bytes(b"junk")
    download("mnist", tmp_path, [http_mirror(gz_files(fake_set))], checksums=fake_set.checksums)
    assert target.read_bytes() == fake_set.blobs[FILES[1]]


def test_env_mirrors_and_default_dest(isolated, fake_set, http_mirror, monkeypatch):
    mirror = http_mirror(gz_files(fake_set))
    monkeypatch.setenv("SIGNALPROP_MIRRORS", f" http://127.0.0.1:9/nothing , {mirror}")
    monkeypatch.setenv("SIGNALPROP_CACHE", str(isolated / "cache"))
    dest = download("mnist", checksums=fake_set.checksums, timeout=5)
    assert dest == isolated / "cache" / "mnist"
    assert len(list(dest.glob("*.gz"))) == 4


def test_unknown_name_and_unpinned_file(tmp_path, fake_set, http_mirror):
    with pytest.raises(ConfigError, match="downloadable: mnist, fashion-mnist"):
        download("cifar10", tmp_path)
    with pytest.raises(ConfigError, match="no pinned checksum"):
        download("mnist", tmp_path, [http_mirror(gz_files(fake_set))], checksums={})


def test_dropped_connection_then_good_mirror(tmp_path, fake_set, http_mirror):
    short = http_mirror({name: b"SHORT" + blob[:50] for name, blob in gz_files(fake_set).items()})
    good = http_mirror(gz_files(fake_set))
    with pytest.raises(SignalpropError, match="transfer incomplete: got 55 of 155 bytes"):
        download("mnist", tmp_path / "a", [short], checksums=fake_set.checksums, timeout=5)
    assert list((tmp_path / "a").iterdir()) == []
    dest = download("mnist", tmp_path / "b", [short, good], checksums=fake_set.checksums)
    assert (dest / f"{FILES[2]}.gz").read_bytes() == fake_set.blobs[FILES[2]]
