"""``decorrelation-resnet``: decorrelated backprop on ResNet-18 (Dalm et al., arXiv 2405.02385).

Plain backprop (BP) against decorrelated backprop (DBP) on a ResNet-18 (torchvision's layout,
3x3 stem for 28x28 images; :mod:`signalprop.nn.resnet`) on Fashion-MNIST, every variant trained
for the same epochs. DBP puts ``z = R x`` in front of every conv and the classifier
(:func:`~signalprop.nn.decorrelation_policy.decorrelate`), with Dalm et al.'s rule by default
(preset ``dalm``: whitening with ``kappa = 0.01``, no centring, 10% of the batch drawn with
replacement; decorrelation lr 1e-3, Dalm's configs 1e-4) and a dense ``R`` (the paper) or a
block-diagonal one (``block_sizes``; ours, not the paper's).

The Adam learning rate of every variant comes from the same validation sweep
(``tuning.*``, :mod:`~signalprop.experiments.study`: on the first seed, extended at the grid's
edges); the chosen rate is trained for ``train.epochs`` and tested on the test split. Reported
per variant and seed (rows): the epochs and training wall-clock to reach plain BP's final
training loss (``epoch_speedup``, ``wall_speedup``), the per-step cost relative to BP
(``step_time_ratio``), the test accuracy. ``architectures`` may add ``vit``
(:class:`~signalprop.nn.vit.SmallViT`, patch embedding, feed-forward layers and head
decorrelated); the default runs ResNet-18 only, the quick run both.

Two protocols (``protocols``), each an arm with its own BP baseline: ``decorbp`` (the judged
one, :mod:`~signalprop.experiments.decorbp_protocol`: variants ``bp-decorbp`` and
``dbp-decorbp``, one Adam lr 1e-4 for both, decorrelation lr 1e-4, ``kappa = 0.01``, the variance
term on ``R``'s columns, no lr search) and ``ours`` (``bp``, ``dbp``, ``dbp-b{size}``: each Adam
lr tuned, ``decor.*``, the variance term on ``R``'s rows). The claims judge the decorbp arm when
the run has it, else ours, and name the arm and the budget against the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from signalprop.config import config_part, one_of, positive, require_int
from signalprop.errors import ConfigError
from signalprop.experiments import decorrelation_models as dm
from signalprop.experiments.context import RunContext
from signalprop.experiments.decorbp_protocol import (
    PROTOCOLS,
    DecorbpProtocol,
    at_scale,
    beside,
    check_protocols,
    fixed_variant,
    speedups_by_arm,
)
from signalprop.experiments.evidence import Row, chosen_lr, notes, per_seed, rows_of, select
from signalprop.experiments.registry import Claim, Experiment, Model, register
from signalprop.experiments.samples import load_sample
from signalprop.experiments.stats import Difference
from signalprop.experiments.study import Data, Study, Tuning, Variant, run_study
from signalprop.learning.decorrelation_rule import DecorrelationRule
from signalprop.nn.decorrelation_policy import PRESETS, decorrelate
from signalprop.nn.resnet import resnet18
from signalprop.nn.vit import SmallViT
from signalprop.train import TrainConfig

PAPER = ("Dalm, Offergeld, Ahmad & van Gerven 2024, Efficient Deep Learning with Decorrelated "
         "Backpropagation (arXiv 2405.02385)")
ARCHITECTURES = ("resnet18", "vit")
JUDGED = "resnet18"  # the claims are about ResNet-18 with a dense R (variant "dbp")


@config_part("model", positive=("resnet_width", "vit_dim", "vit_depth", "vit_heads",
                               "vit_patch"))
class ResNetModelConfig:
    """ResNet-18 channel width (64 in torchvision; 32 by default here, for the CPU budget) and
    the ViT's size."""

    resnet_width: int = 32
    vit_dim: int = 64
    vit_depth: int = 4
    vit_heads: int = 4
    vit_patch: int = 7


@dataclass(frozen=True)
class DecorConfig:
    """The decorrelation of the DBP variants: a preset of :mod:`decorrelation_policy` and lr."""

    preset: str = "dalm"
    lr: float = 1e-3  # Dalm's ResNet-18 config: 1e-4, for many more steps (see the docs)

    def __post_init__(self) -> None:
        one_of("decor.preset", self.preset, tuple(PRESETS))
        positive("decor.lr", self.lr)


@dataclass(frozen=True)
class ResNetConfig:
    data: Data = field(default_factory=lambda: Data(n_train=5000, n_val=1000, n_test=2000))
    model: ResNetModelConfig = field(default_factory=ResNetModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=5, batch_size=128, lr=1e-3, log_every=10, eval_batch_size=500))
    decor: DecorConfig = field(default_factory=DecorConfig)
    decorbp: DecorbpProtocol = field(default_factory=DecorbpProtocol)
    protocols: tuple[str, ...] = PROTOCOLS  # decorbp's (judged) and ours
    tuning: Tuning = field(default_factory=lambda: Tuning(lrs=(3e-4, 1e-3, 3e-3), epochs=1))
    architectures: tuple[str, ...] = ("resnet18",)
    # R per DBP variant: 0 = dense (the paper), b > 0 = blocks of b features (ours)
    block_sizes: tuple[int, ...] = (0, 32)
    seeds: int = 1

    def __post_init__(self) -> None:
        if not self.architectures:
            raise ConfigError("architectures must not be empty")
        for arch in self.architectures:
            one_of("architectures", arch, ARCHITECTURES)
        for size in self.block_sizes:
            require_int("block_sizes", "entry", size, minimum=0)
        check_protocols(self.protocols)


def variants(cfg: ResNetConfig) -> dict[str, int | None]:
    """Variant name → block size of our protocol's arm: ``bp`` (no ``R``), then ``dbp``
    (dense) / ``dbp-b{size}``."""
    out: dict[str, int | None] = {"bp": None}
    out.update({"dbp" if size == 0 else f"dbp-b{size}": size for size in cfg.block_sizes})
    return out


def build_model(arch: str, input_shape: tuple[int, ...], classes: int,
                cfg: ResNetModelConfig) -> nn.Module:
    """ResNet-18 or the small ViT for ``input_shape``; a 1-D input ``(L,)`` (MNIST-1D
    fallback) is fed to the ResNet as an ``L x 1`` image."""
    if arch == "resnet18":
        if len(input_shape) == 1:
            return nn.Sequential(nn.Unflatten(1, (1, input_shape[0], 1)),
                                 resnet18(classes, 1, cfg.resnet_width))
        return resnet18(classes, input_shape[0], cfg.resnet_width)
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ConfigError(f"the ViT needs square images, got input shape {input_shape}; "
                          "use architectures=[resnet18] for this dataset")
    return SmallViT(input_shape[1], cfg.vit_patch, input_shape[0], classes, cfg.vit_dim,
                    cfg.vit_depth, cfg.vit_heads, 2 * cfg.vit_dim)


def make(arch: str, block: int | None, splits: Any, cfg: ResNetConfig,
         protocol: str = "ours") -> tuple[nn.Module, tuple]:
    """``arch`` for ``splits``: plain (``block`` None) or decorrelated with ``protocol``'s rule
    (ours: ``decor.*``; decorbp: ``decorbp.*``, dense ``R``)."""
    model = build_model(arch, tuple(splits.input_shape), splits.num_classes, cfg.model)
    if block is None:
        return model, ()
    if protocol == "decorbp":
        decorrelate(model, **cfg.decorbp.decorrelation())
    else:
        decorrelate(model, preset=cfg.decor.preset, lr=cfg.decor.lr, block_size=block or None)
    return model, (DecorrelationRule(),)


def _model_entries() -> dict[str, Model]:
    """Each architecture under BP and under DBP with a dense ``R`` (the block-diagonal ``R``
    variants differ from the dense one only in ``R``'s shape)."""
    models = {}
    for arch in ARCHITECTURES:
        what = "ResNet-18" if arch == "resnet18" else "the small ViT"
        models[arch] = Model(f"{what} (BP)", lambda cfg, splits, arch=arch:
                             make(arch, None, splits, cfg)[0], image_only=arch == "vit")
        models[f"{arch}-dbp"] = Model(f"{what} with decorrelated layers (DBP, dense R)",
                                      lambda cfg, splits, arch=arch:
                                      make(arch, 0, splits, cfg)[0], image_only=arch == "vit")
    return models


def _sample(cfg: ResNetConfig, n: int, seed: int) -> Any:
    return load_sample(cfg.data.name, n, seed)


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: ResNetConfig = ctx.config
    splits = dm.load(ctx, cfg.data, flatten=False)
    archs = [a for a in cfg.architectures if a != "vit" or len(splits.input_shape) == 3]
    if len(archs) < len(cfg.architectures):
        ctx.log(f"{splits.name} is not an image dataset: the ViT run is skipped")

    def variant(name: str, block: int | None) -> Variant:
        return Variant(name, lambda arch, setting, data, seed: make(arch, block, data, cfg))

    def decorbp(name: str, block: int | None) -> Variant:  # one fixed Adam lr, no search
        return fixed_variant(name, lambda arch, setting, data, seed:
                             make(arch, block, data, cfg, "decorbp"), cfg.decorbp)

    arms = [decorbp(n, b) for n, b in (("bp", None), ("dbp", 0)) if "decorbp" in cfg.protocols]
    if "ours" in cfg.protocols:
        arms += [variant(n, b) for n, b in variants(cfg).items()]
    study = Study(variants=arms, points=archs,
                  data=lambda ctx, arch: splits, train=cfg.train, tuning=cfg.tuning,
                  seeds=cfg.seeds, derive=lambda rows, run_dir:
                  speedups_by_arm(rows, run_dir, "bp"),
                  curve="train_loss", curve_title="Training loss: BP vs decorrelated BP")
    summary = run_study(ctx, study, ("train_loss", "test_acc", "epoch_speedup", "wall_speedup",
                                     "step_time_ratio"))
    summary["series"]["train_loss"]["logy"] = True
    carved = cfg.data.n_val if "ours" in cfg.protocols else 0  # tuned arms carve validation
    summary["results"].update(archs=",".join(archs), preset=cfg.decor.preset,
                              decor_lr=cfg.decor.lr, protocols=",".join(cfg.protocols),
                              budget={"epochs": cfg.train.epochs, "width": cfg.model.resnet_width,
                                      "train_images": len(splits.train) - carved})
    return summary


LEGACY_METRICS = {"epoch_speedup": "epoch_speedup", "wall_speedup": "wall_speedup",
                  "step_ratio": "step_time_ratio", "test_acc": "test_acc",
                  "train_loss": "train_loss", "lr": "lr"}


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before the study runner (``{arch}_{variant}_{key}[_per_seed]``;
    a key stored only as a mean is given to every seed)."""
    rows = []
    for arch in str(results.get("archs", JUDGED)).split(","):
        for key in [k for k in results if k.startswith(f"{arch}_") and k.endswith("_test_acc")]:
            prefix = key.removesuffix("test_acc")
            n = len(results.get(f"{key}_per_seed") or [None])
            for seed in range(n):
                name = prefix[len(arch) + 1:-1]
                row: dict[str, Any] = {"variant": name, "point": arch, "seed": seed,
                                       "run": f"{arch}-{name}-s{seed}"}
                for old, new in LEGACY_METRICS.items():
                    values = results.get(f"{prefix}{old}_per_seed") or [
                        results.get(f"{prefix}{old}")] * n
                    row[new] = values[seed]
                rows.append(row)
    return rows


@dataclass(frozen=True)
class Arm:
    """The judged protocol's BP and dense-R DBP variants, and how the row names them."""

    bp: str
    dbp: str
    label: str


ARMS = {"decorbp": Arm("bp-decorbp", "dbp-decorbp",
                       "decorbp protocol (one Adam lr for both, R's columns)"),
        "ours": Arm("bp", "dbp", "our protocol (Adam lrs tuned apart, R's rows)")}


def _judged_rows(results: dict[str, Any]) -> tuple[list[Row], Arm | None, Arm | None, str]:
    """The rows, the judged arm (decorbp's when the run has it, else ours), the other arm when
    the run has it too, and why the claims cannot be judged (no dense-R ResNet-18 run) or ""."""
    rows = rows_of(results)
    present = [a for a in ARMS.values() if select(rows, a.dbp, JUDGED)]
    if not present:
        return rows, None, None, ("no dense-R ResNet-18 run (architectures lacks resnet18, or "
                                  "block_sizes lacks 0 with protocols [ours])")
    return rows, present[0], present[1] if len(present) > 1 else None, ""


def _lrs(rows: list[Row], judged: Arm) -> str:
    bp, dbp = chosen_lr(rows, judged.bp, JUDGED), chosen_lr(rows, judged.dbp, JUDGED)
    how = "fixed" if judged.bp.endswith("-decorbp") else "tuned"
    return f"; {how} Adam lr BP/DBP {bp}/{dbp}" if "-" not in (bp, dbp) else ""


def _speedup(rows: list[Row], judged: Arm) -> tuple[str, Any]:
    """The speed-up text of ``judged`` and its per-seed wall-clock speed-ups."""
    wall = per_seed(rows, variant=judged.dbp, metric="wall_speedup", point=JUDGED)
    step = per_seed(rows, variant=judged.dbp, metric="step_time_ratio", point=JUDGED).mean
    text = dm.wall_text("ResNet-18, dense R", wall, step)
    if wall.mean > 0:
        epochs = per_seed(rows, variant=judged.dbp, metric="epoch_speedup", point=JUDGED).mean
        text += f"; {epochs:.2f}x fewer epochs"
    p = wall.p_above(1.0)
    text += "; above 1: p n/a" if math.isnan(p) else f"; above 1: t-test p {p:.3g}"
    return text + _lrs(rows, judged), wall


def _check_speedup(results: dict[str, Any]) -> tuple[str, str]:
    """Reproduced: mean wall-clock speed-up to BP's final train loss >= 2.0 (Dalm's "more than
    two-fold") and above 1 by a one-sided t-test (p < 0.05) over seeds; partly: mean >= 1.2;
    else not reproduced (not checked at scale below the paper's budget)."""
    rows, judged, other, missing = _judged_rows(results)
    if judged is None:
        return missing, "not checked"
    text, wall = _speedup(rows, judged)
    text = f"{judged.label}: {text}" + notes(rows, (judged.bp, judged.dbp))
    if other is not None:
        text = beside(text, other.label, _speedup(rows, other)[0])
    if wall.mean >= 2.0 and wall.above(1.0):
        verdict = "reproduced"
    else:
        verdict = "partly" if wall.mean >= 1.2 else "not reproduced"
    verdict, scale = at_scale(verdict, results)
    return text + scale, verdict


def _gap(rows: list[Row], judged: Arm) -> Difference:
    return Difference(per_seed(rows, variant=judged.dbp, metric="test_acc", point=JUDGED),
                      per_seed(rows, variant=judged.bp, metric="test_acc", point=JUDGED))


def _check_accuracy(results: dict[str, Any]) -> tuple[str, str]:
    """Reproduced: DBP's mean test accuracy above BP's by Welch's one-sided t-test (p < 0.05)
    over seeds; partly: DBP ahead (mean difference > 0) without that significance; else not
    reproduced (not checked at scale below the paper's budget)."""
    rows, judged, other, missing = _judged_rows(results)
    if judged is None:
        return missing, "not checked"
    gap = _gap(rows, judged)
    text = (f"{judged.label}: test acc " + gap.text("DBP", "BP", ".4f") + _lrs(rows, judged)
            + notes(rows, (judged.bp, judged.dbp)))
    if other is not None:
        text = beside(text, other.label,
                      _gap(rows, other).text("DBP", "BP", ".4f") + _lrs(rows, other))
    if gap.diff > 0 and gap.beyond_noise():
        verdict = "reproduced"
    else:
        verdict = "partly" if gap.diff > 0 else "not reproduced"
    verdict, scale = at_scale(verdict, results)
    return text + scale, verdict


_AT_SCALE = "not checked at scale below the paper's budget (20 epochs, 50,000 images, width 64)"
_SHARED = {"rule_version": 3, "stochastic": True, "learns": ("resnet18-bp-*",),
           "paper_data": "CIFAR-10 and ImageNet on GPUs (ours: a Fashion-MNIST subset on CPU)"}

register(Experiment(
    name="decorrelation-resnet",
    summary="Decorrelated backprop (Dalm's rule) against backprop on ResNet-18: decorbp's protocol "
            "(judged) and ours (equal lr tuning).",
    paper=PAPER,
    make_config=ResNetConfig,
    run=run,
    models=_model_entries(),
    sample=_sample,
    legacy_rows=legacy_rows,
    quick={"data.n_train": 400, "data.n_val": 100, "data.n_test": 200, "train.epochs": 2,
           "train.batch_size": 50, "model.resnet_width": 8, "model.vit_dim": 16,
           "model.vit_depth": 1, "model.vit_heads": 2, "tuning.lrs": (1e-3,),
           "block_sizes": (0, 16), "architectures": ("resnet18", "vit"),
           "train.eval_batch_size": 200},
    tiny={"data.n_train": 120, "data.n_val": 40, "data.n_test": 40, "train.epochs": 1,
          "model.resnet_width": 4, "block_sizes": (0,), "architectures": ("resnet18",)},
    claims=(
        Claim(text="DBP with a dense R reaches plain BP's final training loss on ResNet-18 in "
              "at least 2x less wall-clock",
              source="Dalm et al. 2024 (arXiv 2405.02385 v2), abstract",
              paper_value="more than two-fold speed-up on ResNet-18", check=_check_speedup,
              rule="wall-clock to BP's final train loss, BP/DBP (dense R), mean over seeds, "
                   "on the decorbp-protocol arm when run (else ours): reproduced >= 2.0 and "
                   "above 1 by a one-sided t-test (p < 0.05); partly >= 1.2; else not "
                   f"reproduced, or {_AT_SCALE}",
              **_SHARED),
        Claim(text="... and reaches a higher test accuracy than BP",
              source="Dalm et al. 2024 (arXiv 2405.02385 v2), abstract",
              paper_value="higher test accuracy than BP", check=_check_accuracy,
              rule="DBP minus BP mean test accuracy, on the decorbp-protocol arm when run "
                   "(else ours): reproduced > 0 with Welch one-sided p < 0.05; partly > 0 "
                   f"(DBP ahead, not significant); else not reproduced, or {_AT_SCALE}",
              **_SHARED),
    ),
))
