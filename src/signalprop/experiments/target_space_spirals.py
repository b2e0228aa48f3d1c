"""``target-space-spirals``: two spirals with the paper's narrow MLP with dense shortcuts
(2-5-5-5-2, tanh), trained full batch in target space and in weight space with the same
optimiser (Fairbank, Samothrakis & Citi, arXiv 2006.01578, section 5.1).

The task is the training set: a run *solves* it at the first iteration with 100 % training
accuracy. Each space sweeps its own log-spaced lrs (as many rates each); every rate solves the
*held-out* draw of spiral points (the data's test split, never reported) on
``tuning.repeats`` seeds, and the best success rate, then the lower median iterations, wins
(ties: the smaller rate). A choice at a sweep's edge extends that sweep one step outward, up to
``max_extensions`` steps, as the study runner does. The chosen rate then solves the training
points on ``seeds`` fresh seeds; one :class:`~signalprop.experiments.evidence.Row` per seed
(``solved`` 1/0, ``epochs``: iterations to solve, NaN when not solved).

This is not a :func:`~signalprop.experiments.study.run_study` study: it measures iterations to
a solution by full-batch training, not a tuned model's loss on a validation split.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from signalprop.config import config_part, positive
from signalprop.errors import ConfigError
from signalprop.experiments import target_space_models as tm
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, notes, rows_of, rows_table, select
from signalprop.experiments.lr_tuning import log_spaced
from signalprop.experiments.registry import Claim, declare
from signalprop.experiments.samples import load_sample
from signalprop.experiments.study import Tuning
from signalprop.train import TrainConfig, make_optimizer, seed_everything


@config_part("data", positive=("n_train", "n_test", "turns"))
class SpiralsData:
    """``n_train`` points to solve; ``n_test`` held-out points the lrs are tuned on."""

    n_train: int = 194
    n_test: int = 194
    noise: float = 0.0
    turns: float = 3.0


@dataclass(frozen=True)
class SpiralsTuning:
    """Each space's own sweep (``tuning.target``, ``tuning.weight``: ``lrs``, ``epochs``,
    ``max_extensions``), every rate tried on ``repeats`` seeds."""

    target: Tuning = field(default_factory=lambda: Tuning(lrs=log_spaced(0.01, 1.0, 5)))
    weight: Tuning = field(default_factory=lambda: Tuning(lrs=log_spaced(0.001, 0.1, 5)))
    repeats: int = 5

    def __post_init__(self) -> None:
        positive("tuning.repeats", self.repeats)

    def check_equal_budget(self) -> None:
        """Both sides must sweep as many rates (checked when the run starts, since ``--set``
        changes one list at a time)."""
        if len(self.target.lrs) != len(self.weight.lrs):
            raise ConfigError(
                f"tuning.target.lrs has {len(self.target.lrs)} rates and tuning.weight.lrs "
                f"{len(self.weight.lrs)}; give both sides the same number (equal tuning budget)")


@dataclass(frozen=True)
class SpiralsConfig:
    """``train.epochs``: full-batch iterations (one epoch is one step on all points)."""

    data: SpiralsData = field(default_factory=SpiralsData)
    model: tm.SpiralsModel = field(default_factory=tm.SpiralsModel)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4000))
    tuning: SpiralsTuning = field(default_factory=SpiralsTuning)
    seeds: int = 10

    def __post_init__(self) -> None:
        positive("seeds", self.seeds)


def solve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train: TrainConfig
          ) -> tuple[int | None, list[list[float]]]:
    """Full-batch training; ``(iterations to 100 % training accuracy or None, loss curve)``."""
    opt = make_optimizer(model.parameters(), train)
    losses: list[list[float]] = []
    every = max(1, train.epochs // 100)
    for iteration in range(train.epochs):
        opt.zero_grad(set_to_none=True)
        output = model(x)
        loss = nn.functional.cross_entropy(output, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            return None, losses
        if iteration % every == 0:
            losses.append([iteration, value])
        if bool((output.argmax(1) == y).all()):
            losses.append([iteration, value])
            return iteration + 1, losses
        loss.backward()
        opt.step()
    return None, losses


@dataclass
class Solves:
    """One lr's iterations to solve over seeds (None: not solved) and the first seed's curve."""

    lr: float
    solved: list[int | None]
    curve: list[list[float]]

    @property
    def rate(self) -> float:
        return sum(s is not None for s in self.solved) / len(self.solved)

    @property
    def median(self) -> float:
        hits = [s for s in self.solved if s is not None]
        return statistics.median(hits) if hits else math.inf


def solves(side: str, x: torch.Tensor, y: torch.Tensor, lr: float, seeds: list[int],
           cfg: SpiralsConfig, epochs: int = 0) -> Solves:
    train = replace(cfg.train, lr=lr, epochs=epochs or cfg.train.epochs)
    out = Solves(lr, [], [])
    for seed in seeds:
        seed_everything(seed)
        iterations, losses = solve(tm.spirals_model(side, x, cfg.model), x, y, train)
        out.solved.append(iterations)
        out.curve = out.curve or losses
    return out


def tune(ctx: RunContext, side: str, x: torch.Tensor, y: torch.Tensor, cfg: SpiralsConfig
         ) -> tuple[Solves, list[Solves], str]:
    """``(best, every candidate, edge)``; a best rate at the grid's edge extends it outward."""
    tuning: Tuning = getattr(cfg.tuning, side)
    seeds = [ctx.seed + 1000 + i for i in range(cfg.tuning.repeats)]
    lrs = sorted(set(tuning.lrs))
    ratio = (lrs[-1] / lrs[0]) ** (1 / (len(lrs) - 1)) if len(lrs) > 1 else math.sqrt(10)
    tried = [solves(side, x, y, lr, seeds, cfg, tuning.epochs) for lr in lrs]
    steps = {"lowest": 0, "highest": 0}
    while True:
        best = max(tried, key=lambda s: (s.rate, -s.median, -s.lr))
        rates = sorted(s.lr for s in tried)
        edge = ("lowest" if best.lr == rates[0] else "highest" if best.lr == rates[-1]
                else "") if len(rates) > 1 else ""
        if not edge or steps[edge] >= tuning.max_extensions:
            return best, tried, edge
        steps[edge] += 1
        new = float(f"{(best.lr / ratio if edge == 'lowest' else best.lr * ratio):.3g}")
        ctx.log(f"{side} space: the chosen lr {best.lr:g} is the grid's {edge}; extending to "
                f"{new:g}")
        tried.append(solves(side, x, y, new, seeds, cfg, tuning.epochs))


def _median(value: float) -> float | str:
    return value if math.isfinite(value) else "not solved"


def _text(value: float) -> str:
    return f"{value:g}" if math.isfinite(value) else "not solved"


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: SpiralsConfig = ctx.config
    cfg.tuning.check_equal_budget()
    splits = ctx.load_data("spirals", n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                           noise=cfg.data.noise, turns=cfg.data.turns)
    rows: list[Row] = []
    tuning_rows, lines, record = [], {}, {}
    for side in tm.SPACES:
        best, tried, edge = tune(ctx, side, *splits.test.tensors, cfg)
        record[side] = {"lr": best.lr, "edge": edge, "tried": {
            f"{s.lr:g}": {"success_rate": s.rate, "median_epochs": _median(s.median)}
            for s in tried}}
        tuning_rows += [[side, s.lr, s.rate, _median(s.median), "chosen" if s is best else ""]
                        for s in tried]
        final = solves(side, *splits.train.tensors, best.lr, ctx.seeds(cfg.seeds), cfg)
        ctx.log(f"{side} space, tuned lr={best.lr:g}: solved {final.rate:.0%}, median epochs "
                f"{final.median}")
        rows += [Row(variant=side, seed=seed, lr=best.lr, edge=edge, metrics={
            "solved": float(n is not None), "epochs": math.nan if n is None else float(n)})
            for seed, n in zip(ctx.seeds(cfg.seeds), final.solved, strict=True)]
        lines[f"{side} space, lr {best.lr:g}"] = final.curve
    ctx.write_jsonl("rows.jsonl", [r.to_dict() for r in rows])
    return {
        "results": {"dataset": splits.name, "iterations": cfg.train.epochs, "seeds": cfg.seeds,
                    "rows": [r.to_dict() for r in rows], "tuning": record},
        "tables": {
            "spirals_tuning": {"columns": ["space", "lr", "success rate (tuning points)",
                                           "median epochs to solve", "chosen"],
                               "rows": tuning_rows},
            "runs": rows_table(rows, ("solved", "epochs"))},
        "series": {"spirals_loss": {
            "title": "Two spirals: training loss at each side's tuned lr (first seed)",
            "xlabel": "epoch (full-batch iteration)", "ylabel": "cross-entropy", "logy": True,
            "lines": lines}},
    }


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before rows (``{side}_epochs_per_seed``: iterations or "not
    solved")."""
    rows = []
    for side in tm.SPACES:
        for seed, n in enumerate(results[f"{side}_epochs_per_seed"]):
            solved = isinstance(n, int | float)
            rows.append({"variant": side, "seed": seed, "lr": results.get(f"{side}_lr"),
                         "solved": float(solved), "epochs": float(n) if solved else math.nan})
    return rows


def check(results: dict[str, Any]) -> tuple[str, str]:
    rows = rows_of(results)

    def outcome(side: str) -> tuple[float, float]:
        chosen = select(rows, side)
        epochs = [r.value("epochs") for r in chosen if r.value("solved") > 0]
        return (statistics.fmean(r.value("solved") for r in chosen),
                statistics.median(epochs) if epochs else math.inf)

    (ts, t_med), (ws, w_med) = outcome("target"), outcome("weight")
    ours = (f"success {ts:.0%} vs {ws:.0%}; median epochs {_text(t_med)} vs {_text(w_med)} "
            "(target vs weight space, tuned lr each)" + notes(rows, tm.SPACES))
    if ts == 0:
        return ours, "not reproduced"
    if (ts > ws and t_med <= w_med) or (ts == ws and t_med < w_med):
        return ours, "reproduced"
    if ts > ws or (ts == ws and t_med <= w_med) or t_med < w_med:
        return ours, "partly"
    return ours, "not reproduced"


declare(
    __name__, SpiralsConfig,
    summary="Two spirals with a narrow shortcut MLP: target space vs weight space, lr sweeps.",
    paper=tm.PAPER,
    models=tm.space_models("shortcut MLP", lambda side, cfg, splits: tm.spirals_model(
        side, splits.train.tensors[0], cfg.model)),
    sample=lambda cfg, n, seed: load_sample("spirals", n, seed, fallback=None,
                                            noise=cfg.data.noise, turns=cfg.data.turns),
    quick={"train.epochs": 600, "seeds": 3, "tuning.repeats": 2, "data.turns": 2.0,
           "tuning.target.lrs": (0.1, 0.3), "tuning.weight.lrs": (0.01, 0.03),
           "tuning.target.max_extensions": 0, "tuning.weight.max_extensions": 0},
    tiny={"train.epochs": 50, "seeds": 2, "tuning.repeats": 1, "data.n_train": 40,
          "data.n_test": 40},
    claims=(Claim(
        text="On two spirals, target space trains faster and more reliably than weight space "
             "with the same optimiser",
        source="arXiv 2006.01578, section 5.1 (two-spirals experiment)",
        paper_value="target space solves two spirals in fewer iterations and more often",
        check=check,
        rule="success rate and median epochs over seeds at each side's lr, tuned on held-out "
             "spiral points and seeds: reproduced: target more successful and not slower, or as "
             "successful and faster; partly: better on one; not reproduced: target never "
             "solves it or is worse on both",
        rule_version=2,
        paper_data="two spirals", same_data=("spirals",), stochastic=True,
    ),),
)
