"""Validation helpers for dataset options; each failure is a ConfigError naming the option."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

from signalprop.errors import ConfigError


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"option {name}={value!r} must be an integer >= {minimum}")
    return value


def optional_int(name: str, value: Any, *, minimum: int = 1) -> int | None:
    """Like :func:`positive_int` but ``None`` is allowed (meaning "all")."""
    return None if value is None else positive_int(name, value, minimum=minimum)


def non_negative_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is a finite real >= 0, else raise ConfigError."""
    is_real = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_real or not 0 <= value < float("inf"):
        raise ConfigError(f"option {name}={value!r} must be a finite number >= 0")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is a finite real > 0, else raise ConfigError."""
    if non_negative_float(name, value) == 0:
        raise ConfigError(f"option {name}={value!r} must be a finite number > 0")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else raise ConfigError."""
    if not isinstance(value, bool):
        raise ConfigError(f"option {name}={value!r} must be true or false")
    return value


def choice(name: str, value: Any, allowed: Collection[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise ConfigError listing them."""
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"option {name}={value!r} is not allowed; choose one of: {shown}")
    return value


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` (e.g. "train"/"test") derived from ``seed``.

    Hash-based, so it is the same in every process and different streams never collide
    the way ``seed`` and ``seed + 1`` of neighbouring runs would.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} must be an integer")
    digest = hashlib.sha256(f"signalprop:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
