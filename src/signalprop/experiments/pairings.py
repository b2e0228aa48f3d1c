"""What the pairing studies of issue 29.5 share: claims of our own, not a paper's.

Each study pairs two of the library's methods on one model and asks whether the pair beats each
method alone, every variant tuned on the same Adam grid (:data:`LRS`) by the study runner on a
validation split, over ``seeds`` seeds. A claim is a hypothesis we state (``SOURCE``); its rule
(docs/rules.md, 2026-12-07, written before the runs) is the same for every comparison:

* **reproduced** (the hypothesis holds): the pair's mean test accuracy minus the other side's
  is above :data:`MARGIN` (one point) and Welch's one-sided t-test over seeds gives p < 0.05
  (:class:`~signalprop.experiments.stats.Difference`), and the study's extra condition holds;
* **partly**: the pair is ahead with p < 0.05, but by at most :data:`MARGIN` or without the
  extra condition;
* **not reproduced**: not ahead beyond noise ("does not help" is a result).

The data are Fashion-MNIST images, flattened (our choice; no paper to match), with MNIST-1D as
the fallback that caps a verdict at *not checked*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from signalprop.data.splits import Splits
from signalprop.errors import ConfigError
from signalprop.experiments import decorrelation_models as dm
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, chosen_lr, notes, per_seed
from signalprop.experiments.lr_tuning import log_spaced
from signalprop.experiments.samples import flatten_options, load_sample
from signalprop.experiments.stats import Difference
from signalprop.experiments.study import Built, Data, MLPSize, Study, Variant, run_study
from signalprop.learning.registry import LearningConfig
from signalprop.train import TrainConfig

SOURCE = "our hypothesis (issue 29.5), rule in docs/rules.md 2026-12-07"
PAPER_DATA = "Fashion-MNIST (our choice)"
SAME_DATA = ("fashion-mnist",)
#: the one Adam grid every variant of every pairing study is tuned on (extended at its edges)
LRS = log_spaced(1e-4, 1e-2, 5)
MARGIN = 0.01  #: one point of test accuracy: the smallest gain we call a help


def default_data() -> Data:
    """5,000 Fashion-MNIST training images (1,000 carved for validation), 2,000 test images."""
    return Data("fashion-mnist", n_train=5000, n_val=1000, n_test=2000)


def default_train() -> TrainConfig:
    """8 epochs of Adam, batch 128 (the rate is tuned per variant on :data:`LRS`)."""
    return TrainConfig(epochs=8, batch_size=128, lr=1e-3, log_every=20)


@dataclass(frozen=True)
class PairingConfig:
    """The parts every pairing study's config starts with, in this order: ``data``
    (:func:`default_data`), ``model`` (the study's own :class:`MLPSize` part), ``train``
    (:func:`default_train`) and ``learning`` (decorrelation's defaults); a study adds its own
    parts after them, among them ``methods``, which must be among the study's :attr:`METHODS`."""

    METHODS: ClassVar[tuple[str, ...]] = ()  #: every method the study knows
    data: Data = field(default_factory=default_data)
    model: MLPSize = field(default_factory=MLPSize)
    train: TrainConfig = field(default_factory=default_train)
    learning: LearningConfig = field(default_factory=dm.decor_learning)

    def __post_init__(self) -> None:
        check_methods(getattr(self, "methods", ()), self.METHODS)


def run(ctx: RunContext, build: Callable[[Any, str, Splits, int], Built]) -> dict[str, Any]:
    """The pairing study of ``ctx.config``: each of its ``methods`` is a variant whose model and
    rules ``build(cfg, method, splits, seed)`` makes, trained on ``data`` (:func:`load`) with the
    config's ``train``, ``tuning`` and ``seeds``."""
    cfg = ctx.config

    def variant(method: str) -> Variant:
        return Variant(method, lambda point, setting, splits, seed:
                       build(cfg, method, splits, seed))

    return run_study(ctx, Study(variants=[variant(m) for m in cfg.methods], train=cfg.train,
                                data=lambda ctx, point: load(ctx, cfg.data),
                                tuning=cfg.tuning, seeds=cfg.seeds))


def check_methods(methods: Sequence[str], known: Sequence[str]) -> None:
    """A config's ``methods`` must all be among the study's ``known`` ones."""
    for method in methods:
        if method not in known:
            raise ConfigError(f"methods: unknown {method!r}; choose from {tuple(known)}")


def decorrelated(learning: LearningConfig) -> LearningConfig:
    """``learning`` with decorrelation on: its own rule, or the normalised one if it has none."""
    if learning.decorrelation != "none":
        return learning
    return replace(learning, decorrelation="normalised")


def load(ctx: RunContext, cfg: Data) -> Splits:
    """``cfg``'s images flattened, MNIST-1D when they are missing."""
    return ctx.load_data(cfg.name, fallback="mnist1d", n_train=cfg.n_train, n_test=cfg.n_test,
                         **flatten_options(cfg.name))


def sample(cfg: Any, n: int, seed: int) -> Splits:
    return load_sample(cfg.data.name, n, seed, **flatten_options(cfg.data.name))


def gain(rows: Sequence[Row], a: str, b: str, metric: str = "test_acc") -> Difference:
    """``a − b`` of ``metric`` over seeds."""
    return Difference(per_seed(rows, variant=a, metric=metric),
                      per_seed(rows, variant=b, metric=metric))


def verdict(difference: Difference, extra: bool = True, margin: float = MARGIN) -> str:
    """The shared rule (module docstring): reproduced / partly / not reproduced."""
    if not difference.beyond_noise():
        return "not reproduced"
    return "reproduced" if difference.diff > margin and extra else "partly"


def context(rows: Sequence[Row], variants: Sequence[str]) -> str:
    """"; mean test acc a 0.812, b 0.790; tuned Adam lr a 0.001, b 0.00316" and the notes."""
    accs = ", ".join(f"{v} {per_seed(rows, variant=v, metric='test_acc').mean:.3f}"
                     for v in variants)
    lrs = ", ".join(f"{v} {chosen_lr(rows, v)}" for v in variants)
    return f"; mean test acc {accs}; tuned Adam lr {lrs}" + notes(rows, variants)
