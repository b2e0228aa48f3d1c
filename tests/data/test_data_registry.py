"""load(): names, option checking, availability, and MNIST-1D generation and caching."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from signalprop.data import Splits, dataset_names, is_available, load, options_of
from signalprop.errors import ConfigError


def test_names():
    assert set(dataset_names()) == {
        "mnist1d", "fashion-mnist", "mnist", "spirals", "copy", "adding", "delayed-recall",
        "cue-recall", "lag-recall", "bitstream",
    }


def test_unknown_name_suggests():
    with pytest.raises(ConfigError, match="unknown dataset 'fashion_mnist'; did you mean "
                       "fashion-mnist"):
        load("fashion_mnist")
    ok, reason = is_available("spiral")
    assert not ok and "did you mean spirals" in reason


def test_unknown_option_names_allowed():
    with pytest.raises(ConfigError) as info:
        load("adding", t=10)
    message = str(info.value)
    assert "unknown option 't' for dataset 'adding'" in message
    assert "did you mean T" in message and "allowed: n_train, n_test, T" in message
    with pytest.raises(ConfigError, match="allowed: flatten, n_train, n_test, sequential"):
        load("mnist", flaten=True)


def test_bad_seed():
    with pytest.raises(ConfigError, match="seed='1'"):
        load("spirals", seed="1")


def test_options_of():
    assert options_of("bitstream") == {"n_train": 10000, "n_test": 1000, "T": 50, "k": 5}
    assert options_of("fashion-mnist") == {
        "flatten": False, "n_train": None, "n_test": None, "sequential": None, "perm_seed": 0,
    }


def test_synthetic_always_available():
    assert is_available("copy") == (True, "")
    assert is_available("mnist1d") == (True, "")


def test_mnist1d_generates_caches_and_standardises(isolated, monkeypatch):
    monkeypatch.setenv("SIGNALPROP_CACHE", str(isolated / "cache"))
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    s = load("mnist1d", n_train=300, n_test=100)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
    assert isinstance(s, Splits)
    x, y = s.train.tensors
    assert x.shape == (300, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert s.test.tensors[0].shape == (100, 40) and (s.num_classes, s.input_shape) == (10, (40,))
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    assert set(y.tolist()) == set(range(10))
    cached = list((isolated / "cache" / "mnist1d").glob("*.npz"))
    assert len(cached) == 1
    again = load("mnist1d", n_train=300, n_test=100)
    assert torch.equal(again.train.tensors[0], x)
    other = load("mnist1d", seed=1, n_train=300, n_test=100)
    assert not torch.equal(other.train.tensors[0], x)
    assert len(list((isolated / "cache" / "mnist1d").glob("*.npz"))) == 2


def test_mnist1d_regenerates_bad_cache(isolated, monkeypatch):
    monkeypatch.setenv("SIGNALPROP_CACHE", str(isolated / "cache"))
    first = load("mnist1d", n_train=50, n_test=10)
    (cached,) = (isolated / "cache" / "mnist1d").glob("*.npz")
    cached.write_bytes(b"garbage")
    assert torch.equal(load("mnist1d", n_train=50, n_test=10).train.tensors[0],
                       first.train.tensors[0])
