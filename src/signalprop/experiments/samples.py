"""Small splits of an experiment's data, for building its models outside a run (diagnose, tests).

Each experiment's ``sample(config, n, seed)`` (see :mod:`signalprop.experiments.registry`)
loads its dataset through :func:`load_sample`: ``n`` training and ``n`` test examples, and the
same fallback as the run's ``ctx.load_data`` when the dataset is missing (MNIST-1D is generated
offline, so nothing is downloaded).
"""

from __future__ import annotations

from typing import Any

from signalprop.data.splits import Splits
from signalprop.errors import DatasetCorrupt, DatasetMissing


def flatten_options(name: str) -> dict[str, Any]:
    """``{"flatten": True}`` for a dataset of images (an MLP reads vectors), ``{}`` for one
    that is vectors already (it has no ``flatten`` option)."""
    from signalprop import data

    return {"flatten": True} if "flatten" in data.options_of(name) else {}


def load_sample(name: str, n: int, seed: int, *, fallback: str | None = "mnist1d",
                **options: Any) -> Splits:
    """``data.load(name, n_train=n, n_test=n, **options)``; ``fallback``'s data (with the
    options it accepts) when ``name``'s files are missing or corrupt."""
    from signalprop import data

    try:
        return data.load(name, seed=seed, n_train=n, n_test=n, **options)
    except (DatasetMissing, DatasetCorrupt):
        if fallback is None:
            raise
        accepted = data.options_of(fallback)
        return data.load(fallback, seed=seed, n_train=n, n_test=n,
                         **{k: v for k, v in options.items() if k in accepted})
