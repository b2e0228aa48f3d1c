"""Dataset names, option checking and the :func:`load` entry point."""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from collections.abc import Callable

from signalprop.data.images import load_fashion_mnist, load_images, load_mnist
from signalprop.data.mnist1d_data import load_mnist1d
from signalprop.data.paths import locate, missing_message
from signalprop.data.splits import Splits
from signalprop.data.synthetic import (
    load_adding,
    load_bitstream,
    load_copy,
    load_cue_recall,
    load_delayed_recall,
    load_lag_recall,
    load_spirals,
)
from signalprop.errors import ConfigError

LOADERS: dict[str, Callable[..., Splits]] = {
    "mnist1d": load_mnist1d,
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "spirals": load_spirals,
    "copy": load_copy,
    "adding": load_adding,
    "delayed-recall": load_delayed_recall,
    "cue-recall": load_cue_recall,
    "lag-recall": load_lag_recall,
    "bitstream": load_bitstream,
}
IMAGE_DATASETS = ("mnist", "fashion-mnist")


def dataset_names() -> list[str]:
    """All names :func:`load` accepts."""
    return list(LOADERS)


def options_of(name: str) -> dict[str, object]:
    """Options of dataset ``name`` and their defaults (``seed`` excluded)."""
    fn = load_images if name in IMAGE_DATASETS else LOADERS[name]
    params = inspect.signature(fn).parameters.values()
    return {
        p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "seed"
    }


def _unknown_name(name: object) -> ConfigError:
    close = difflib.get_close_matches(str(name), dataset_names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigError(
        f"unknown dataset {name!r}; {hint}available: {', '.join(dataset_names())}"
    )


def load(name: str, *, seed: int = 0, **options: object) -> Splits:
    """Load dataset ``name`` as :class:`Splits`; see :func:`options_of` for its options."""
    if name not in LOADERS:
        raise _unknown_name(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} must be an integer")
    allowed = options_of(name)
    for option in options:
        if option not in allowed:
            lowered = {a.lower(): a for a in allowed}
            close = difflib.get_close_matches(option.lower(), list(lowered), n=1)
            hint = f"did you mean {lowered[close[0]]}? " if close else ""
            raise ConfigError(
                f"unknown option {option!r} for dataset {name!r}; {hint}"
                f"allowed: {', '.join(allowed) or '(none)'}"
            )
    return LOADERS[name](seed=seed, **options)


def is_available(name: str) -> tuple[bool, str]:
    """Whether :func:`load` can find ``name``'s data, and a one-line reason if not.

    For IDX datasets this only looks for the files; checksums are verified on load.
    """
    if name not in LOADERS:
        return False, str(_unknown_name(name))
    if name in IMAGE_DATASETS:
        return (True, "") if locate(name) else (False, missing_message(name))
    if name == "mnist1d" and importlib.util.find_spec("mnist1d") is None:
        return False, "the mnist1d package is not installed; install it with `pip install mnist1d`"
    return True, ""
