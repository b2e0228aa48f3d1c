"""Two interleaved spirals: a 2-D binary classification task."""

from __future__ import annotations

import math

import torch

from signalprop.data.options import non_negative_float, positive_float
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_spirals(
    n: int, gen: torch.Generator, *, noise: float, turns: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``c`` lies on ``r(t) = t``, ``angle(t) = 2*pi*turns*t + c*pi`` for ``t ~ U(0, 1)``.

    Returns x (n, 2) float32 plus isotropic Gaussian noise of std ``noise``, y (n,) int64 in
    {0, 1}, exactly balanced (up to one example) and shuffled.
    """
    y = (torch.randperm(n, generator=gen) % 2).to(torch.int64)
    t = torch.rand(n, generator=gen).sqrt()  # sqrt: uniform density along the arm
    angle = 2 * math.pi * turns * t + math.pi * y
    x = torch.stack([t * angle.cos(), t * angle.sin()], dim=1)
    x = x + noise * torch.randn(n, 2, generator=gen)
    return x.float(), y


def load_spirals(
    *, seed: int = 0, n_train: int = 1000, n_test: int = 1000, noise: float = 0.05,
    turns: float = 2.0,
) -> Splits:
    """Two interleaved spirals; options ``noise`` (std of added noise) and ``turns``."""
    noise = non_negative_float("noise", noise)
    turns = positive_float("turns", turns)
    return build(
        "spirals",
        lambda n, g: sample_spirals(n, g, noise=noise, turns=turns),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=2,
    )
