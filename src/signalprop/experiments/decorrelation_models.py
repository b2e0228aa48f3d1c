"""The models and measurements shared by ``decorrelation-speedup`` and
``decorrelation-approximate`` (Ahmad, "Correlations Are Ruining Your Gradient Descent",
arXiv 2407.10780): a LeakyReLU MLP and a small CNN, plain or with every layer's input
decorrelated (``z = R x`` in front of each layer, R = I at init)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from signalprop.config import positive
from signalprop.data.splits import Splits
from signalprop.errors import ConfigError
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row
from signalprop.experiments.registry import Model
from signalprop.experiments.samples import load_sample
from signalprop.experiments.stats import Side
from signalprop.experiments.study import Data
from signalprop.learning.registry import LearningConfig, build_rules
from signalprop.train import TrainConfig, epoch_records

PAPER = "Ahmad 2024, Correlations Are Ruining Your Gradient Descent (arXiv 2407.10780)"


@dataclass(frozen=True)
class ModelConfig:
    """MLP: ``depth`` hidden LeakyReLU layers of ``width``; CNN: two conv+pool stages."""

    width: int = 256
    depth: int = 3
    channels: tuple[int, ...] = (8, 16)
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        positive("model.width", self.width)
        positive("model.depth", self.depth)
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError(f"model.channels must be positive integers, got {self.channels!r}")


def decor_train() -> TrainConfig:
    """Both MLP/CNN decorrelation experiments: 10 epochs of 256, Adam 1e-3 before tuning."""
    return TrainConfig(epochs=10, batch_size=256, lr=1e-3, log_every=20)


def decor_learning() -> LearningConfig:
    """Backprop with the normalised decorrelation rule at decorrelation lr 1e-3."""
    return LearningConfig(rule="bp", decorrelation="normalised", decor_lr=1e-3)


def make_mlp(in_features: int, classes: int, cfg: ModelConfig) -> nn.Sequential:
    """``depth`` x (Linear, LeakyReLU) then a Linear head; inputs are flattened."""
    layers: list[nn.Module] = [nn.Flatten()]
    features = in_features
    for _ in range(cfg.depth):
        layers += [nn.Linear(features, cfg.width), nn.LeakyReLU(cfg.negative_slope)]
        features = cfg.width
    layers.append(nn.Linear(features, classes))
    return nn.Sequential(*layers)


def make_cnn(input_shape: tuple[int, ...], classes: int, cfg: ModelConfig) -> nn.Sequential:
    """Conv3x3-LeakyReLU-MaxPool2 stages, then Linear(width)-LeakyReLU-Linear.

    A 1-D input (MNIST-1D fallback, shape ``(L,)``) is treated as a ``1 x L x 1`` image with
    ``3 x 1`` kernels.
    """
    if len(input_shape) == 1:
        channels, height, width = 1, input_shape[0], 1
    else:
        channels, height, width = input_shape
    kernel = (3, 3) if width > 1 else (3, 1)
    pad = (1, 1) if width > 1 else (1, 0)
    pool = (2, 2) if width > 1 else (2, 1)
    layers: list[nn.Module] = [nn.Flatten(), nn.Unflatten(1, (channels, height, width))]
    for out in cfg.channels:
        layers += [nn.Conv2d(channels, out, kernel, padding=pad),
                   nn.LeakyReLU(cfg.negative_slope), nn.MaxPool2d(pool)]
        channels, height, width = out, height // pool[0], width // pool[1]
    layers += [nn.Flatten(), nn.Linear(channels * height * width, cfg.width),
               nn.LeakyReLU(cfg.negative_slope), nn.Linear(cfg.width, classes)]
    return nn.Sequential(*layers)


def load(ctx: RunContext, cfg: Data, flatten: bool) -> Splits:
    """``cfg``'s images (flat for the MLP), MNIST-1D when they are missing."""
    options: dict[str, Any] = {"n_train": cfg.n_train, "n_test": cfg.n_test}
    if cfg.name in ("fashion-mnist", "mnist"):
        options["flatten"] = flatten
    return ctx.load_data(cfg.name, fallback="mnist1d", **options)


def network(arch: str, splits: Splits, cfg: ModelConfig) -> nn.Module:
    """The plain ``arch`` ("mlp" or "cnn") for ``splits``."""
    if arch == "mlp":
        return make_mlp(math.prod(splits.input_shape), splits.num_classes, cfg)
    return make_cnn(tuple(splits.input_shape), splits.num_classes, cfg)


def with_rules(arch: str, splits: Splits, cfg: ModelConfig, learning: LearningConfig,
               seed: int) -> tuple[nn.Module, tuple]:
    """``arch`` and the learning rules ``learning`` builds for it (decorrelating it in place)."""
    model = network(arch, splits, cfg)
    return model, build_rules(learning, model, seed=seed)


def decorrelated(arch: str, splits: Splits, cfg: ModelConfig, learning: LearningConfig
                 ) -> nn.Module:
    """``arch`` converted in place as ``build_rules`` does for a decorrelated run."""
    if learning.decorrelation == "none":
        learning = replace(learning, decorrelation="normalised")
    return with_rules(arch, splits, cfg, replace(learning, rule="bp"), 0)[0]


def models(archs: tuple[str, ...]) -> dict[str, Model]:
    """Each architecture plain and decorrelated (``learning``'s rule, R = I at init)."""
    out = {}
    for arch in archs:
        out[arch] = Model(f"the {arch.upper()}, plain",
                          lambda cfg, splits, arch=arch: network(arch, splits, cfg.model))
        out[f"{arch}-decor"] = Model(
            f"the {arch.upper()} with every layer's input decorrelated",
            lambda cfg, splits, arch=arch: decorrelated(arch, splits, cfg.model, cfg.learning))
    return out


def sample(cfg: Any, n: int, seed: int) -> Splits:
    return load_sample(cfg.data.name, n, seed)


def reach(records: list[dict[str, Any]], target: float) -> tuple[float, float]:
    """(epoch, cumulative training wall-clock) at which train_loss first <= target."""
    for record in records:
        if record["train_loss"] <= target * (1 + 1e-9):
            return float(record["epoch"]), float(record["wall_s"])
    return math.inf, math.inf


def speedups(rows: list[Row], run_dir: Path, baseline: str = "plain") -> list[Row]:
    """Each decorrelated row gains ``epoch_speedup``, ``wall_speedup`` (the ``baseline`` run's
    epochs and wall-clock to its final train loss over this run's to the same loss) and
    ``step_time_ratio`` against the ``baseline`` run of the same point and seed."""
    base_of = {(r.point, r.seed): r for r in rows if r.variant == baseline}
    out = []
    for row in rows:
        base = base_of.get((row.point, row.seed))
        if row.variant != baseline and base is not None and row.status == "ok":
            target = base.value("train_loss")
            b_epoch, b_wall = reach(epoch_records(run_dir / base.run), target)
            d_epoch, d_wall = reach(epoch_records(run_dir / row.run), target)
            step = (row.value("wall_s") / row.value("step")) / (
                base.value("wall_s") / base.value("step"))
            row = dataclasses.replace(row, metrics={
                **row.metrics, "epoch_speedup": b_epoch / d_epoch,
                "wall_speedup": b_wall / d_wall, "step_time_ratio": step})
        out.append(row)
    return out


def wall_text(arch: str, speedup: Side, step_cost: float) -> str:
    """"mlp: 1.62x less wall-clock", or "2.08x more wall-clock" for a slow-down (not 0.48x
    less)."""
    spread = f"± {speedup.std:.2f}, n={speedup.n}"
    if speedup.mean >= 1 or speedup.mean <= 0:
        how = f"{speedup.mean:.2f}x less wall-clock" if speedup.mean > 0 else \
            "never reached plain's final loss"
    else:
        how = f"{1 / speedup.mean:.2f}x more wall-clock (speed-up {speedup.mean:.2f}x)"
    return f"{arch}: {how} ({spread}; step cost {step_cost:.2f}x)"
