"""Finding MNIST / Fashion-MNIST in the usual layouts and loading them (synthetic files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signalprop.data import checksums, is_available, load, paths
from signalprop.data.checksums import FILES
from signalprop.errors import ConfigError, DatasetCorrupt, DatasetMissing


def test_search_order(isolated, monkeypatch):
    monkeypatch.setenv("SIGNALPROP_DATA", str(isolated / "sp"))
    home = isolated / "home"
    assert paths.search_paths("fashion-mnist") == [
        isolated / "sp" / "fashion-mnist",
        isolated / "sp",
        home / ".cache" / "signalprop" / "fashion-mnist",
        isolated / "system" / "fashion-mnist",
        isolated / "sp" / "FashionMNIST" / "raw",
        home / ".cache" / "signalprop" / "FashionMNIST" / "raw",
        home / "data" / "FashionMNIST" / "raw",
        paths.Path("data") / "FashionMNIST" / "raw",
    ]


def test_missing_gives_install_hint(isolated):
    with pytest.raises(DatasetMissing) as info:
        load("fashion-mnist")
    message = str(info.value)
    assert message.startswith("Fashion-MNIST not found; looked in: ")
    assert str(isolated / "system" / "fashion-mnist") in message
    assert "make data" in message and "SIGNALPROP_DATA" in message
    ok, reason = is_available("fashion-mnist")
    assert not ok and reason == message
    with pytest.raises(DatasetMissing, match=r"mnist\.npz"):
        load("mnist")


@pytest.mark.parametrize(
    "where",
    ["sp/mnist", "sp", "home/.cache/signalprop/mnist", "system/mnist", "home/data/MNIST/raw",
     "cwd/data/MNIST/raw", "sp/MNIST/raw"],
)
def test_layouts_are_found(isolated, monkeypatch, fake_set, use_checksums, where):
    monkeypatch.setenv("SIGNALPROP_DATA", str(isolated / "sp"))
    use_checksums("mnist", fake_set.checksums)
    fake_set.write(isolated / where)
    assert is_available("mnist") == (True, "")
    splits = load("mnist")
    x, y = splits.test.tensors
    np.testing.assert_array_equal(y.numpy(), fake_set.arrays[FILES[3]])
    assert x.shape == (6, 1, 28, 28)


def test_uncompressed_torchvision_raw(isolated, fake_set, use_checksums):
    use_checksums("mnist", fake_set.checksums)
    fake_set.write(isolated / "home" / "data" / "MNIST" / "raw", gz=False)
    assert len(load("mnist").train) == 12


def test_first_location_wins(isolated, monkeypatch, make_fake_set, use_checksums):
    first, second = make_fake_set(seed=1), make_fake_set(seed=2, n_train=20)
    monkeypatch.setenv("SIGNALPROP_DATA", str(isolated / "sp"))
    first.write(isolated / "sp" / "fashion-mnist")
    second.write(isolated / "system" / "fashion-mnist")
    use_checksums("fashion-mnist", first.checksums)
    assert len(load("fashion-mnist").train) == 12


def test_keras_layout(isolated, fake_set, monkeypatch):
    path = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    a = fake_set.arrays
    np.savez(path, x_train=a[FILES[0]], y_train=a[FILES[1]], x_test=a[FILES[2]],
             y_test=a[FILES[3]])
    with pytest.raises(DatasetCorrupt, match=f"mnist.npz fails.*{checksums.KERAS_MNIST_SHA256}"):
        load("mnist")
    monkeypatch.setattr(checksums, "KERAS_MNIST_SHA256", checksums.sha256_file(path))
    splits = load("mnist", flatten=True)
    assert splits.input_shape == (784,) and len(splits.train) == 12


def test_keras_bad_shapes(isolated, monkeypatch):
    path = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    z = np.zeros((3, 28, 28), np.uint8)
    np.savez(path, x_train=z[:, :10], y_train=np.zeros(3), x_test=z, y_test=np.zeros(3, int))
    monkeypatch.setattr(checksums, "KERAS_MNIST_SHA256", checksums.sha256_file(path))
    with pytest.raises(DatasetCorrupt, match=r"train images have shape \(3, 10, 28\)"):
        load("mnist")


def test_corrupt_installed_file(isolated, fake_set, use_checksums):
    directory = fake_set.write(isolated / "system" / "mnist")
    use_checksums("mnist", fake_set.checksums)
    bad = directory / f"{FILES[0]}.gz"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(DatasetCorrupt) as info:
        load("mnist")
    assert str(bad) in str(info.value)
    assert fake_set.checksums[FILES[0]].md5 in str(info.value)


def test_normalisation_and_options(isolated, fake_set, use_checksums):
    fake_set.write(isolated / "system" / "mnist")
    use_checksums("mnist", fake_set.checksums)
    splits = load("mnist")
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-3
    raw = fake_set.arrays[FILES[0]].astype(np.float64) / 255
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(x[:, 0].numpy(), expected, atol=1e-5)
    assert (splits.task, splits.num_classes, splits.output_shape) == ("classification", 10, ())
    small = load("mnist", n_train=5, n_test=2, flatten=True)
    assert small.train.tensors[0].shape == (5, 784) and len(small.test) == 2
    torch.testing.assert_close(small.train.tensors[0], x[:5].flatten(1))  # train-set stats
    seq = load("mnist", sequential="pixel")
    assert seq.input_shape == (784, 1)
    torch.testing.assert_close(seq.train.tensors[0][:, :, 0], x.flatten(1))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"flatten": True, "sequential": "pixel"}, "exclusive"),
        ({"sequential": "rows"}, "sequential='rows'.*'pixel', 'permuted'"),
        ({"n_train": 0}, "n_train=0"),
        ({"flatten": "yes"}, "flatten='yes'"),
    ],
)
def test_bad_options(isolated, fake_set, use_checksums, options, match):
    fake_set.write(isolated / "system" / "mnist")
    use_checksums("mnist", fake_set.checksums)
    with pytest.raises(ConfigError, match=match):
        load("mnist", **options)


def test_gzip_stream_damaged_in_the_middle(isolated, fake_set, use_checksums):
    directory = fake_set.write(isolated / "system" / "mnist")
    use_checksums("mnist", fake_set.checksums)
    path = directory / f"{FILES[0]}.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetCorrupt, match=str(path)):
        load("mnist")
