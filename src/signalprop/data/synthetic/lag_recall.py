"""Fixed-lag recall: name the symbol presented exactly ``T`` steps before the query.

Unlike cue recall, the remembered step carries no marker and is not the first: every step holds
a random symbol, ``lead`` of them come before the one to recall, and the query is the only
marked step. The model cannot keep "the first input" or "the marked input"; it has to keep what
it saw ``T`` steps before the query, which is what "learns a dependency ``T`` steps in the past"
asks of a memory.
"""

from __future__ import annotations

import torch

from signalprop.data.options import non_negative_float, positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_lag_recall(
    n: int, gen: torch.Generator, *, T: int, classes: int, lead: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps ``0 .. lead + T - 1`` each hold a one-hot symbol (channels ``0..classes-1``) drawn
    uniformly; the label is the symbol at step ``lead``, exactly ``T`` steps before the query
    at the last step ``lead + T``, which holds only the marker (channel ``classes``). Gaussian
    noise of std ``noise`` is added to every channel of every step.

    Returns x (n, lead + T + 1, classes + 1) float32 and y (n,) int64.
    """
    length = lead + T + 1
    symbols = torch.randint(0, classes, (n, length - 1), generator=gen)
    x = torch.zeros(n, length, classes + 1)
    x[:, :-1].scatter_(2, symbols.unsqueeze(2), 1.0)
    x[:, -1, classes] = 1.0
    if noise > 0:
        x += noise * torch.randn(x.shape, generator=gen)
    return x, symbols[:, lead].clone()


def load_lag_recall(
    *, seed: int = 0, n_train: int = 10000, n_test: int = 1000, T: int = 100, classes: int = 8,
    lead: int = 10, noise: float = 0.0
) -> Splits:
    """Recall the symbol ``T`` steps before the query among ``classes`` (chance
    ``1/classes``), with ``lead`` distractor steps before it and ``T - 1`` after it.

    Each split has its own generator stream and ``classes^(lead + T)`` possible sequences, so
    test sequences are (with overwhelming probability) never seen in training.
    """
    T = positive_int("T", T)
    classes = positive_int("classes", classes, minimum=2)
    lead = positive_int("lead", lead, minimum=0)
    noise = non_negative_float("noise", noise)
    return build(
        "lag-recall",
        lambda n, g: sample_lag_recall(n, g, T=T, classes=classes, lead=lead, noise=noise),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=classes,
    )
