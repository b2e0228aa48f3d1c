"""``deep-tanh-mlp``: the vanishing gradient of a plain deep tanh MLP, as a baseline.

A deep tanh MLP with torch.nn.Linear's default weight scale (gain 1/sqrt(3): weights
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` have variance ``1/(3 fan_in)``) is trained beside a
shallow one on MNIST-1D, logging per-layer gradient norms. The gradient reaching the first
layer is orders of magnitude smaller than the last layer's (Glorot & Bengio 2010, Sec. 4.2):
the problem the library's methods address.

Nothing is tuned or compared across seeds, so this is not a :class:`~signalprop.experiments.
study.Study`; it still writes one tidy row per model (``rows.jsonl``, ``results["rows"]``) with
``grad_ratio_last_to_first = ||dL/dW_last|| / ||dL/dW_first||`` in the first epoch, and the
claim reads that row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from signalprop.config import config_part
from signalprop.experiments.common import at_least, grad_norm_profile
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, per_seed, rows_of, rows_table
from signalprop.experiments.registry import Claim, Model, declare
from signalprop.experiments.samples import flatten_options, load_sample
from signalprop.nn.mlp import MLP
from signalprop.train import TrainConfig

METRICS = ("depth", "test_acc", "train_loss", "grad_ratio_last_to_first")


@dataclass(frozen=True)
class TanhMLPData:
    """The dataset (MNIST-1D) and its sizes; nothing is tuned, so no validation split."""

    name: str = "mnist1d"
    n_train: int = 4000
    n_test: int = 1000


@config_part("model", positive=("width", "depth", "shallow_depth", "gain"))
class DeepTanhModelConfig:
    width: int = 64
    depth: int = 30
    shallow_depth: int = 2
    activation: str = "tanh"
    gain: float = 1 / math.sqrt(3)


@dataclass(frozen=True)
class TanhMLPConfig:
    data: TanhMLPData = field(default_factory=TanhMLPData)
    model: DeepTanhModelConfig = field(default_factory=DeepTanhModelConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=20, lr=1e-3, grad_norms=True)
    )


def build_mlp(cfg: TanhMLPConfig, splits: Any, depth: int) -> MLP:
    """The tanh MLP of ``depth`` hidden layers at the configured gain."""
    return MLP(splits.input_shape[-1], cfg.model.width, depth, splits.num_classes,
               cfg.model.activation, cfg.model.gain)


MODELS = {
    "deep": Model("the deep tanh MLP (model.depth layers)",
                  lambda cfg, splits: build_mlp(cfg, splits, cfg.model.depth)),
    "shallow": Model("the shallow tanh MLP (model.shallow_depth layers)",
                     lambda cfg, splits: build_mlp(cfg, splits, cfg.model.shallow_depth)),
}


def sample(cfg: TanhMLPConfig, n: int, seed: int) -> Any:
    return load_sample(cfg.data.name, n, seed, fallback=None, **flatten_options(cfg.data.name))


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: TanhMLPConfig = ctx.config
    splits = ctx.load_data(cfg.data.name, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                           **flatten_options(cfg.data.name))
    rows, lines = [], {}
    for label, depth in (("shallow", cfg.model.shallow_depth), ("deep", cfg.model.depth)):
        final = ctx.fit(label, build_mlp(cfg, splits, depth), splits, cfg.train)
        profile = grad_norm_profile(ctx.run_dir / label, epoch_index=0)
        rows.append(Row(variant=label, seed=ctx.seed, lr=cfg.train.lr, run=label, metrics={
            "depth": depth, "test_acc": final["test_acc"], "train_loss": final["train_loss"],
            "grad_ratio_last_to_first": profile[-1] / max(profile[0], 1e-30)}))
        lines[f"{label} (depth {depth})"] = [[i, g] for i, g in enumerate(profile)]
    ctx.write_jsonl("rows.jsonl", [r.to_dict() for r in rows])
    return {
        "results": {"dataset": splits.name, "rows": [r.to_dict() for r in rows]},
        "tables": {"runs": rows_table(rows, METRICS)},
        "series": {
            "grad_norm_first_epoch": {
                "title": "Per-layer gradient norm, first epoch",
                "xlabel": "layer (input to output)",
                "ylabel": "||dL/dW||", "logy": True, "lines": lines,
            },
        },
    }


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before the rows (``{label}_grad_ratio_last_to_first`` keys)."""
    return [{"variant": label, "seed": 0, "run": label,
             **{m: results[f"{label}_{m}"] for m in METRICS if f"{label}_{m}" in results}}
            for label in ("shallow", "deep")
            if f"{label}_grad_ratio_last_to_first" in results]


def _vanishing(results: dict[str, Any]) -> tuple[str, str]:
    rows = rows_of(results)
    ratio = per_seed(rows, variant="deep", metric="grad_ratio_last_to_first").mean
    return f"last/first layer gradient ratio {ratio:.3g}", at_least(ratio, 100.0, 10.0)


declare(
    __name__, TanhMLPConfig,
    summary="A deep tanh MLP at torch's default init has vanishing gradients (baseline).",
    paper="Glorot & Bengio 2010 (baseline for all methods)",
    quick={"train.epochs": 3, "data.n_train": 1000, "model.depth": 20},
    tiny={"train.epochs": 1, "data.n_train": 300, "data.n_test": 100, "model.depth": 8},
    claims=(Claim(
        text="In a deep tanh MLP at default init, the first layer's gradient is orders of "
        "magnitude smaller than the last layer's",
        source="Glorot & Bengio 2010, Sec. 4.2",
        paper_value="gradients shrink towards the input layer",
        check=_vanishing,
        rule="last/first layer gradient norm ratio in the first epoch: reproduced >= 100, "
             "partly >= 10, else not reproduced",
        paper_data="Shapeset-3x2, MNIST, CIFAR-10", same_data=("mnist",),
        learns=("shallow",),
    ),),
)
