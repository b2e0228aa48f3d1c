"""``target-space-images``: an MLP and a CNN on Fashion-MNIST (MNIST-1D when absent), each in
target space and in weight space (Fairbank, Samothrakis & Citi, arXiv 2006.01578, sections
5.2-5.3). Every variant gets its Adam lr from the same validation sweep
(:mod:`~signalprop.experiments.study`); reported per seed: final training loss, test accuracy
and training wall-clock, with the training loss drawn against epochs and against wall-clock.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from signalprop.experiments import target_space_models as tm
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import chosen_lr, notes, per_seed, rows_of, select
from signalprop.experiments.lr_tuning import log_spaced
from signalprop.experiments.registry import Claim, Model, declare
from signalprop.experiments.samples import load_sample
from signalprop.experiments.stats import Difference
from signalprop.experiments.study import Data, Study, Tuning, Variant, run_study
from signalprop.train import TrainConfig, epoch_records

ARCHS = ("mlp", "cnn")
VARIANTS = tuple(f"{arch}-{side}" for arch in ARCHS for side in tm.SPACES)


@dataclass(frozen=True)
class ImagesConfig:
    """``data.n_val`` of the ``data.n_train`` images are the validation split both spaces are
    tuned on (``tuning.epochs`` each, first seed, by validation loss); the rest train."""

    data: Data = field(default_factory=lambda: Data(n_train=11000, n_val=1000, n_test=2000))
    model: tm.ImagesModel = field(default_factory=tm.ImagesModel)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, batch_size=100))
    tuning: Tuning = field(default_factory=lambda: Tuning(lrs=log_spaced(1e-4, 1.0, 9),
                                                          epochs=2))
    seeds: int = 3


def study(ctx: RunContext) -> Study:
    cfg: ImagesConfig = ctx.config

    def variant(name: str) -> Variant:
        arch, side = name.split("-")
        return Variant(name, lambda point, setting, splits, seed:
                       (tm.images_model(arch, side, splits, cfg.model), ()))

    return Study(variants=[variant(v) for v in VARIANTS], train=cfg.train, tuning=cfg.tuning,
                 seeds=cfg.seeds, curve="train_loss", curve_title="Train loss per epoch",
                 data=lambda ctx, point: ctx.load_data(
                     cfg.data.name, fallback="mnist1d", n_train=cfg.data.n_train,
                     n_test=cfg.data.n_test))


def run(ctx: RunContext) -> dict[str, Any]:
    summary = run_study(ctx, study(ctx), ("train_loss", "test_acc", "wall_s"))
    rows = rows_of(summary["results"])
    wall = {v: statistics.fmean([r.value("wall_s") for r in select(rows, v, status="ok")]
                                or [math.nan]) for v in VARIANTS}
    # training wall-clock per run, target over weight space (mean over seeds that trained)
    summary["results"]["wall_ratio"] = {a: wall[f"{a}-target"] / max(wall[f"{a}-weight"], 1e-9)
                                        for a in ARCHS}
    first = [r for r in rows if r.seed == ctx.seed and r.status == "ok"]
    summary["series"]["train_loss_wall"] = {
        "title": f"{summary['results']['dataset']}: train loss against wall-clock (first seed)",
        "xlabel": "training wall-clock (s)", "ylabel": "train loss", "logy": True,
        "lines": {r.variant: [[e["wall_s"], e["train_loss"]]
                              for e in epoch_records(ctx.run_dir / r.run)] for r in first}}
    return summary


def _stored(results: dict[str, Any], key: str, seed: int) -> Any:
    """Seed ``seed``'s entry of ``<key>_per_seed``, else the single value ``<key>``."""
    values = results.get(f"{key}_per_seed")
    return values[seed] if values else results.get(key)


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before the study runner (``{arch}_{side}_{metric}_per_seed``)."""
    rows = []
    for name in VARIANTS:
        key = name.replace("-", "_")
        losses = results.get(f"{key}_train_loss_per_seed") or [results[f"{key}_train_loss"]]
        for seed, loss in enumerate(losses):
            rows.append({"variant": name, "seed": seed, "lr": results.get(f"{key}_lr"),
                         "run": f"{name}-s{seed}", "train_loss": loss,
                         **{m: _stored(results, f"{key}_{m}", seed)
                            for m in ("test_acc", "wall_s")}})
    return rows


def check(results: dict[str, Any]) -> tuple[str, str]:
    """Per architecture, target space wins when weight minus target final train loss is > 0
    by Welch's one-sided t-test (p < 0.05) over seeds: both win reproduced, one partly, none
    not reproduced."""
    rows = rows_of(results)
    wins, parts = 0, []
    for arch in ARCHS:
        def side(space: str, metric: str, arch: str = arch):
            return per_seed(rows, variant=f"{arch}-{space}", metric=metric)

        gap = Difference(side("weight", "train_loss"), side("target", "train_loss"))
        won = gap.diff > 0 and gap.beyond_noise()
        wins += won
        parts.append(f"{arch.upper()} train loss {gap.text('weight', 'target')}"
                     f"{' (target lower beyond noise)' if won else ''}, test acc "
                     f"{side('target', 'test_acc').mean:.3f} vs "
                     f"{side('weight', 'test_acc').mean:.3f} (target vs weight)")
    tuned = ", ".join(f"{v} {chosen_lr(rows, v)}" for v in VARIANTS)
    verdict = "reproduced" if wins == 2 else "partly" if wins == 1 else "not reproduced"
    return ("; ".join(parts) + f" (each side at its tuned lr: {tuned})"
            + notes(rows, VARIANTS)), verdict


declare(
    __name__, ImagesConfig,
    summary="MLP and CNN on Fashion-MNIST: target vs weight space, loss per epoch and per second.",
    paper=tm.PAPER,
    models={v: Model(f"the {v.split('-')[0].upper()} trained in {v.split('-')[1]} space",
                     lambda cfg, splits, v=v: tm.images_model(*v.split("-"), splits, cfg.model))
            for v in VARIANTS},
    sample=lambda cfg, n, seed: load_sample(cfg.data.name, n, seed),
    quick={"data.n_train": 1200, "data.n_val": 200, "data.n_test": 500, "train.epochs": 2,
           "model.cnn_channels": (8, 16), "model.n_bar": 50, "tuning.lrs": (1e-3, 1e-2),
           "tuning.epochs": 1, "tuning.max_extensions": 0, "seeds": 1},
    tiny={"data.n_train": 150, "data.n_val": 50, "data.n_test": 80, "train.epochs": 1,
          "tuning.lrs": (1e-2,), "model.n_bar": 20, "model.cnn_channels": (4,)},
    claims=(Claim(
        text="Target space reaches a lower training loss than weight space per epoch for "
             "MLPs and CNNs on image classification",
        source="arXiv 2006.01578, section 5.2-5.3 (MNIST/CIFAR figures)",
        paper_value="target space trains faster per epoch (at a higher cost per step)",
        check=check,
        rule="final train loss at each side's tuned lr, weight minus target space > 0 with "
             "Welch one-sided p < 0.05 over seeds: for both MLP and CNN reproduced, for one "
             "partly, for none not reproduced",
        rule_version=3,
        paper_data="MNIST, CIFAR-10/100", same_data=("mnist",), stochastic=True,
        learns=("mlp-weight-s*", "cnn-weight-s*"),
    ),),
)
