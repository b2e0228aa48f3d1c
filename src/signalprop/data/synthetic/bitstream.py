"""Bit stream: at every step, output the bit seen ``k`` steps earlier."""

from __future__ import annotations

import torch

from signalprop.data.options import positive_int
from signalprop.data.splits import Splits
from signalprop.data.synthetic.common import build
from signalprop.errors import ConfigError

IGNORE_INDEX = -100  # the default ignore_index of torch.nn.CrossEntropyLoss


def sample_bitstream(
    n: int, gen: torch.Generator, *, T: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fair random bits; the target at step ``t >= k`` is the input bit at ``t - k`` and
    ``-100`` (ignored by cross-entropy) for ``t < k``.

    Returns x (n, T, 1) float32 in {0, 1} and y (n, T) int64.
    """
    bits = torch.randint(0, 2, (n, T), generator=gen)
    y = torch.full((n, T), IGNORE_INDEX, dtype=torch.int64)
    y[:, k:] = bits[:, : T - k]
    return bits.float().unsqueeze(2), y


def load_bitstream(
    *, seed: int = 0, n_train: int = 10000, n_test: int = 1000, T: int = 50, k: int = 5
) -> Splits:
    """Bit stream of length ``T`` recalled with lag ``k`` (1 <= k < T)."""
    T = positive_int("T", T, minimum=2)
    k = positive_int("k", k)
    if k >= T:
        raise ConfigError(f"option k={k} must be smaller than T={T}; lower k or raise T")
    return build(
        "bitstream", lambda n, g: sample_bitstream(n, g, T=T, k=k),
        seed=seed, n_train=n_train, n_test=n_test, num_classes=2,
    )
