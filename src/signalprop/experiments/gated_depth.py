"""``gated-depth``: fixed random gates (DGN paper, arXiv 2002.03996, Sec. 4-5), training speed
against depth at fixed width, with the conditioning of the normalised neural path kernel and the
finite-width NTK's fluctuation around its expectation.

With fixed gates the expected NTK is proportional to the neural path kernel,
``E[K] ∝ H(x, x') = ⟨x, x'⟩ · Λ(x, x')`` where ``Λ`` counts the paths active for both inputs;
normalised, its off-diagonal shrinks like ``μ^(d−1)`` with depth ``d`` (closer to diagonal,
better conditioned), while at fixed width the sampled NTK deviates more from ``E[K]``.

One network per (depth, seed) trains by SGD at an NTK-scaled step ``m / E[K]_diag``; the
multiplier ``m`` is tuned per depth on a validation split carved from the training data (every
depth gets the same grid ``tuning.multipliers`` and budget; the test split is never used to
choose), so that "depth d trains faster" is not an artefact of one step suiting one depth.
With ``tuning.multipliers=[]`` every depth uses ``train.lr`` (the protocol before rule v4).
The rows (point = depth) are written here, not by the study runner, because the step is
scaled by each network's own kernel.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import TensorDataset

from signalprop.config import config_part, one_of, positive
from signalprop.data.splits import Splits, tensors
from signalprop.diagnostics.path_kernel import (
    condition_number,
    expected_value_ntk_scale,
    kernel_spectrum,
    mean_off_diagonal,
    normalised_path_kernel,
    ntk,
    path_kernel,
)
from signalprop.errors import ConfigError, DivergenceError
from signalprop.experiments.common import curve
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, per_seed, rows_of, rows_table
from signalprop.experiments.gated_models import PAPER, accuracy, sample_flat
from signalprop.experiments.lr_tuning import tuning_splits
from signalprop.experiments.registry import Claim, Model, declare
from signalprop.experiments.stats import Difference, log_linear_fit, rank_correlation
from signalprop.experiments.study import Sweep, sweep_rates, sweep_table
from signalprop.nn.gated import gated_mlp
from signalprop.train import TrainConfig

VARIANT = "frnpf-di"
KERNEL_METRICS = ("condition", "off_diagonal", "deviation")


@config_part("data", positive=("n_train", "n_kernel", "n_fluctuation"))
class DepthData:
    name: str = "fashion-mnist"
    n_train: int = 5000  # tuning.n_val of them are the validation split (4,000 train)
    n_kernel: int = 200
    n_fluctuation: int = 40


@dataclass(frozen=True)
class DepthModel:
    width: int = 128
    depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    lr_scaling: str = "ntk-diag"  # the first full run's; see docs/rules.md (gated-depth)
    loss: str = "ce"

    def __post_init__(self) -> None:
        positive("model.width", self.width)
        one_of("model.loss", self.loss, ("mse", "ce"))
        if not self.depths:
            raise ConfigError("model.depths must not be empty")
        for d in self.depths:
            positive("model.depths", d)
        one_of("model.lr_scaling", self.lr_scaling, ("ntk-max", "ntk-diag", "none"))


@dataclass(frozen=True)
class DepthTuning:
    """The step multiplier's grid (``train.lr`` candidates, each scaled by the network's NTK as
    ``model.lr_scaling`` says), tried per depth on the base seed, scored by the validation loss
    after the whole epoch budget; ``[]``: no tuning, every depth at ``train.lr``."""

    multipliers: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    n_val: int = 1000

    def __post_init__(self) -> None:
        for m in self.multipliers:
            positive("tuning.multipliers", m)
        positive("tuning.n_val", self.n_val)


@dataclass(frozen=True)
class DepthConfig:
    data: DepthData = field(default_factory=DepthData)
    model: DepthModel = field(default_factory=DepthModel)
    tuning: DepthTuning = field(default_factory=DepthTuning)
    train: TrainConfig = field(  # plain SGD as in the DGN paper's analysis; docs/rules.md
        default_factory=lambda: TrainConfig(epochs=10, batch_size=32, lr=4.0, optimizer="sgd"))
    seeds: int = 3

    def __post_init__(self) -> None:
        positive("seeds", self.seeds)


def frnpf_at_depth(splits: Splits, width: int, depth: int) -> torch.nn.Module:
    """FRNPF-DI without biases, Gaussian init: the DGN paper's fixed-random-gate network."""
    return gated_mlp(VARIANT, math.prod(splits.input_shape), width, depth,
                     splits.num_classes, bias=False, init="gaussian")


MODELS = {VARIANT: Model(
    "FRNPF-DI at the deepest of model.depths (the run builds one per depth)",
    lambda cfg, splits: frnpf_at_depth(splits, cfg.model.width, max(cfg.model.depths)))}


def squared_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``½ ‖ŷ − onehot(y)‖²`` averaged over the batch (the DGN paper's squared loss)."""
    onehot = torch.nn.functional.one_hot(target, output.shape[1]).to(output.dtype)
    return (output - onehot).square().sum(1).mean() / 2


def kernel_stats(model, x: torch.Tensor, x_fluct: torch.Tensor, batch: int) -> dict[str, Any]:
    """Conditioning of the expected NTK ∝ NPK, and the finite-width NTK's relative deviation
    ``‖K − E K‖ / ‖E K‖``.

    Also the largest eigenvalue of the expected value NTK on a batch (``batch`` examples), to
    set a learning rate at a fixed fraction of SGD's stability limit ``2B / λ_max``.
    """
    h = normalised_path_kernel(model, x)
    scale = expected_value_ntk_scale(model.value_init_stds())
    lam_max = float(torch.linalg.eigvalsh(scale * path_kernel(model, x[:batch]))[-1])
    expected = scale * path_kernel(model, x_fluct)
    empirical = ntk(model, x_fluct, output=0).double()
    deviation = float((empirical - expected).norm() / expected.norm())
    return {"condition": condition_number(h), "off_diagonal": mean_off_diagonal(h),
            "spectrum": kernel_spectrum(h).tolist(), "deviation": deviation,
            "expected_ntk_diag": float(expected.diagonal().mean()), "batch_lambda_max": lam_max}


def scaled_lr(cfg: DepthConfig, stats: dict[str, Any]) -> float:
    """``train.lr`` as a fraction of SGD's stability limit (``ntk-max``: step = lr × 2B/λ_max
    / 2) or over the expected NTK's mean diagonal (``ntk-diag``); unscaled for ``none``."""
    if cfg.model.lr_scaling == "ntk-max":
        return cfg.train.lr * cfg.train.batch_size / stats["batch_lambda_max"]
    if cfg.model.lr_scaling == "ntk-diag":
        return cfg.train.lr / stats["expected_ntk_diag"]
    return cfg.train.lr


def _train_at(ctx: RunContext, cfg: DepthConfig, name: str, splits: Splits, depth: int,
              seed: int, multiplier: float, on_epoch: Any = None
              ) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Train FRNPF-DI at ``depth`` on ``seed`` with the step ``multiplier`` (NTK-scaled):
    ``(final metrics, kernel stats, step)``."""
    torch.manual_seed(seed)
    model = frnpf_at_depth(splits, cfg.model.width, depth)
    x = tensors(splits.train)[0].flatten(1)
    stats = kernel_stats(model, x[: cfg.data.n_kernel], x[: cfg.data.n_fluctuation],
                         cfg.train.batch_size)
    lr = scaled_lr(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                      lr=multiplier)), stats)
    final = ctx.fit(name, model, splits, dataclasses.replace(cfg.train, lr=lr), seed=seed,
                    on_epoch=on_epoch,
                    loss_fn=squared_loss if cfg.model.loss == "mse" else None)
    return final, stats, lr


def tune_multiplier(ctx: RunContext, cfg: DepthConfig, tune: Splits, depth: int) -> Sweep:
    """Every multiplier of ``tuning.multipliers`` at ``depth`` on the base seed, scored by the
    validation loss after the whole budget (diverged: infinite), by the study runner's sweep
    with no grid extension: a choice at an edge is flagged."""
    def score(_: str, m: float) -> float:
        try:
            final, _, _ = _train_at(ctx, cfg, f"tune-depth_{depth}-m{m:g}", tune, depth,
                                    ctx.seed, m)
        except DivergenceError:
            return math.inf
        loss = float(final.get("test_loss", math.inf))
        return loss if math.isfinite(loss) else math.inf

    return sweep_rates(score, [""], cfg.tuning.multipliers, 0,
                       lambda text: ctx.log(f"depth {depth}: {text}"))


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: DepthConfig = ctx.config
    splits = ctx.load_data(cfg.data.name, fallback="mnist1d", flatten=True,
                           n_train=cfg.data.n_train, n_test=1000)
    tune = None
    if cfg.tuning.multipliers:  # the final runs train on what the validation split leaves
        splits, tune = tuning_splits(splits, cfg.tuning.n_val, ctx.seed)
    train_subset = TensorDataset(*(t[: cfg.data.n_kernel * 5] for t in splits.train.tensors))
    rows: list[Row] = []
    sweeps: dict[int, Sweep] = {}
    lines: dict[str, dict[str, Any]] = {"train_loss": {}, "train_acc": {}, "npk_spectrum": {}}
    for depth in cfg.model.depths:
        multiplier, edge = cfg.train.lr, ""
        if tune is not None:
            sweeps[depth] = tune_multiplier(ctx, cfg, tune, depth)
            (_, multiplier), edge = sweeps[depth].best(), sweeps[depth].edge
            at_edge = f" (at the grid's {edge} end)" if edge else ""
            ctx.log(f"depth {depth}: step multiplier {multiplier:g} chosen on validation"
                    f"{at_edge}")
        for seed in ctx.seeds(cfg.seeds):
            name = f"depth_{depth}_s{seed}"
            final, stats, lr = _train_at(ctx, cfg, name, splits, depth, seed, multiplier,
                                         on_epoch=lambda m, e: {
                                             "train_acc": accuracy(m, train_subset)[0]})
            means = {key: statistics.fmean(v for _, v in curve(ctx.run_dir / name, key))
                     for key in ("train_acc", "train_loss")}
            rows.append(Row(VARIANT, seed, point=depth, lr=lr, run=name, edge=edge, metrics={
                "multiplier": multiplier,
                "mean_train_loss": means["train_loss"], "mean_train_acc": means["train_acc"],
                "train_loss": final["train_loss"], "test_acc": final["test_acc"],
                **{k: stats[k] for k in KERNEL_METRICS}}))
            if seed == ctx.seed:
                for key in ("train_loss", "train_acc"):
                    lines[key][f"depth {depth}"] = curve(ctx.run_dir / name, key)
                lines["npk_spectrum"][f"depth {depth}"] = [
                    [i + 1, max(v, 1e-12)] for i, v in enumerate(stats["spectrum"])]
        acc = per_seed(rows, variant=VARIANT, metric="mean_train_acc", point=depth)
        ctx.log(f"depth {depth}: mean train acc {acc.mean:.4f} ± {acc.std:.4f}")
    if ctx.is_main:
        ctx.write_jsonl("rows.jsonl", [r.to_dict() for r in rows])
    w = cfg.model.width
    return {
        "results": {"dataset": splits.name, "width": w, "seeds": cfg.seeds,
                    "rows": [r.to_dict() for r in rows],
                    "tuning": {f"depth {d}": sw.record() for d, sw in sweeps.items()}},
        "tables": {"runs": rows_table(rows, ("multiplier", "mean_train_loss", "mean_train_acc",
                                             "train_loss", "test_acc", *KERNEL_METRICS)),
                   **({"step_tuning": _tuning_table(sweeps)} if sweeps else {})},
        "series": {
            "train_loss": {"title": f"Training loss, fixed random gates, width {w}",
                           "xlabel": "epoch", "ylabel": "train loss", "logy": True,
                           "lines": lines["train_loss"]},
            "train_acc": {"title": f"Training accuracy, fixed random gates, width {w}",
                          "xlabel": "epoch", "ylabel": "train acc", "logy": False,
                          "lines": lines["train_acc"]},
            "npk_spectrum": {"title": "Eigenvalues of the normalised NPK at initialisation",
                             "xlabel": "rank", "ylabel": "eigenvalue", "logy": True,
                             "lines": lines["npk_spectrum"]},
        },
    }


def _tuning_table(sweeps: dict[int, Sweep]) -> dict[str, Any]:
    return {"columns": ["depth", "setting", "step multiplier", "validation loss", "chosen",
                        "grid", "still at the edge"],
            "rows": sweep_table({(depth,): sweep for depth, sweep in sweeps.items()})}


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before rows (``depth_{d}_{metric}`` keys: the kernel metrics as
    seed means, repeated on each seed's row; the mean training loss per seed)."""
    rows = []
    for depth in (int(d) for d in str(results["depths"]).split(",")):
        shared = {k: results[f"depth_{depth}_{k}"] for k in KERNEL_METRICS
                  if f"depth_{depth}_{k}" in results}
        losses = results.get(f"depth_{depth}_mean_train_loss_per_seed") or [None]
        rows += [{"variant": VARIANT, "point": depth, "seed": seed, "run": f"depth_{depth}_s{seed}",
                  **shared, **({"mean_train_loss": loss} if loss is not None else {})}
                 for seed, loss in enumerate(losses)]
    return rows


def _depths(rows: list[Row]) -> list[int]:
    return sorted({r.point for r in rows})


def _depth_helps_then_hurts(results: dict[str, Any]) -> tuple[str, str]:
    """Speed = mean train loss over epochs (lower is faster), per depth over seeds."""
    rows = rows_of(results)
    depths = _depths(rows)
    speed = {d: per_seed(rows, variant=VARIANT, metric="mean_train_loss", point=d)
             for d in depths}
    best = min(depths, key=lambda d: speed[d].mean)
    text = f"fastest training at depth {best} (of {depths}); mean train loss over epochs " + \
        ", ".join(f"{d}: {speed[d].mean:.3f}" for d in depths)
    text += ("; every depth at its own step multiplier, tuned on validation" if
             results.get("tuning") else "; every depth at one fixed step (no tuning: the "
             "protocol before rule v4)")
    if len(depths) < 3:
        return text, "not checked"
    helps = Difference(speed[depths[0]], speed[best])
    hurts = Difference(speed[depths[-1]], speed[best])
    text += (f"; depth {depths[0]} − depth {best}: {helps.diff:+.3f} (SE {helps.se:.3f}, "
             f"{helps.p_text()}), depth {depths[-1]} − depth {best}: {hurts.diff:+.3f} (SE "
             f"{hurts.se:.3f}, {hurts.p_text()}), n={speed[best].n}")
    if not helps.beyond_noise():
        return text, "not reproduced"
    return text, "reproduced" if hurts.beyond_noise() else "partly"


def _kernel_mechanism(results: dict[str, Any]) -> tuple[str, str]:
    """Falsifiable forms of the two predictions, over every depth (not only the two ends):
    the off-diagonal decays geometrically, ~μ^(d−1) (log-linear fit, R² >= 0.9, slope < 0) and
    the normalised kernel's condition number falls with depth (rank correlation <= −0.8);
    the finite-width deviation grows with depth (rank correlation >= 0.8)."""
    rows = rows_of(results)
    depths = _depths(rows)
    if len(depths) < 3:
        return f"only {len(depths)} depths", "not checked"
    off, cond, dev = ([per_seed(rows, variant=VARIANT, metric=m, point=d).mean for d in depths]
                      for m in ("off_diagonal", "condition", "deviation"))
    slope, r2 = log_linear_fit(depths, off)
    cond_rho = rank_correlation(depths, cond)
    dev_rho = rank_correlation(depths, dev)
    diagonal = slope < 0 and r2 >= 0.9 and cond_rho <= -0.8
    fluctuates = dev_rho >= 0.8
    text = (f"mean |off-diag| {off[0]:.3g} → {off[-1]:.3g}, per-layer factor "
            f"{math.exp(slope):.3g} (R² {r2:.2f}); cond {cond[0]:.3g} → {cond[-1]:.3g} (rank "
            f"corr. with depth {cond_rho:+.2f}); finite-width NTK deviation {dev[0]:.3g} → "
            f"{dev[-1]:.3g} (rank corr. {dev_rho:+.2f}); depths {depths[0]}–{depths[-1]}")
    verdict = "reproduced" if diagonal and fluctuates else (
        "partly" if diagonal or fluctuates else "not reproduced")
    return text, verdict


declare(
    __name__, DepthConfig,
    summary="Fixed random gates: training speed vs depth at fixed width, with the path kernel's "
            "conditioning and finite-width fluctuation.",
    paper=PAPER,
    sample=sample_flat,
    quick={"data.n_train": 1000, "data.n_kernel": 100, "data.n_fluctuation": 16,
           "model.width": 64, "model.depths": (1, 2, 4, 8, 16), "seeds": 1,
           "train.epochs": 3, "tuning.multipliers": (2.0, 8.0), "tuning.n_val": 200},
    tiny={"data.n_train": 200, "data.n_kernel": 30, "data.n_fluctuation": 8,
          "model.width": 16, "model.depths": (1, 2, 4), "train.epochs": 1,
          "tuning.multipliers": (2.0, 8.0), "tuning.n_val": 40},
    claims=(
        Claim(text="With fixed random gates, increasing depth first speeds training up, then "
              "slows it down (at fixed width)",
              source="arXiv 2002.03996, Sec. 4-5", paper_value="depth helps up to a point",
              check=_depth_helps_then_hurts, rule_version=4,
              rule="speed = mean train loss over epochs (SGD, NTK-scaled step, its multiplier "
                   "tuned per depth on validation with one grid); reproduced: the "
                   "fastest depth beats the shallowest and the deepest (Welch one-sided p < "
                   "0.05 over seeds); partly: beats only the shallowest; not reproduced: not "
                   "the shallowest",
              paper_data="synthetic data (DGN paper)", stochastic=True,
              learns=("depth_1_s*",)),
        Claim(text="Depth makes the expected (normalised) kernel closer to diagonal, while the "
              "finite-width kernel fluctuates more around its expectation",
              source="arXiv 2002.03996, Sec. 4 (Gram-matrix analysis)",
              paper_value="off-diagonal ~ μ^(d-1); variance grows with depth",
              check=_kernel_mechanism, rule_version=2,
              rule="over all depths: off-diagonal log-linear in depth (R² >= 0.9, falling) and "
                   "cond falling (rank corr. <= −0.8); NTK deviation rising (rank corr. >= "
                   "0.8); both: reproduced, one: partly, none: not reproduced",
              paper_data="synthetic data (DGN paper)"),
    ),
)
