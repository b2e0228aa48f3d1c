"""Statistics of the seeded synthetic tasks."""

from __future__ import annotations

import pytest
import torch

from signalprop.data import load
from signalprop.errors import ConfigError

SYNTHETIC = ["spirals", "copy", "adding", "delayed-recall", "cue-recall", "lag-recall",
             "bitstream"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_seeded_determinism(name):
    a, b = load(name, seed=3, n_train=64, n_test=32), load(name, seed=3, n_train=64, n_test=32)
    c = load(name, seed=4, n_train=64, n_test=32)
    for x, y in zip(a.train.tensors, b.train.tensors, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert not torch.equal(a.train.tensors[0][:32], a.test.tensors[0])  # different streams
    assert len(a.train) == 64 and len(a.test) == 32
    assert a.input_shape == tuple(a.train.tensors[0].shape[1:])
    assert a.output_shape == tuple(a.train.tensors[1].shape[1:])


def test_spirals():
    s = load("spirals", n_train=1000, n_test=10, noise=0.0, turns=1.0)
    x, y = s.train.tensors
    assert x.shape == (1000, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert (s.task, s.num_classes, s.output_shape) == ("classification", 2, ())
    assert abs(y.float().mean().item() - 0.5) <= 0.001
    radius = x.norm(dim=1)
    assert radius.max() <= 1.0 + 1e-6
    # noise-free: a point on arm c at radius r has angle 2*pi*r + c*pi (mod 2*pi)
    angle = torch.atan2(x[:, 1], x[:, 0])
    predicted = 2 * torch.pi * radius + torch.pi * y
    diff = torch.remainder(angle - predicted + torch.pi, 2 * torch.pi) - torch.pi
    assert diff.abs().max() < 1e-3
    noisy = load("spirals", n_train=1000, n_test=10, noise=0.5).train.tensors[0]
    assert noisy.norm(dim=1).max() > 1.2


def test_copy_layout():
    s = load("copy", n_train=500, n_test=10, n_symbols=4, alphabet=5, delay=7)
    x, y = s.train.tensors
    total = 4 + 7 + 1 + 4
    assert x.shape == (500, total, 7) and y.shape == (500, total)
    assert (s.num_classes, s.output_shape, s.input_shape) == (6, (total,), (total, 7))
    assert torch.equal(x.sum(2), torch.ones(500, total))  # one-hot
    tokens = x.argmax(2)
    blank, delimiter = 5, 6
    assert (tokens[:, :4] < 5).all()
    assert (tokens[:, 4:11] == blank).all() and (tokens[:, 11] == delimiter).all()
    assert (tokens[:, 12:] == blank).all()
    assert (y[:, :12] == blank).all()
    assert torch.equal(y[:, 12:], tokens[:, :4])
    counts = torch.bincount(tokens[:, :4].flatten(), minlength=5).float()
    assert (counts / counts.sum() - 0.2).abs().max() < 0.03


def test_copy_defaults():
    s = load("copy", n_train=8, n_test=8)
    assert s.input_shape == (10 + 100 + 1 + 10, 10) and s.num_classes == 9


def test_adding():
    s = load("adding", n_train=4000, n_test=10, T=30)
    x, y = s.train.tensors
    assert x.shape == (4000, 30, 2) and y.shape == (4000, 1) and y.dtype == torch.float32
    assert (s.task, s.num_classes, s.output_shape) == ("regression", None, (1,))
    markers = x[..., 1]
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, :15].sum(1) == 1).all() and (markers[:, 15:].sum(1) == 1).all()
    torch.testing.assert_close(y[:, 0], (x[..., 0] * markers).sum(1))
    assert abs(y.mean().item() - 1.0) < 0.03
    assert 0 <= x[..., 0].min() and x[..., 0].max() <= 1
    assert load("adding", n_train=2, n_test=2).input_shape == (100, 2)


def test_delayed_recall():
    s = load("delayed-recall", n_train=2000, n_test=10, T=9)
    x, y = s.train.tensors
    assert x.shape == (2000, 10, 1) and y.shape == (2000,) and y.dtype == torch.int64
    assert set(x[:, 0, 0].unique().tolist()) == {-1.0, 1.0}
    assert (x[:, 1:] == 0).all()
    assert torch.equal(y, (x[:, 0, 0] > 0).long())
    assert abs(y.float().mean().item() - 0.5) < 0.05
    noisy = load("delayed-recall", n_train=2000, n_test=10, T=9, noise=0.5).train.tensors
    assert abs(noisy[0][:, 1:].std().item() - 0.5) < 0.02
    assert torch.equal(noisy[1], (noisy[0][:, 0, 0] > 0).long())
    assert set(noisy[0][:, 0, 0].unique().tolist()) == {-1.0, 1.0}


def test_cue_recall():
    s = load("cue-recall", n_train=2000, n_test=500, T=30, classes=8)
    x, y = s.train.tensors
    assert x.shape == (2000, 31, 9) and y.dtype == torch.int64
    assert (s.task, s.num_classes, s.output_shape) == ("classification", 8, ())
    assert torch.equal(x[:, 0, :8].argmax(1), y)  # the cue is the label
    assert (x[:, 0, 8] == 1).all() and (x[:, 1:, 8] == 0).all()  # the marker: step 0 only
    assert (x[:, :, :8].sum(2) == 1).all()  # one symbol per step, distractors at every step
    counts = torch.bincount(x[:, 1:, :8].argmax(2).flatten(), minlength=8).float()
    assert (counts / counts.sum() - 1 / 8).abs().max() < 0.01  # uniform distractors
    assert abs(torch.bincount(y, minlength=8).float().std().item() / 250) < 0.15
    test = s.test.tensors[0]
    seen = {tuple(row.flatten().tolist()) for row in x}
    assert not any(tuple(row.flatten().tolist()) in seen for row in test)  # unseen in training
    noisy = load("cue-recall", n_train=500, n_test=10, T=30, noise=0.3).train.tensors[0]
    residual = noisy - noisy.round()
    assert abs(residual.std().item() - 0.3) < 0.05


def test_bitstream():
    s = load("bitstream", n_train=1000, n_test=10, T=20, k=3)
    x, y = s.train.tensors
    assert x.shape == (1000, 20, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert (s.num_classes, s.output_shape) == (2, (20,))
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert (y[:, :3] == -100).all()
    assert torch.equal(y[:, 3:], x[:, :17, 0].long())
    assert abs(x.mean().item() - 0.5) < 0.02
    loss = torch.nn.functional.cross_entropy(torch.zeros(1000, 2, 20), y)
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("bitstream", {"T": 5, "k": 5}, "k=5 must be smaller than T=5"),
        ("adding", {"T": 1}, "T=1"),
        ("spirals", {"noise": -1.0}, "noise=-1.0"),
        ("spirals", {"turns": 0}, "turns=0"),
        ("copy", {"alphabet": 0}, "alphabet=0"),
        ("delayed-recall", {"n_train": 2.5}, "n_train=2.5"),
        ("cue-recall", {"classes": 1}, "classes=1"),
    ],
)
def test_invalid_values(name, options, match):
    with pytest.raises(ConfigError, match=match):
        load(name, **options)


def test_lag_recall_labels_the_unmarked_symbol_exactly_t_steps_before_the_query():
    s = load("lag-recall", n_train=400, n_test=50, T=12, classes=8, lead=5)
    x, y = s.train.tensors
    assert x.shape == (400, 18, 9) and s.num_classes == 8
    assert torch.equal(x[:, 5, :8].argmax(1), y)  # step lead = query step - T
    assert torch.equal(x[:, -1], torch.eye(9)[8].expand(400, 9))  # only the query is marked
    assert x[:, :-1, 8].abs().sum() == 0
    assert not torch.equal(x[:, 0, :8].argmax(1), y)  # the first input is not the answer
    counts = torch.bincount(y, minlength=8).float()
    assert counts.min() > 20  # every class appears
    xt = s.test.tensors[0]
    seen = {tuple(r.argmax(1).tolist()) for r in x[:, :-1, :8]}
    assert not any(tuple(r.argmax(1).tolist()) in seen for r in xt[:, :-1, :8])


def test_delayed_recall_cue_layout_has_distractors_and_noise_at_every_step():
    s = load("delayed-recall", n_train=400, n_test=50, T=6, classes=8, distractors=8)
    x, y = s.train.tensors
    assert x.shape == (400, 7, 16) and s.num_classes == 8 and set(y.tolist()) == set(range(8))
    assert torch.equal(x[:, 0, :8].argmax(-1), y) and (x[:, 0].sum(-1) == 1).all()
    assert (x[:, 1:, :8] == 0).all() and (x[:, 1:, 8:].sum(-1) == 1).all()
    noisy = load("delayed-recall", n_train=400, n_test=50, T=6, classes=8, distractors=8,
                 noise=0.1)
    xn, yn = noisy.train.tensors
    assert abs((xn - xn.round()).std().item() - 0.1) < 0.01  # on every channel and step
    assert torch.equal(xn[:, 0, :8].argmax(-1), yn)
    test = noisy.test.tensors[0]
    assert not (xn[:, None] == test[None]).flatten(2).all(-1).any()  # unseen test sequences
