"""``signalprop.diagnose``: a gradient-health check for any PyTorch model.

``from signalprop.diagnose import diagnose; print(diagnose(model, (x, y)))``. The function
lives in :mod:`signalprop.diagnose.core`; it is loaded lazily here so that the CLI can import
:mod:`signalprop.diagnose.cli` cheaply.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Diagnosis", "diagnose"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from signalprop.diagnose import core

        return getattr(core, name)
    raise AttributeError(f"module 'signalprop.diagnose' has no attribute {name!r}")
