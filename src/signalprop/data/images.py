"""MNIST and Fashion-MNIST: 28x28 grey images of 10 classes, 60000 train / 10000 test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from signalprop.data import checksums
from signalprop.data.checksums import expected_for
from signalprop.data.idx import read_idx
from signalprop.data.options import boolean, choice, optional_int
from signalprop.data.paths import locate, missing_message
from signalprop.data.sequences import MODES, sequential_view
from signalprop.data.splits import Splits, make_splits
from signalprop.errors import ConfigError, DatasetCorrupt, DatasetMissing

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _validate(source: str, x: np.ndarray, y: np.ndarray, split: str) -> None:
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise DatasetCorrupt(
            f"{source}: {split} images have shape {x.shape} dtype {x.dtype}, expected "
            "(N, 28, 28) uint8; delete the file and reinstall or re-download it", path=source
        )
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (
        y.size and (y.min() < 0 or y.max() > 9)
    ):
        raise DatasetCorrupt(
            f"{source}: {split} labels have shape {y.shape} dtype {y.dtype}, expected "
            f"({x.shape[0]},) integers in 0..9; delete the file and reinstall or re-download it",
            path=source,
        )


def _read_keras(path: Path) -> Arrays:
    checksums.check_sha256(path, checksums.KERAS_MNIST_SHA256)
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except (OSError, KeyError, ValueError) as e:
        raise DatasetCorrupt(
            f"{path} is not a Keras MNIST archive with x_train, y_train, x_test, y_test ({e}); "
            "delete it and re-download it", path=path
        ) from e


def read_arrays(name: str) -> Arrays:
    """Raw uint8 images (N, 28, 28) and labels of ``name``, found, verified and validated."""
    found = locate(name)
    if found is None:
        raise DatasetMissing(missing_message(name))
    if found.idx is not None:
        arrays = tuple(read_idx(path, expected_for(name, stem)) for stem, path in found.idx.items())
        source = str(next(iter(found.idx.values())).parent)
    else:
        assert found.npz is not None
        arrays = _read_keras(found.npz)
        source = str(found.npz)
    x_train, y_train, x_test, y_test = arrays
    _validate(source, x_train, y_train, "train")
    _validate(source, x_test, y_test, "test")
    return x_train, y_train, x_test, y_test


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of ``images / 255`` over all pixels, exactly, from a byte histogram."""
    counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    total = counts.sum()
    mean = float(counts @ values / total)
    var = float(counts @ (values - mean) ** 2 / total)
    return mean, max(var, 1e-12) ** 0.5


def load_images(
    name: str,
    *,
    seed: int = 0,
    flatten: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    sequential: str | None = None,
    perm_seed: int = 0,
) -> Splits:
    """Images scaled to [0, 1] then normalised with the training-set pixel mean/std.

    x is (N, 1, 28, 28), or (N, 784) with ``flatten``, or (N, 784, 1) pixel sequences with
    ``sequential`` in {"pixel", "permuted"}; ``n_train``/``n_test`` keep the first n.
    ``seed`` is unused (the data are fixed) and accepted for a uniform interface.
    """
    del seed
    flatten = boolean("flatten", flatten)
    n_train = optional_int("n_train", n_train)
    n_test = optional_int("n_test", n_test)
    choice("sequential", sequential, (None, *MODES))
    if flatten and sequential is not None:
        raise ConfigError("options flatten=True and sequential are exclusive; drop one")
    x_train, y_train, x_test, y_test = read_arrays(name)
    mean, std = pixel_stats(x_train)

    def prepare(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[torch.Tensor, ...]:
        xt = torch.from_numpy(np.ascontiguousarray(x[:n])).float().div_(255.0)
        xt = xt.sub_(mean).div_(std).unsqueeze(1)
        yt = torch.from_numpy(y[:n].astype(np.int64))
        return (xt.flatten(1) if flatten else xt), yt

    splits = make_splits(
        name, prepare(x_train, y_train, n_train), prepare(x_test, y_test, n_test),
        num_classes=10,
    )
    if sequential is not None:
        splits = sequential_view(splits, sequential, perm_seed=perm_seed)
    return splits


def load_mnist(**options: object) -> Splits:
    """MNIST handwritten digits; options as :func:`load_images`."""
    return load_images("mnist", **options)  # type: ignore[arg-type]


def load_fashion_mnist(**options: object) -> Splits:
    """Fashion-MNIST (Zalando) clothing images; options as :func:`load_images`."""
    return load_images("fashion-mnist", **options)  # type: ignore[arg-type]
