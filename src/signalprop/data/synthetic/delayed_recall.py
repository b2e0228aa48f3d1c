"""Delayed recall: remember the sign of a single cue over ``T`` silent steps."""

from __future__ import annotations

import torch

from signalprop.data.options import non_negative_float, positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_delayed_recall(
    n: int, gen: torch.Generator, *, T: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 0 holds a cue of -1 or +1; steps ``1..T`` hold zeros, or Gaussian noise of std
    ``noise``. The label, read after the last step, is 0 for a -1 cue and 1 for +1.

    Returns x (n, T + 1, 1) float32 and y (n,) int64.
    """
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.zeros(n, T + 1, 1)
    if noise > 0:
        x[:, 1:, 0] = noise * torch.randn(n, T, generator=gen)
    x[:, 0, 0] = 2.0 * y - 1.0
    return x, y


def load_delayed_recall(
    *, seed: int = 0, n_train: int = 10000, n_test: int = 1000, T: int = 50, noise: float = 0.0
) -> Splits:
    """Delayed recall over ``T`` steps with distractor noise of std ``noise``."""
    T = positive_int("T", T)
    noise = non_negative_float("noise", noise)
    return build(
        "delayed-recall", lambda n, g: sample_delayed_recall(n, g, T=T, noise=noise),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=2,
    )
