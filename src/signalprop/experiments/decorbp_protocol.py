"""decorbp's ResNet-18 protocol (Dalm et al., arXiv 2405.02385; code ``artcogsys/decorbp``) as an
arm of ``decorrelation-resnet``, and the paper's budget that a verdict is measured against.

What decorbp's ``experiments/config/CIFAR10_RESNET18.txt`` and ``main.py`` /
``decorrelation/utils.py::decor_train`` do (read at commits f05d15a, March 2024, and HEAD
5a15d9a; the config is the same in both): ``--epochs=20 --batch_size=128 --lr=1e-4
--decor_lr=1e-4 --kappa=0.01 --downsample_perc=0.1 --method=standard``; one Adam
(``torch.optim.Adam(model.parameters(), lr=args.lr)``, default betas) for BP and DBP alike, no lr
search; torchvision's ResNet-18 (BatchNorm kept, every ``Conv2d`` and the ``Linear`` head
wrapped by ``bp2decor``); ``R`` updated after ``optimizer.step()`` from ``floor(0.1 B)`` images
drawn with replacement (all their patches for a conv); no centring; and the update

    R <- R - decor_lr [(1 - kappa) offdiag(X) R + kappa v * R],  X = Z^T Z / k,
    v = mean_n(z_n^2) - 1,

where ``v * R`` broadcasts over the last axis: ``R diag(v)``, a scaling of ``R``'s columns
(:class:`~signalprop.nn.decorrelation.Decorrelator` with ``variance="columns"``). Epoch 0 runs
the training data forward only (no backward, no update) to log the initial losses.

The pieces an experiment needs to run this protocol as an arm beside its own (``protocols``):
:func:`check_protocols`, :func:`fixed_variant` (a ``-decorbp`` variant at ``decorbp.lr``, no lr
search), :func:`arm` and :func:`speedups_by_arm` (each arm against its own baseline), and
:func:`beside` (the judged arm's text with the other one's after it, labelled "not judged").
Used by ``decorrelation-resnet`` and ``decorrelation-speedup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signalprop.config import one_of, positive, require_number
from signalprop.errors import ConfigError
from signalprop.experiments.decorrelation_models import speedups
from signalprop.experiments.evidence import Row
from signalprop.experiments.study import Builder, Variant
from signalprop.nn.decorrelation import VARIANCE_SIDES

PROTOCOLS = ("decorbp", "ours")
SUFFIX = "-decorbp"  # the decorbp arm's variants are named ``{name}-decorbp``


def check_protocols(protocols: tuple[str, ...]) -> None:
    """``protocols`` (the config field) is a non-empty selection of :data:`PROTOCOLS`."""
    if not protocols:
        raise ConfigError("protocols must not be empty; use [decorbp], [ours] or both")
    for protocol in protocols:
        one_of("protocols", protocol, PROTOCOLS)


def arm(variant: str) -> str:
    """The protocol a variant belongs to."""
    return "decorbp" if variant.endswith(SUFFIX) else "ours"


def speedups_by_arm(rows: list[Row], run_dir: Path, baseline: str) -> list[Row]:
    """:func:`~decorrelation_models.speedups` within each protocol, against its own baseline
    (``baseline`` in ours, ``{baseline}-decorbp`` in decorbp's); row order kept."""
    out = {id(r): r for r in rows}
    for protocol, base in (("ours", baseline), ("decorbp", baseline + SUFFIX)):
        mine = [r for r in rows if arm(r.variant) == protocol]
        for old, new in zip(mine, speedups(mine, run_dir, baseline=base), strict=True):
            out[id(old)] = new
    return [out[id(r)] for r in rows]


def beside(judged: str, other_label: str, other: str) -> str:
    """The judged arm's claim text with the other arm's after it, labelled "not judged"."""
    return f"{judged} | beside it, not judged, {other_label}: {other}"


@dataclass(frozen=True)
class DecorbpProtocol:
    """The settings of decorbp's ``CIFAR10_RESNET18.txt`` (``decorbp.*``)."""

    lr: float = 1e-4  # --lr: Adam, the same for BP and DBP
    decor_lr: float = 1e-4  # --decor_lr
    kappa: float = 0.01  # --kappa
    sample_fraction: float = 0.1  # --downsample_perc (images drawn with replacement)
    variance: str = "columns"  # v * W in decorrelation.py scales R's columns

    def __post_init__(self) -> None:
        positive("decorbp.lr", self.lr)
        positive("decorbp.decor_lr", self.decor_lr)
        require_number("decorbp", "kappa", self.kappa, low=0.0, high=1.0)
        require_number("decorbp", "sample_fraction", self.sample_fraction, low=0.0, high=1.0,
                       open_low=True)
        one_of("decorbp.variance", self.variance, VARIANCE_SIDES)

    def decorrelation(self) -> dict[str, Any]:
        """Options for :func:`~signalprop.nn.decorrelation_policy.decorrelate` (preset dalm:
        whitening rule, no centring, sampling with replacement)."""
        return {"preset": "dalm", "lr": self.decor_lr, "kappa": self.kappa,
                "sample_fraction": self.sample_fraction, "variance": self.variance}


def fixed_variant(name: str, build: Builder, protocol: DecorbpProtocol) -> Variant:
    """The decorbp arm's ``{name}-decorbp``: trained at ``protocol.lr`` (one Adam lr for the
    plain and the decorrelated network), no lr search."""
    return Variant(name + SUFFIX, build, tuned=False, lr=protocol.lr)


@dataclass(frozen=True)
class Budget:
    """A training budget: epochs over ``train_images`` images, ResNet-18 of channel ``width``."""

    epochs: int
    train_images: int
    width: int

    def text(self) -> str:
        epochs = f"{self.epochs} epoch" + ("s" if self.epochs != 1 else "")
        return f"{epochs} of {self.train_images:,} images, width {self.width}"


#: decorbp's CIFAR10_RESNET18.txt: 20 epochs of CIFAR-10's 50,000 training images,
#: torchvision's ResNet-18 (width 64)
PAPER_BUDGET = Budget(epochs=20, train_images=50_000, width=64)


def budget_of(results: dict[str, Any]) -> Budget | None:
    """The run's budget from ``results["budget"]``; None for a run that did not record it."""
    stored = results.get("budget")
    if not isinstance(stored, dict):
        return None
    return Budget(int(stored["epochs"]), int(stored["train_images"]), int(stored["width"]))


def at_scale(verdict: str, results: dict[str, Any]) -> tuple[str, str]:
    """``(verdict, note)``: a *not reproduced* from a run below the paper's budget in any of
    epochs, images or width becomes *not checked* with "not checked at scale (ours X of Y)";
    the note names both budgets whatever the verdict ("" when the run recorded none)."""
    ours = budget_of(results)
    if ours is None:
        return verdict, ""
    paper = PAPER_BUDGET
    below = (ours.epochs < paper.epochs or ours.train_images < paper.train_images
             or ours.width < paper.width)
    scale = f"ours {ours.text()} of the paper's {paper.text()}"
    if below and verdict == "not reproduced":
        return "not checked", f"; not checked at scale ({scale})"
    return verdict, f"; budget: {scale}"
