"""Named experiments: a recipe (config, quick overrides, run function), the models it trains
and the claims it checks.

Each experiment module calls :func:`register` at import time. A claim's verdict is computed by
its ``check`` function from the run's results, never typed by hand.

Models: an experiment declares each model it trains by name in ``Experiment.models``, a
mapping ``name -> Model(description, build)``, where ``build(config, splits) -> nn.Module``
makes a fresh, untrained model for the experiment's config and data (the caller seeds torch
first). Variants that differ in architecture or initialisation (``shallow``/``deep``,
``mlp``/``cnn``, a baseline, a control) are separate names; variants that differ only in the
learning rule or optimiser share one. The first name is the experiment's main model. The run
function builds its models through the same functions; ``signalprop diagnose EXPERIMENT
[--model NAME]`` and the tests build them through :meth:`Experiment.build_model` on the small
splits of ``Experiment.sample`` (``sample(config, n, seed) -> Splits``). A model whose run sweeps
a config list (depths, delays) is built at the sweep entry that ``splits`` determines or, where
the data do not, at the list's largest entry.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signalprop.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from signalprop.data.splits import Splits
    from signalprop.experiments.context import RunContext

ModelBuilder = Callable[[Any, "Splits"], "nn.Module"]

VERDICTS = ("reproduced", "partly", "not reproduced", "not checked")


@dataclass(frozen=True)
class Claim:
    """A published claim and the rule that judges it from an experiment's ``results``.

    ``check(results)`` returns ``(our_value, verdict)`` with verdict one of :data:`VERDICTS`.
    ``rule`` states that check in one line and ``rule_version`` counts its changes (each one
    recorded in docs/rules.md); a run stores the version that judged it. ``paper_data`` names
    the paper's data and ``same_data`` lists our dataset names that are that data (a verdict on
    other data says so). ``stochastic`` claims compare trained models' outcomes and are decided
    on several seeds; ``learns`` are globs of sub-runs that must have trained (finite loss,
    below its initial value) for the claim to be judged at all.
    """

    text: str
    source: str
    paper_value: str
    check: Callable[[dict[str, Any]], tuple[str, str]]
    rule: str = ""
    rule_version: int = 1
    paper_data: str = "not stated"
    same_data: tuple[str, ...] = ()
    stochastic: bool = False
    learns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    """One model an experiment trains: ``build(config, splits) -> nn.Module``.

    ``no_grad`` lists (``fnmatch`` globs of) trainable parameter names that backprop leaves
    without a gradient by design, and ``no_grad_reason`` says why; every other trainable
    parameter must get a finite gradient from a forward and backward pass (tested).
    ``image_only``: the model needs ``(C, H, W)`` images (the run skips it on 1-D data).
    """

    description: str
    build: ModelBuilder
    no_grad: tuple[str, ...] = ()
    no_grad_reason: str = ""
    image_only: bool = False


@dataclass(frozen=True)
class Experiment:
    """A named, registered experiment (its models: see the module docstring)."""

    name: str
    summary: str
    paper: str
    make_config: Callable[[], Any]
    run: Callable[[RunContext], dict[str, Any]]
    quick: dict[str, Any] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    requires: tuple[str, ...] = ()
    models: dict[str, Model] = field(default_factory=dict, compare=False)
    sample: Callable[[Any, int, int], Splits] | None = None
    #: overrides on top of ``quick`` for a run of seconds (the end-to-end test of every study)
    tiny: dict[str, Any] = field(default_factory=dict)
    #: rows (``Row.to_dict()`` dicts) from the results of a run made before the study runner
    legacy_rows: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None

    def model(self, name: str | None = None) -> tuple[str, Model]:
        """``(name, Model)``: ``name``'s entry, the main (first) model for None; an unknown
        name raises ConfigError listing the experiment's models."""
        if not self.models:
            raise ConfigError(f"experiment {self.name!r} declares no models")
        name = next(iter(self.models)) if name is None else name
        if name not in self.models:
            close = difflib.get_close_matches(name, list(self.models), n=3, cutoff=0.4)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"experiment {self.name!r} has no model {name!r}; {hint}"
                              f"its models: {', '.join(self.models)}")
        return name, self.models[name]

    def build_model(self, config: Any, splits: Splits, name: str | None = None) -> nn.Module:
        """A fresh model ``name`` (the main one for None) for ``config`` and ``splits``."""
        return self.model(name)[1].build(config, splits)

    def with_rows(self, results: dict[str, Any]) -> dict[str, Any]:
        """``results`` with its ``rows``: those stored, else (a run made before the study
        runner) read by :attr:`legacy_rows` from the keys it stored then."""
        if self.legacy_rows is None or "rows" in results:
            return results
        return {**results, "rows": self.legacy_rows(results)}

    def sample_splits(self, config: Any, n: int, seed: int = 0) -> Splits:
        """Small splits (``n`` training and test examples) of the data the models train on."""
        if self.sample is None:
            raise ConfigError(f"experiment {self.name!r} declares no sample data")
        return self.sample(config, n, seed)


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (names must be unique)."""
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} registered twice")
    if experiment.models and experiment.sample is None:
        raise ValueError(f"experiment {experiment.name!r} declares models but no sample data")
    _REGISTRY[experiment.name] = experiment
    return experiment


#: ``Experiment`` field -> the module-level name :func:`declare` takes it from
MODULE_NAMES = {"run": "run", "models": "MODELS", "sample": "sample",
                "legacy_rows": "legacy_rows"}


def declare(module: str, make_config: Callable[[], Any], **fields: Any) -> Experiment:
    """:func:`register` the experiment that module ``module`` (pass its ``__name__``) declares,
    with config ``make_config``.

    One file per experiment: its name is the module's (``gated_kernel`` declares
    ``gated-kernel``), and the module's ``run``, ``MODELS``, ``sample`` and ``legacy_rows``
    (those it defines, see :data:`MODULE_NAMES`) are its run function, models, sample data and
    legacy rows; ``fields`` are its other :class:`Experiment` fields and win over the module's.
    """
    namespace = vars(sys.modules[module])
    found = {key: namespace[name] for key, name in MODULE_NAMES.items() if name in namespace}
    name = module.rsplit(".", 1)[-1].replace("_", "-")
    return register(Experiment(**{"name": name, **found, **fields, "make_config": make_config}))


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    import signalprop.experiments as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("registry", "context", "common", "samples"):
            importlib.import_module(f"signalprop.experiments.{info.name}")
    _LOADED = True


def all_experiments() -> list[Experiment]:
    """Every registered experiment, sorted by name."""
    _load_all()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_experiment(name: str) -> Experiment:
    """Look up an experiment; an unknown name raises ConfigError with close matches."""
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}{hint} (`signalprop list` shows all)")
    return _REGISTRY[name]
