"""Named experiments: a recipe (config, quick overrides, run function) and the claims it checks.

Each experiment module calls :func:`register` at import time. A claim's verdict is computed by
its ``check`` function from the run's results, never typed by hand.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signalprop.errors import ConfigError

if TYPE_CHECKING:
    from signalprop.experiments.context import RunContext

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
class Experiment:
    """A named, registered experiment."""

    name: str
    summary: str
    paper: str
    make_config: Callable[[], Any]
    run: Callable[[RunContext], dict[str, Any]]
    quick: dict[str, Any] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    requires: tuple[str, ...] = ()


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (names must be unique)."""
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} registered twice")
    _REGISTRY[experiment.name] = experiment
    return experiment


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    import signalprop.experiments as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("registry", "context", "common"):
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
