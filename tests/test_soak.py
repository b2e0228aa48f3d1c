"""Soak test (slow): 20,000 steps with diagnostics on; memory must not grow."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from signalprop.learning.base import LearningRule
from signalprop.storage import read_jsonl
from signalprop.train import TrainConfig, fit, seed_everything


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler(LearningRule):
    """Every 500 steps: sample RSS and check the metrics file parses completely."""

    def __init__(self, metrics_path) -> None:
        self.metrics_path = metrics_path
        self.steps = 0
        self.rss: list[int] = []
        self.parsed: list[int] = []

    def after_step(self, model: nn.Module) -> dict[str, float]:
        self.steps += 1
        if self.steps % 500 == 0:
            self.rss.append(rss_bytes())
            lines = self.metrics_path.read_text().splitlines()
            assert len(read_jsonl(self.metrics_path)) == len(lines)
            self.parsed.append(len(lines))
        return {}


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_twenty_thousand_steps_memory_flat(tmp_path):
    torch.set_num_threads(1)
    seed_everything(0)
    x = torch.randn(640, 16)
    y = (x.sum(1) > 0).long()
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(16, 16), nn.Tanh())],
                          nn.Linear(16, 2))
    sampler = Sampler(tmp_path / "metrics.jsonl")
    cfg = TrainConfig(epochs=1000, batch_size=32, lr=1e-3, log_every=5, grad_norms=True)
    fit(model, TensorDataset(x, y), TensorDataset(x, y), cfg, tmp_path, rules=(sampler,),
        progress=False)
    assert sampler.steps == 20_000
    warm = sampler.rss[4:]  # after allocator warm-up
    growth = max(warm) - warm[0]
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over the run"
    assert sampler.parsed == sorted(sampler.parsed)
    assert len([r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"]) == 1000
