"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015)."""

from __future__ import annotations

import torch

from signalprop.data.options import positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_adding(n: int, gen: torch.Generator, *, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel 0 holds ``T`` values ``~ U[0, 1]``; channel 1 marks exactly two steps, one in
    ``[0, T//2)`` and one in ``[T//2, T)``. The target is the sum of the two marked values.

    Returns x (n, T, 2) float32 and y (n, 1) float32 (mean 1.0).
    """
    half = T // 2
    values = torch.rand(n, T, generator=gen)
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, T, (n,), generator=gen)
    markers = torch.zeros(n, T)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second]).unsqueeze(1)
    return torch.stack([values, markers], dim=2), y


def load_adding(*, seed: int = 0, n_train: int = 10000, n_test: int = 1000, T: int = 100) -> Splits:
    """Adding problem of sequence length ``T`` (>= 2); a regression task."""
    T = positive_int("T", T, minimum=2)
    return build(
        "adding", lambda n, g: sample_adding(n, g, T=T),
        seed=seed, n_train=n_train, n_test=n_test, task="regression",
    )
