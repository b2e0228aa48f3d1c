"""Delayed recall: remember a cue shown at step 0 over ``T`` later steps.

Two layouts. With ``classes=2`` and no distractors (the default), one channel holds a cue of -1
or +1 at step 0 and zeros (or noise) afterwards. With ``classes > 2`` or ``distractors > 0``,
channels ``0..classes-1`` hold the cue one-hot at step 0 only, channels
``classes..classes+distractors-1`` hold a random one-hot distractor symbol at every later step,
and Gaussian noise is added to every channel of every step: the net must keep the cue while
random input arrives at every step, and (noise being continuous) no test sequence is a
training sequence.
"""

from __future__ import annotations

import torch

from signalprop.data.options import non_negative_float, positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_delayed_recall(
    n: int, gen: torch.Generator, *, T: int, noise: float, classes: int = 2,
    distractors: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sign layout: step 0 holds -1 or +1, steps ``1..T`` zeros or Gaussian noise of std
    ``noise``; x (n, T + 1, 1). The cue layout (``classes > 2`` or ``distractors > 0``): see
    the module docstring; x (n, T + 1, classes + distractors). y (n,) int64: the cue's class.
    """
    y = torch.randint(0, classes, (n,), generator=gen)
    if classes == 2 and distractors == 0:
        x = torch.zeros(n, T + 1, 1)
        if noise > 0:
            x[:, 1:, 0] = noise * torch.randn(n, T, generator=gen)
        x[:, 0, 0] = 2.0 * y - 1.0
        return x, y
    x = torch.zeros(n, T + 1, classes + distractors)
    x[torch.arange(n), 0, y] = 1.0
    if distractors:
        symbols = torch.randint(0, distractors, (n, T), generator=gen)
        x[:, 1:, classes:].scatter_(2, symbols.unsqueeze(2), 1.0)
    if noise > 0:
        x += noise * torch.randn(x.shape, generator=gen)
    return x, y


def load_delayed_recall(
    *, seed: int = 0, n_train: int = 10000, n_test: int = 1000, T: int = 50, noise: float = 0.0,
    classes: int = 2, distractors: int = 0,
) -> Splits:
    """Delayed recall of one of ``classes`` cues over ``T`` steps, with ``distractors`` random
    distractor symbols and noise of std ``noise``."""
    T = positive_int("T", T)
    noise = non_negative_float("noise", noise)
    classes = positive_int("classes", classes, minimum=2)
    distractors = positive_int("distractors", distractors, minimum=0)
    return build(
        "delayed-recall", lambda n, g: sample_delayed_recall(
            n, g, T=T, noise=noise, classes=classes, distractors=distractors),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=classes,
    )
