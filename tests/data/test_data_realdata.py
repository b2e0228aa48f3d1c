"""The installed Fashion-MNIST (skipped unless found): sizes, classes, checksums, views."""

from __future__ import annotations

import pytest
import torch

from signalprop.data import checksums, is_available, load, paths
from signalprop.data.checksums import expected_for
from signalprop.data.idx import read_idx
from signalprop.data.sequences import permutation

AVAILABLE, REASON = is_available("fashion-mnist")
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not AVAILABLE, reason=f"Fashion-MNIST is not installed: {REASON}"),
]


@pytest.fixture(scope="module")
def fashion():
    return load("fashion-mnist")


def test_sizes_and_classes(fashion):
    assert len(fashion.train) == 60000 and len(fashion.test) == 10000
    assert fashion.num_classes == 10 and fashion.input_shape == (1, 28, 28)
    for dataset in (fashion.train, fashion.test):
        y = dataset.tensors[1]
        assert torch.equal(y.unique(), torch.arange(10))
    x = fashion.train.tensors[0]
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3


def test_checksums_verify():
    found = paths.locate("fashion-mnist")
    assert found is not None and found.idx is not None
    for stem, path in found.idx.items():
        expected = expected_for("fashion-mnist", stem)
        read_idx(path, expected)
        assert checksums.is_verified(path, expected)


def test_sequential_views(fashion):
    images = fashion.test.tensors[0]
    pixel = load("fashion-mnist", sequential="pixel", n_train=100, n_test=50)
    perm = load("fashion-mnist", sequential="permuted", n_train=100, n_test=50)
    assert pixel.input_shape == (784, 1) and perm.input_shape == (784, 1)
    torch.testing.assert_close(pixel.test.tensors[0][:, :, 0], images[:50].flatten(1))
    order = permutation(784, 0)
    assert sorted(order.tolist()) == list(range(784))
    torch.testing.assert_close(perm.test.tensors[0], pixel.test.tensors[0][:, order])
    torch.testing.assert_close(perm.train.tensors[0], pixel.train.tensors[0][:, order])
    again = load("fashion-mnist", sequential="permuted", n_train=100, n_test=50)
    assert torch.equal(again.train.tensors[0], perm.train.tensors[0])
