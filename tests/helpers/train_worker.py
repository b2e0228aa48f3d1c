"""A training run used by the kill-and-resume tests: ``python train_worker.py RUN_DIR DELAY``."""

from __future__ import annotations

import sys
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from signalprop.learning.base import LearningRule
from signalprop.train import TrainConfig, fit, seed_everything


class Slow(LearningRule):
    """Sleeps after each step so that a kill lands mid-training."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def after_step(self, model: nn.Module) -> dict[str, float]:
        time.sleep(self.delay)
        return {}


def main() -> None:
    run_dir, delay = sys.argv[1], float(sys.argv[2])
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] > 0).long()
    seed_everything(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    cfg = TrainConfig(epochs=30, batch_size=32, lr=1e-2, log_every=1, grad_norms=True)
    fit(model, TensorDataset(x, y), TensorDataset(x, y), cfg, run_dir, seed=3,
        rules=(Slow(delay),), progress=False)


if __name__ == "__main__":
    main()
