"""Shared fixtures: small deterministic datasets and single-threaded torch for fast tests."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from signalprop.threads import set_threads  # noqa: E402

set_threads(1)


@pytest.fixture
def blobs() -> tuple[TensorDataset, TensorDataset]:
    """A tiny 3-class classification problem (Gaussian blobs in 8 dimensions)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 2
    y = torch.randint(0, 3, (300,), generator=g)
    x = centers[y] + torch.randn(300, 8, generator=g)
    return TensorDataset(x[:240], y[:240]), TensorDataset(x[240:], y[240:])
