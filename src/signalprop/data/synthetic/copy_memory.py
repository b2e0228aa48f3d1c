"""The copy-memory task (Arjovsky, Shah & Bengio 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from signalprop.data.options import positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build


def sample_copy(
    n: int, gen: torch.Generator, *, n_symbols: int, alphabet: int, delay: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence is ``n_symbols`` random symbols, ``delay`` blanks, a delimiter, then
    ``n_symbols`` blanks during which the model must reproduce the symbols in order.

    Classes: symbols ``0..alphabet-1``, blank ``alphabet``, delimiter ``alphabet + 1`` (input
    only). Returns x (n, T_total, alphabet + 2) one-hot float32 and y (n, T_total) int64
    that is blank except for the last ``n_symbols`` steps, where
    ``T_total = 2 * n_symbols + delay + 1``.
    """
    blank, delimiter = alphabet, alphabet + 1
    total = 2 * n_symbols + delay + 1
    symbols = torch.randint(0, alphabet, (n, n_symbols), generator=gen)
    tokens = torch.full((n, total), blank, dtype=torch.int64)
    tokens[:, :n_symbols] = symbols
    tokens[:, n_symbols + delay] = delimiter
    targets = torch.full((n, total), blank, dtype=torch.int64)
    targets[:, total - n_symbols :] = symbols
    return F.one_hot(tokens, alphabet + 2).float(), targets


def load_copy(
    *, seed: int = 0, n_train: int = 10000, n_test: int = 1000, n_symbols: int = 10,
    alphabet: int = 8, delay: int = 100,
) -> Splits:
    """Copy memory; options ``n_symbols``, ``alphabet`` (symbol categories) and ``delay``."""
    n_symbols = positive_int("n_symbols", n_symbols)
    alphabet = positive_int("alphabet", alphabet)
    delay = positive_int("delay", delay, minimum=0)
    return build(
        "copy",
        lambda n, g: sample_copy(n, g, n_symbols=n_symbols, alphabet=alphabet, delay=delay),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=alphabet + 1,
    )
