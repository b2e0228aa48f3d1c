"""signalprop: train very deep, long-memory networks whose gradients neither vanish nor explode."""

from __future__ import annotations

from signalprop.diagnose.core import Diagnosis, diagnose
from signalprop.restore import load_run
from signalprop.threads import set_threads
from signalprop.version import __version__

__all__ = ["Diagnosis", "__version__", "diagnose", "load_run", "set_threads"]
