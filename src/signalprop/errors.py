"""Errors that signalprop raises for problems a user can fix.

The CLI turns every :class:`SignalpropError` into a one-line message and exit status 2.
"""

from __future__ import annotations


class SignalpropError(Exception):
    """A problem with the user's input or environment; the message says what and how to fix it."""


class ConfigError(SignalpropError, ValueError):
    """A configuration value, override or constructor argument is invalid."""


class DatasetMissing(SignalpropError, FileNotFoundError):
    """A dataset is not installed anywhere signalprop looks."""


class DatasetCorrupt(SignalpropError):
    """A dataset file exists but fails its checksum or format check."""


class CheckpointCorrupt(SignalpropError):
    """A checkpoint or metrics file fails its checksum."""


class DivergenceError(SignalpropError, FloatingPointError):
    """Training produced NaN or Inf; the message names the quantity (and layer, when known)."""
