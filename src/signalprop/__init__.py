"""signalprop: train very deep, long-memory networks whose gradients neither vanish nor explode."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("signalprop")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

from signalprop.diagnose.core import Diagnosis, diagnose  # noqa: E402
from signalprop.restore import load_run  # noqa: E402
from signalprop.threads import set_threads  # noqa: E402

__all__ = ["Diagnosis", "__version__", "diagnose", "load_run", "set_threads"]
