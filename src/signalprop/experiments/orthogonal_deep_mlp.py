"""``orthogonal-deep-mlp``: a 50,000-layer additive-filter MLP (Ceni, arXiv 2210.01245) trained by
backprop, against the same stack without a skip (a plain tanh MLP) and with an identity skip (a
residual tanh MLP), and three controls without depth.

Layer ``l`` computes ``h_{l+1} = a O h_l + b tanh(W_l h_l + c_l)`` with ``O`` a fixed random
orthogonal matrix, ``b = beta_scale / depth`` and ``a = 1 - b`` (checkpointed, stacked
implementation; only the skip branch differs between the three deep nets). The controls are the
filter net without its nonlinear branch (``rotation``: the fixed map ``a^L O^L``), a shallow
tanh MLP and logistic regression. Every model trains at ``train.lr`` on ``seeds`` seeds through
the study runner (:mod:`~signalprop.experiments.study`, no tuning); each row records the
per-layer gradient spread (max/min over the stack's layers, first epoch) and the nonlinear share
``||h_L - a^L O^L h_0|| / ||h_L||`` at init and trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signalprop.config import in_range, positive
from signalprop.errors import ConfigError
from signalprop.experiments import orthogonal_models as om
from signalprop.experiments.common import epoch_records
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import per_seed, rows_of, select
from signalprop.experiments.registry import Claim, Model, declare
from signalprop.experiments.samples import load_sample
from signalprop.experiments.stats import Difference
from signalprop.experiments.study import Data, Study, Tuning, Variant, run_study
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterMLP
from signalprop.train import TrainConfig

STACK_MODELS = ("filter", "plain", "residual")  # depth-L stacks, differing in the skip branch
DEEP_MODELS = (*STACK_MODELS, "rotation", "shallow", "logistic")  # the last three: no depth


@dataclass(frozen=True)
class DeepModel:
    width: int = 32
    depth: int = 50000
    beta_scale: float = 1.0  # b = beta_scale / depth for the filter net
    residual_beta: float = 0.0  # residual net h + b tanh(W h + c); 0: b = beta_scale / depth
    segment: int = 0  # 0: ceil(sqrt(depth))
    models: tuple[str, ...] = DEEP_MODELS
    shallow_depth: int = 1  # hidden layers of the shallow control MLP
    jacobian_depth: int = 1000  # depth of the (untrained) nets whose IOJ spectrum is measured

    def __post_init__(self) -> None:
        for name in ("width", "depth", "beta_scale", "jacobian_depth", "shallow_depth"):
            positive(f"model.{name}", getattr(self, name))
        in_range("model.residual_beta", self.residual_beta, 0.0, 1.0)
        if self.segment < 0:
            raise ConfigError(f"model.segment must be >= 0, got {self.segment}")
        for name in self.models:
            if name not in DEEP_MODELS:
                raise ConfigError(f"model.models: unknown model {name!r}; choose from "
                                  f"{', '.join(DEEP_MODELS)}")


@dataclass(frozen=True)
class DeepMLPConfig:
    # n_val: the runner's validation split (unused: no model is tuned)
    data: Data = field(default_factory=lambda: Data(n_train=12800, n_val=1280, n_test=2000))
    model: DeepModel = field(default_factory=DeepModel)
    seeds: int = 3  # every model is trained on each seed
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        # CPU budget (docs/methods/orthogonal.md); more: --set train.max_steps_per_epoch=50
        epochs=2, batch_size=128, lr=1e-3, max_steps_per_epoch=15, eval_batch_size=500,
        grad_norms=True))


def deep_model(kind: str, in_features: int, classes: int, m: DeepModel) -> nn.Module:
    """One model of the comparison; ``rotation`` is the seeded filter net without its branch."""
    if kind == "logistic":
        return om.LogisticRegression(in_features, classes)
    if kind == "shallow":
        return MLP(in_features, m.width, m.shallow_depth, classes, activation="tanh")
    options: dict[str, Any] = {"segment": m.segment or None}
    if kind in ("filter", "rotation"):
        options.update(skip="orthogonal", beta_scale=m.beta_scale)
    elif kind == "residual":
        options.update(skip="identity", beta_scale=m.beta_scale, beta=m.residual_beta or None)
    else:
        options.update(skip="none")
    model = AdditiveFilterMLP(in_features, m.width, m.depth, classes, **options)
    return om.RotationControl(model) if kind == "rotation" else model


def stack_profile(sub_run: Path) -> tuple[list[int], list[float]]:
    """``(layer indices, norms)`` of the stack's layers (``stack.<l>`` entries of fit's
    ``grad_norms``) in the first epoch that logged them."""
    records = [r for r in epoch_records(sub_run) if r.get("grad_norms")]
    if not records:
        return [], []
    pairs = [(int(key.split(".", 1)[1]), value) for key, value in records[0]["grad_norms"].items()
             if key.startswith("stack.")]
    return [i for i, _ in pairs], [v for _, v in pairs]


class Probe:
    """Builds each model and measures its stack: gradient spread over layers and the nonlinear
    share at init and trained (on 256 test inputs); keeps the first seed's gradient profile."""

    def __init__(self, cfg: DeepMLPConfig, first_seed: int) -> None:
        self.cfg, self.first_seed = cfg, first_seed
        self.built: dict[str, tuple[nn.Module, float]] = {}
        self.profiles: dict[str, list[list[float]]] = {}
        self.probe: torch.Tensor | None = None

    def build(self, kind: str, splits: Any) -> tuple[nn.Module, tuple]:
        model = deep_model(kind, math.prod(splits.input_shape), splits.num_classes,
                           self.cfg.model)
        self.probe = splits.test.tensors[0][:256]
        if isinstance(model, AdditiveFilterMLP):
            self.built[kind] = (model, om.nonlinear_share(model, self.probe))
        return model, ()

    def measure(self, final: dict[str, Any], sub_run: Path, point: Any) -> dict[str, float]:
        kind, seed = sub_run.name.rsplit("-s", 1)
        layers, profile = stack_profile(sub_run)
        out = {"grad_spread": max(profile) / max(min(profile), 1e-38) if profile else math.nan}
        if int(seed) == self.first_seed and layers:
            self.profiles[kind] = [[i, g] for i, g in zip(layers, profile, strict=True) if g > 0]
        if kind in self.built and self.probe is not None:
            model, share = self.built.pop(kind)
            probe = self.probe.to(next(model.parameters()).device)
            out.update(a=model.stack.a, b=model.stack.b, share_init=share,
                       share_final=om.nonlinear_share(model, probe))
        return out


def jacobian_spectra(m: DeepModel, results: dict[str, Any]) -> dict[str, list[list[float]]]:
    """IOJ singular values (torch.func) of each stack at init, depth ``m.jacobian_depth``, 8
    random inputs pooled; their extremes go into ``results``."""
    from signalprop.diagnostics.jacobian import jacobian_singular_values

    lines = {}
    small = DeepModel(width=m.width, depth=m.jacobian_depth, beta_scale=m.beta_scale,
                      residual_beta=m.residual_beta, models=m.models)
    for kind in (k for k in m.models if k in STACK_MODELS):
        torch.manual_seed(0)
        stack = deep_model(kind, 1, 1, small).stack.double()
        stack.checkpoint = False
        x = torch.randn(8, m.width, dtype=torch.float64)
        with torch.no_grad():
            values = jacobian_singular_values(stack, x, mode="fwd", reduce="mean")
        results[f"{kind}_jacobian_sv_min"] = float(values.min())
        results[f"{kind}_jacobian_sv_max"] = float(values.max())
        lines[kind] = [[i, float(v)] for i, v in enumerate(values) if v > 0]
    return lines


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: DeepMLPConfig = ctx.config
    probe = Probe(cfg, ctx.seed)
    chance: list[float] = []

    def load(ctx: RunContext, point: Any) -> Any:
        splits = ctx.load_data(cfg.data.name, fallback="mnist1d", flatten=True,
                               n_train=cfg.data.n_train, n_test=cfg.data.n_test)
        chance.append(1 / splits.num_classes)
        return splits

    variants = [Variant(kind, lambda point, setting, splits, seed, kind=kind:
                        probe.build(kind, splits), tuned=False) for kind in cfg.model.models]
    study = Study(variants=variants, data=load, train=cfg.train, seeds=cfg.seeds,
                  tuning=Tuning(), measure=probe.measure, curve="train_loss",
                  curve_title=f"Training loss, depth {cfg.model.depth}")
    summary = run_study(ctx, study, ("test_acc", "grad_spread", "share_init", "share_final",
                                     "b"))
    results = summary["results"]
    results.update(depth=cfg.model.depth, width=cfg.model.width, chance=chance[0],
                   peak_rss_gib=om.peak_rss_gib())
    summary["series"]["grad_norm_vs_depth"] = {
        "title": "Per-layer gradient norm, first epoch", "xlabel": "layer",
        "ylabel": "||dL/d(W_l, c_l)||", "logy": True, "lines": probe.profiles}
    summary["series"]["jacobian_spectrum"] = {
        "title": f"Input-output Jacobian singular values at init, depth "
                 f"{cfg.model.jacobian_depth}", "xlabel": "index (descending)",
        "ylabel": "singular value", "logy": True,
        "lines": jacobian_spectra(cfg.model, results)}
    return summary


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before the study runner (``{model}_test_acc_per_seed``; the
    gradient spread was stored once per model, its worst seed)."""
    rows = []
    for kind in DEEP_MODELS:
        spread = results.get(f"{kind}_grad_spread")
        for seed, acc in enumerate(results.get(f"{kind}_test_acc_per_seed") or []):
            rows.append({"variant": kind, "seed": seed, "test_acc": acc,
                         "grad_spread": spread if isinstance(spread, int | float) else math.nan,
                         "run": kind if seed == 0 else f"{kind}-seed{seed}"})
    return rows


def deep_learns(results: dict[str, Any]) -> tuple[str, str]:
    """Reproduced: at 50,000 layers the filter net learns (mean test acc >= max(3x chance, 0.5)),
    its per-layer gradient norms stay within 10x (worst seed), and it beats every control
    without depth (rotation net, logistic regression) by Welch's one-sided t-test (p < 0.05,
    n >= 2 seeds a side). Partly: it learns or its gradients stay flat, but depth did no
    measured work (or the net is shallower than 50,000 layers). Not reproduced: neither."""
    rows = rows_of(results)
    acc, chance = per_seed(rows, variant="filter", metric="test_acc"), results["chance"]
    spreads = [r.value("grad_spread") for r in select(rows, "filter")]
    spread = max((s for s in spreads if math.isfinite(s)), default=math.nan)
    controls = [c for c in ("rotation", "logistic") if select(rows, c)]
    margins = [Difference(acc, per_seed(rows, variant=c, metric="test_acc")) for c in controls]
    # One seed cannot separate the deep net from a control: it needs n >= 2 on both sides.
    uses_depth = bool(margins) and all(d.a.n >= 2 and d.b.n >= 2 and d.beyond_noise()
                                       for d in margins)
    versus = ", ".join(f"{c} {d.b.mean:.3f} ({d.p_text()})"
                       for c, d in zip(controls, margins, strict=True))
    value = (f"depth {results['depth']}: test acc {acc.mean:.3f} (chance {chance:.2f}; controls "
             f"without depth: {versus or 'none run'}; n={acc.n} seeds), gradient max/min over "
             f"layers {spread:.3g}, peak RSS {results['peak_rss_gib']:.2f} GiB")
    learns = acc.mean >= max(3 * chance, 0.5)
    flat = spread <= 10.0
    if learns and flat and uses_depth and results["depth"] >= 50000:
        return value, "reproduced"
    if learns and not uses_depth:
        value += "; trains, but depth not used: no better than a control without depth"
    return value, "partly" if learns or flat else "not reproduced"


ROLES = {
    "filter": "the additive-filter MLP (model.depth layers, b = beta_scale / depth)",
    "plain": "the same stack without a skip branch (a plain tanh MLP)",
    "residual": "the same stack with an identity skip (a residual tanh MLP)",
    "rotation": "control: the filter net without its nonlinear branch (a fixed rotation)",
    "shallow": "control: a shallow tanh MLP of the same width",
    "logistic": "control: logistic regression on the inputs",
}
MODELS = {kind: Model(ROLES[kind], lambda cfg, splits, kind=kind: deep_model(
    kind, math.prod(splits.input_shape), splits.num_classes, cfg.model)) for kind in DEEP_MODELS}


def sample(cfg: DeepMLPConfig, n: int, seed: int) -> Any:
    return load_sample(cfg.data.name, n, seed, flatten=True)


declare(
    __name__, DeepMLPConfig,
    summary="A 50,000-layer additive-filter MLP trains by backprop; plain/residual MLPs compared.",
    paper=om.PAPER,
    quick={"model.depth": 300, "model.jacobian_depth": 300, "data.n_train": 1000,
           "data.n_val": 100, "seeds": 2, "data.n_test": 500, "train.epochs": 2,
           "train.max_steps_per_epoch": 8, "train.batch_size": 64},
    tiny={"model.depth": 40, "model.jacobian_depth": 20, "data.n_train": 200, "data.n_val": 20,
          "data.n_test": 64, "train.epochs": 1, "train.max_steps_per_epoch": 2},
    claims=(Claim(
        text="An extremely deep additive-filter MLP learns (test accuracy far above chance) while "
        "its per-layer gradient norms stay within one order of magnitude from first to last layer",
        source="arXiv 2210.01245, abstract (50k-layer MLP trained by backprop)",
        paper_value="trains at 50,000 layers; gradients neither vanish nor explode",
        check=deep_learns,
        rule="at 50,000 layers: mean test acc >= max(3x chance, 0.5), gradient max/min over "
             "layers <= 10, and the filter net beats the rotation net and logistic regression by "
             "Welch one-sided p < 0.05 (n >= 2 seeds): reproduced; learns or flat but depth "
             "unused, or shallower: partly; neither: not reproduced",
        rule_version=3, stochastic=True,
        paper_data="not named in the abstract", learns=("filter", "filter-s[0-9]*"),
    ),),
)
