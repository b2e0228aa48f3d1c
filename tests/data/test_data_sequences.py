"""Pixel-by-pixel and permuted sequence views of image Splits."""

from __future__ import annotations

import torch

from signalprop.data import sequential_view
from signalprop.data.sequences import permutation
from signalprop.data.splits import make_splits


def image_splits(channels: int = 1) -> object:
    x_train = torch.arange(5 * channels * 4 * 3, dtype=torch.float32).reshape(5, channels, 4, 3)
    x_test = -x_train[:2]
    y = torch.arange(5)
    return make_splits("img", (x_train, y), (x_test, y[:2]), num_classes=5)


def test_pixel_view():
    s = sequential_view(image_splits(), "pixel")
    x = s.train.tensors[0]
    assert x.shape == (5, 12, 1) and s.input_shape == (12, 1)
    assert torch.equal(x[1, :, 0], torch.arange(12.0, 24.0))
    assert (s.name, s.num_classes, s.task) == ("img-pixel", 5, "classification")
    assert torch.equal(s.train.tensors[1], torch.arange(5))


def test_channels_become_features():
    s = sequential_view(image_splits(channels=3), "pixel")
    x = s.train.tensors[0]
    assert x.shape == (5, 12, 3)
    assert torch.equal(x[0, 1], torch.tensor([1.0, 13.0, 25.0]))


def test_permuted_view_same_for_train_and_test():
    base = image_splits()
    s = sequential_view(base, "permuted", perm_seed=7)
    perm = permutation(12, 7)
    assert sorted(perm.tolist()) == list(range(12)) and not torch.equal(perm, torch.arange(12))
    pixel = sequential_view(base, "pixel")
    assert torch.equal(s.train.tensors[0], pixel.train.tensors[0][:, perm])
    assert torch.equal(s.test.tensors[0], pixel.test.tensors[0][:, perm])
    again = sequential_view(base, "permuted", perm_seed=7)
    assert torch.equal(again.train.tensors[0], s.train.tensors[0])
    other = sequential_view(base, "permuted", perm_seed=8)
    assert not torch.equal(other.train.tensors[0], s.train.tensors[0])


def test_permutation_ignores_global_rng():
    torch.manual_seed(123)
    a = permutation(784, 0)
    torch.manual_seed(456)
    torch.rand(10)
    assert torch.equal(a, permutation(784, 0))


def test_flat_inputs():
    x = torch.randn(4, 10)
    s = sequential_view(make_splits("f", (x, torch.zeros(4)), (x, torch.zeros(4))), "pixel")
    assert s.input_shape == (10, 1)
