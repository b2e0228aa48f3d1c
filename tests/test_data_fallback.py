"""The dataset fallback note: printed once per process, short, and naming a corrupt file or
the files an incomplete folder lacks."""

from __future__ import annotations

import struct

import pytest
import torch

from signalprop.data import paths
from signalprop.data.checksums import FILES
from signalprop.experiments import context
from signalprop.experiments.context import RunContext
from signalprop.experiments.registry import get_experiment


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No dataset anywhere signalprop looks; SIGNALPROP_DATA is ``tmp_path/data``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALPROP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SIGNALPROP_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(context, "_NOTED", set())
    return tmp_path / "data"


def _load_twice(tmp_path, capsys) -> list[str]:
    for attempt in range(2):
        ctx = RunContext(get_experiment("deep-tanh-mlp"), None, tmp_path / f"run{attempt}",
                         torch.device("cpu"))
        splits = ctx.load_data("fashion-mnist", fallback="mnist1d", n_train=64, n_test=32)
        assert splits.name == "mnist1d"
    return capsys.readouterr().err.strip().splitlines()


def test_missing_dataset_note_is_short_and_printed_once(no_data, tmp_path, capsys):
    lines = _load_twice(tmp_path, capsys)
    assert lines == ["signalprop: Fashion-MNIST not found (`make data` installs it); "
                     "using mnist1d instead"]
    assert len(lines[0]) < 120


def test_incomplete_folder_names_the_missing_files(no_data, tmp_path, capsys):
    folder = no_data / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / f"{FILES[0]}.gz").write_bytes(b"")
    (line,) = _load_twice(tmp_path, capsys)
    assert f"Fashion-MNIST incomplete in {folder} (missing {', '.join(FILES[1:])})" in line


def test_corrupt_file_is_named(no_data, tmp_path, capsys):
    folder = no_data / "fashion-mnist"
    folder.mkdir(parents=True)
    for stem in FILES:  # well-formed IDX headers of empty arrays: they fail the pinned checksum
        dims = (0, 28, 28) if "images" in stem else (0,)
        (folder / stem).write_bytes(struct.pack(">BBBB", 0, 0, 0x08, len(dims))
                                    + struct.pack(f">{len(dims)}I", *dims))
    (line,) = _load_twice(tmp_path, capsys)
    assert line == (f"signalprop: Fashion-MNIST file {folder / FILES[0]} is corrupt (delete it "
                    "and reinstall it); using mnist1d instead")
