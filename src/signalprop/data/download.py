"""Download the IDX files of MNIST / Fashion-MNIST from a list of mirrors, safely.

Each file goes to a temporary file in the destination folder, is verified against its
pinned checksum, and only then is moved into place with ``os.replace``; a bad copy is
deleted and the next mirror is tried. A good existing file is never overwritten.
"""

from __future__ import annotations

import gzip
import http.client
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from signalprop.data.checksums import CHECKSUMS, FILES, Expected, matches
from signalprop.data.idx import GZIP_MAGIC, read_header
from signalprop.data.paths import cache_dir
from signalprop.errors import ConfigError, DatasetCorrupt, SignalpropError

MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}
TIMEOUT_S = 60.0


def mirrors_for(name: str) -> list[str]:
    """``$SIGNALPROP_MIRRORS`` (comma-separated base URLs) if set, else the defaults."""
    env = os.environ.get("SIGNALPROP_MIRRORS", "")
    chosen = [m.strip() for m in env.split(",") if m.strip()] or MIRRORS[name]
    return [m if m.endswith("/") else m + "/" for m in chosen]


def _is_good(path: Path, expected: Expected) -> bool:
    """Strict: a valid IDX file whose checksum matches ``expected``."""
    try:
        header = read_header(path)
        data = path.read_bytes()
        payload = gzip.decompress(data) if data[:2] == GZIP_MAGIC else data
    except (DatasetCorrupt, OSError, EOFError, zlib.error):
        return False
    return len(payload) == header.nbytes and matches(data, payload, expected)


def fetch(url: str, dest: Path, timeout: float) -> Path:
    """Stream ``url`` into a new temp file next to ``dest``; return the temp path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
            declared = r.headers.get("Content-Length")
            received = 0
            for chunk in iter(lambda: r.read(1 << 20), b""):
                out.write(chunk)
                received += len(chunk)
        if declared is not None and declared.isdigit() and received != int(declared):
            raise ConnectionError(f"transfer incomplete: got {received} of {declared} bytes")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def download_file(
    filename: str, dest: Path, expected: Expected, mirrors: Sequence[str], timeout: float
) -> Path:
    """Fetch ``filename`` from the first mirror that serves a copy matching ``expected``."""
    if not (expected.md5 or expected.raw_sha256):
        raise ConfigError(f"no pinned checksum for {filename}; refusing an unverifiable download")
    if dest.exists() and _is_good(dest, expected):
        return dest
    tried: list[str] = []
    for base in mirrors:
        url = base + filename
        try:
            tmp = fetch(url, dest, timeout)
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError: OSError
            tried.append(f"{url} ({e})")
            continue
        if _is_good(tmp, expected):
            os.replace(tmp, dest)
            return dest
        tmp.unlink(missing_ok=True)
        tried.append(f"{url} (checksum mismatch)")
    mismatch = any(t.endswith("(checksum mismatch)") for t in tried)
    cls = DatasetCorrupt if mismatch else SignalpropError
    raise cls(
        f"could not download {filename}: expected {expected.describe()}; tried: "
        f"{'; '.join(tried) or 'no mirrors'}; set SIGNALPROP_MIRRORS to a working mirror "
        "or copy the file into place by hand"
    )


def download(
    name: str,
    dest_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    *,
    checksums: Mapping[str, Expected] | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download the four ``.gz`` IDX files of ``name`` into ``dest_dir`` and return it.

    ``dest_dir`` defaults to ``<cache dir>/<name>`` (searched by :func:`load`), ``mirrors``
    to :func:`mirrors_for`, ``checksums`` to the pinned table (tests inject their own).
    """
    if name not in MIRRORS:
        raise ConfigError(f"cannot download {name!r}; downloadable: {', '.join(MIRRORS)}")
    dest = Path(dest_dir) if dest_dir is not None else cache_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    table = CHECKSUMS[name] if checksums is None else checksums
    bases = mirrors_for(name) if mirrors is None else [
        m if m.endswith("/") else m + "/" for m in mirrors
    ]
    for stem in FILES:
        download_file(f"{stem}.gz", dest / f"{stem}.gz", table.get(stem, Expected()),
                      bases, timeout)
    return dest

