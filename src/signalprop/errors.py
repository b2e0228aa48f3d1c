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
    """A dataset file exists but fails its checksum or format check; ``path`` names it."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class CheckpointCorrupt(SignalpropError):
    """A checkpoint or metrics file fails its checksum."""


class UnsafeCheckpoint(SignalpropError):
    """A checkpoint holds objects other than tensors and plain data; it was not loaded."""


class DivergenceError(SignalpropError, FloatingPointError):
    """Training produced NaN or Inf; the message names the quantity (and layer, when known).

    ``run_dir`` is the directory of the model that diverged, ``checkpoint`` its last good
    checkpoint (None when none was written) and ``lr`` its learning rate; the command line
    uses them to print a rerun command that applies.
    """

    def __init__(self, message: str, *, run_dir: object = None, checkpoint: object = None,
                 lr: float | None = None) -> None:
        super().__init__(message)
        self.run_dir, self.checkpoint, self.lr = run_dir, checkpoint, lr
        self.experiment_dir: object = None  # set by run_experiment
