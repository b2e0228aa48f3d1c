"""``orthogonal-filter-mechanism``: which filters ``O`` let the additive-filter RNN *learn* the
adding problem, and is a fixed direction of ``O`` (eigenvalue +1) what it needs (issue 28.3)?

A value written into the state at an unknown step ``t`` reaches ``h_T`` as ``a^(T-t) O^(T-t)``
times it. A linear readout reads it back for every ``t`` alike only along eigenvectors of ``O``
with ``|θ| T ≪ 1``; a Haar ``O`` of even size has such a direction (an exact +1 eigenvalue)
exactly when ``det O = −1``. The study trains the filter RNN of orthogonal-long-memory (hidden
``hidden``, ``b = c/T``, readout ``h_T / b``, Adam at ``lr`` with clipping at 1, batch 50, no
tuning) with each filter of ``filters`` (:mod:`signalprop.nn.orthogonal_filters`) at every
``T`` of ``lengths`` and every ``c`` of ``beta_scales`` (sweep point ``T400-c1``), on ``seeds``
seeds. Each row records ``det O`` and the smallest eigen-angle of ``O`` (``min_angle``; times
``T`` in ``angle_T``) of that seed's draw.

**Learned** (fixed before the first run, docs/methods/orthogonal.md): a run learned when its
test MSE is below :data:`LEARNED_MSE` = 1/24, half the MSE of a model that knows one marked value
exactly and not the other (1/12): both values are used (R² >= 0.75 against the always-1 MSE
1/6). A filter learns at ``(T, c)`` when at least :data:`MAJORITY` of the seeds learned.
The study is a measurement: it has no paper claim; its table is ``results["mechanism"]``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from signalprop.config import positive, positive_values
from signalprop.errors import ConfigError
from signalprop.experiments import orthogonal_models as om
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, rows_of
from signalprop.experiments.orthogonal_long_memory import MemoryModel
from signalprop.experiments.registry import Model, declare
from signalprop.experiments.samples import load_sample
from signalprop.experiments.study import Study, Tuning, Variant, run_study
from signalprop.nn.orthogonal_filters import FILTERS, smallest_angle
from signalprop.train import TrainConfig

LEARNED_MSE = 1 / 24  #: a run learned below this test MSE (half the one-value MSE 1/12)
MAJORITY = 2 / 3  #: share of seeds that must learn for "the filter learns at (T, c)"


@dataclass(frozen=True)
class MechanismConfig:
    lengths: tuple[int, ...] = (100, 400, 1000)
    beta_scales: tuple[float, ...] = (0.25, 1.0, 4.0)  # b = c / T
    filters: tuple[str, ...] = ("haar-det+1", "haar-det-1", "haar-no-fixed", "cycle",
                                "identity")
    steps: int = 2000  # Adam steps per run (the T = 400 learning: 2,000 at lr 3e-3)
    lr: float = 3e-3
    hidden: int = 32
    seeds: int = 3
    evals: int = 4  # test evaluations per run
    max_elements: int = 40_000_000  # training inputs (steps x channels); beyond, data repeats
    n_test: int = 500
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=1, batch_size=50, lr=3e-3, grad_clip=1.0, eval_batch_size=250))

    def __post_init__(self) -> None:
        positive_values("lengths", self.lengths, "")
        positive_values("beta_scales", self.beta_scales, "")
        for name in ("steps", "lr", "hidden", "seeds", "evals", "max_elements", "n_test"):
            positive(name, getattr(self, name))
        if min(self.lengths) < 2:
            raise ConfigError(f"lengths must be >= 2, got {self.lengths}")
        for kind in self.filters:
            if kind not in FILTERS:
                raise ConfigError(f"filters: unknown {kind!r}; choose from {FILTERS}")


def points(cfg: MechanismConfig) -> dict[str, tuple[int, float]]:
    return {f"T{t}-c{c:g}": (t, c) for t in cfg.lengths for c in cfg.beta_scales}


def model_for(cfg: MechanismConfig, kind: str, length: int, scale: float) -> Any:
    m = MemoryModel(hidden=cfg.hidden, beta_scale=scale, filter=kind)
    return om.rnn_classifier("filter", 2, 1, m, m.b(length))


def study(ctx: RunContext) -> Study:
    cfg: MechanismConfig = ctx.config
    where = points(cfg)
    per_epoch = max(1, math.ceil(cfg.steps / cfg.evals))
    train = dataclasses.replace(cfg.train, lr=cfg.lr, max_steps_per_epoch=per_epoch,
                                epochs=math.ceil(cfg.steps / per_epoch))
    spectra: dict[tuple[str, str, int], dict[str, float]] = {}

    def variant(kind: str) -> Variant:
        def build(point: str, setting: Any, splits: Any, seed: int) -> Any:
            length, scale = where[point]
            model = model_for(cfg, kind, length, scale)
            o = model.rnn.cell.filter
            angle = smallest_angle(o)
            spectra[(kind, point, seed)] = {"det": float(torch.linalg.det(o.double())),
                                            "min_angle": angle, "angle_T": angle * length}
            return model, ()
        return Variant(kind, build, tuned=False, lr=cfg.lr, on_diverge="lost")

    def load(ctx: RunContext, point: str) -> Any:
        length, _ = where[point]
        # Every evaluation epoch gets its full share of steps, even where the cap is tighter
        # (then sequences repeat across epochs).
        cap = max(per_epoch * cfg.train.batch_size, cfg.max_elements // (2 * length))
        return ctx.load_data("adding", T=length, n_test=cfg.n_test,
                             n_train=min(cfg.steps * cfg.train.batch_size, cap))

    def derive(rows: list[Row], run_dir: Path) -> list[Row]:
        return [dataclasses.replace(r, metrics={
            **r.metrics, "test_mse": r.value("test_loss"),
            **spectra.get((r.variant, r.point, r.seed), {})}) for r in rows]

    return Study(variants=[variant(k) for k in cfg.filters], points=list(where), train=train,
                 data=load, tuning=Tuning(lrs=(cfg.lr,)), seeds=cfg.seeds, derive=derive,
                 curve="test_loss", curve_title="Test MSE per epoch, first seed")


def table(rows: list[Row], cfg: MechanismConfig) -> dict[str, Any]:
    """Per filter and point: MSE mean ± sd over seeds, seeds that learned, det and angle·T."""
    out = []
    for point, (length, scale) in points(cfg).items():
        for kind in cfg.filters:
            mine = sorted((r for r in rows if r.variant == kind and r.point == point),
                          key=lambda r: r.seed)
            mse = [r.value("test_mse") for r in mine if math.isfinite(r.value("test_mse"))]
            if not mine:
                continue
            hits = sum(v < LEARNED_MSE for v in mse)
            sd = statistics.stdev(mse) if len(mse) > 1 else 0.0
            out.append([kind, length, f"{scale:g}/T",
                        f"{statistics.mean(mse):.3g} ± {sd:.2g}" if mse else "lost",
                        ", ".join(f"{v:.3g}" for v in mse), f"{hits}/{len(mine)}",
                        "yes" if hits >= MAJORITY * len(mine) - 1e-9 else "no",
                        ", ".join(f"{r.value('det'):+.0f}" for r in mine),
                        ", ".join(f"{r.value('angle_T'):.2g}" for r in mine)])
    return {"columns": ["filter", "T", "b", "test MSE mean ± sd", "per seed",
                        "seeds < 1/24", "learns", "det O per seed", "min angle × T"],
            "rows": out}


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: MechanismConfig = ctx.config
    runner_summary = run_study(ctx, study(ctx), ("test_loss",))
    rows = rows_of(runner_summary["results"])
    mech = table(rows, cfg)
    runner_summary["results"].update(learned_mse=LEARNED_MSE, mechanism=mech,
                                     peak_rss_gib=om.peak_rss_gib())
    runner_summary["tables"]["mechanism"] = mech
    return runner_summary


declare(
    __name__, MechanismConfig,
    summary="Adding problem: the filter RNN with Haar O of det +1 and -1, Haar without its "
            "fixed direction, a cyclic shift and the identity, b = c/T, at several T (issue 28.3).",
    paper=om.PAPER,
    models={kind: Model(f"the filter RNN with filter={kind!r} (b = 1/T, T = lengths[0])",
                        lambda cfg, splits, kind=kind: model_for(cfg, kind, cfg.lengths[0], 1.0))
            for kind in MechanismConfig().filters},
    sample=lambda cfg, n, seed: load_sample("adding", n, seed, fallback=None,
                                            T=cfg.lengths[0]),
    quick={"lengths": (30, 100), "beta_scales": (1.0, 4.0), "steps": 200, "seeds": 2,
           "evals": 2, "n_test": 100},
    tiny={"lengths": (6,), "beta_scales": (1.0,), "steps": 3, "evals": 1, "n_test": 20,
          "hidden": 8, "filters": ("haar-det-1", "haar-no-fixed", "identity")},
)
