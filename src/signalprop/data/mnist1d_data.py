"""MNIST-1D (Greydanus 2020): 1-D signals of length 40 in 10 classes, generated offline."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile

import numpy as np
import torch

from signalprop.data.options import positive_int
from signalprop.data.paths import cache_dir
from signalprop.data.splits import Splits, make_splits
from signalprop.errors import ConfigError


def _package_args() -> dict:
    from mnist1d.data import get_dataset_args  # lazy: the package imports matplotlib

    return get_dataset_args(as_dict=True)


def _generate(args: dict) -> tuple[np.ndarray, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` (never downloads) without disturbing global RNGs."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def _cached(args: dict) -> tuple[np.ndarray, np.ndarray]:
    """Generated (x, y), cached as ``<cache>/mnist1d/<hash of args>.npz``."""
    keyed = {k: v for k, v in args.items() if k != "url"}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "mnist1d" / f"{key}.npz"
    try:
        with np.load(path) as f:
            return f["x"], f["y"]
    except (OSError, KeyError, ValueError):
        pass
    x, y = _generate(args)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs regeneration next time
    return x, y


def load_mnist1d(*, seed: int = 0, n_train: int | None = None, n_test: int = 1000) -> Splits:
    """MNIST-1D with ``seed`` as the generator seed; ``n_train`` defaults to the package's
    (4000). x is float32 (N, 40) standardised with the training mean/std, y int64."""
    args = _package_args()
    if n_train is None:
        n_train = int(args["num_samples"] * args["train_split"])
    n_train = positive_int("n_train", n_train)
    n_test = positive_int("n_test", n_test)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r} must be an integer in [0, 2**32) for mnist1d")
    per_class = math.ceil((n_train + n_test) / 10)
    args.update(seed=seed, num_samples=10 * per_class, train_split=1.0)
    x, y = _cached(args)
    x_train, x_test = x[:n_train], x[n_train : n_train + n_test]
    mean, std = float(x_train.mean()), float(x_train.std())

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    return make_splits(
        "mnist1d",
        (tensor(x_train), torch.from_numpy(y[:n_train].astype(np.int64))),
        (tensor(x_test), torch.from_numpy(y[n_train : n_train + n_test].astype(np.int64))),
        num_classes=10,
    )
