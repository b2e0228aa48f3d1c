"""Cue recall among distractors: name the class shown at step 0 after ``T`` distractor steps."""

from __future__ import annotations

import torch

from signalprop.data.options import non_negative_float, positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_cue_recall(
    n: int, gen: torch.Generator, *, T: int, classes: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Channels ``0..classes-1`` hold a one-hot symbol at every step: the cue (the label) at step
    0, then ``T`` distractor symbols drawn uniformly from the same alphabet. Channel ``classes``
    is a marker, 1 at step 0 and 0 afterwards. Gaussian noise of std ``noise`` is added to every
    channel of every step. The label is read after the last step.

    Returns x (n, T + 1, classes + 1) float32 and y (n,) int64.
    """
    y = torch.randint(0, classes, (n,), generator=gen)
    symbols = torch.randint(0, classes, (n, T + 1), generator=gen)
    symbols[:, 0] = y
    x = torch.zeros(n, T + 1, classes + 1)
    x.scatter_(2, symbols.unsqueeze(2), 1.0)
    x[:, 0, classes] = 1.0
    if noise > 0:
        x += noise * torch.randn(x.shape, generator=gen)
    return x, y


def load_cue_recall(
    *, seed: int = 0, n_train: int = 10000, n_test: int = 1000, T: int = 100, classes: int = 8,
    noise: float = 0.0
) -> Splits:
    """Recall one of ``classes`` cues across ``T`` distractor steps (chance ``1/classes``).

    With ``classes=8`` the distractors alone make ``8^T`` sequences per cue, so test sequences
    are (with overwhelming probability) never seen in training; a distinct generator stream
    draws each split.
    """
    T = positive_int("T", T)
    classes = positive_int("classes", classes, minimum=2)
    noise = non_negative_float("noise", noise)
    return build(
        "cue-recall", lambda n, g: sample_cue_recall(n, g, T=T, classes=classes, noise=noise),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=classes,
    )
