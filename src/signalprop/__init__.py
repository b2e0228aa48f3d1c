"""signalprop: train very deep, long-memory networks whose gradients neither vanish nor explode."""

from __future__ import annotations

__version__ = "0.1.0"

from signalprop.diagnose.core import Diagnosis, diagnose  # noqa: E402
from signalprop.restore import load_run  # noqa: E402

__all__ = ["Diagnosis", "__version__", "diagnose", "load_run"]
