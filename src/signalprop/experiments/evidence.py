"""Rows of a study and the small helpers claims read them with.

A :class:`Row` is one trained run of a study: which variant, at which sweep point, on which
seed, at which learning rate and setting, whether it diverged, and its metrics. Claims never
rebuild result keys; they ask for the values they compare:

>>> side = per_seed(rows, variant="fa+decor", metric="test_acc")   # doctest: +SKIP

and compare sides with :mod:`~signalprop.experiments.stats` (Welch's t-test).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from signalprop.experiments.stats import Side

_FIELDS = ("variant", "point", "seed", "lr", "setting", "status", "edge", "run")


@dataclass(frozen=True)
class Row:
    """One (variant, point, seed) run and its metrics; ``status`` is "ok" or "diverged"."""

    variant: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    point: Any = None
    lr: float | None = None
    setting: str = ""
    status: str = "ok"
    edge: str = ""
    run: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-ready: the fields above, then every metric by name."""
        out = {name: getattr(self, name) for name in _FIELDS}
        out.update({k: None if isinstance(v, float) and not math.isfinite(v) else v
                    for k, v in self.metrics.items()})  # strict JSON: no NaN
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        metrics = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(**{k: data[k] for k in _FIELDS if k in data}, metrics=metrics)

    def value(self, metric: str) -> float:
        value = self.metrics.get(metric, math.nan)
        return float(value) if isinstance(value, int | float) else math.nan


def rows_of(results: dict[str, Any]) -> list[Row]:
    """The rows stored in a run's results (``results["rows"]``)."""
    stored = results.get("rows")
    if not isinstance(stored, list):
        raise KeyError("rows (a run made before the study runner; no legacy reader given)")
    return [Row.from_dict(r) for r in stored if isinstance(r, dict)]


def select(rows: Iterable[Row], variant: str | None = None, point: Any = None,
           status: str | None = None) -> list[Row]:
    """Rows of ``variant`` (any if None) at ``point`` (any if None), ordered by seed."""
    chosen = [r for r in rows if (variant is None or r.variant == variant)
              and (point is None or r.point == point)
              and (status is None or r.status == status)]
    return sorted(chosen, key=lambda r: r.seed)


def per_seed(rows: Iterable[Row], *, variant: str, metric: str, point: Any = None,
             include_lost: bool = False) -> Side:
    """``metric`` of ``variant`` at ``point`` over seeds; runs scored as lost (NaN) are left out
    unless ``include_lost``. Raises KeyError when there is no such row."""
    chosen = select(rows, variant, point)
    if not chosen:
        where = f" at {point}" if point is not None else ""
        raise KeyError(f"no rows for {variant}{where}")
    values = [r.value(metric) for r in chosen]
    if not include_lost:
        values = [v for v in values if not math.isnan(v)]
    if not values:
        raise KeyError(f"{variant}: no finite {metric}")
    return Side(tuple(values))


def diverged(rows: Iterable[Row], variants: Sequence[str] | None = None) -> list[str]:
    """Names of the runs that diverged (of ``variants`` only, if given)."""
    return [r.run or f"{r.variant}-s{r.seed}" for r in rows
            if r.status == "diverged" and (variants is None or r.variant in variants)]


def chosen_lr(rows: Iterable[Row], variant: str, point: Any = None) -> str:
    """The tuned learning rate(s) of ``variant`` as text ("0.001", or "0.001/0.00316")."""
    lrs = sorted({r.lr for r in select(rows, variant, point) if r.lr is not None})
    return "/".join(f"{lr:g}" for lr in lrs) or "-"


def at_edge(rows: Iterable[Row], variants: Sequence[str] | None = None) -> list[str]:
    """``"variant (lowest)"`` for each variant whose tuned lr is still at its grid's edge."""
    seen: dict[str, str] = {}
    for r in rows:
        if r.edge and (variants is None or r.variant in variants):
            seen[r.variant] = r.edge
    return [f"{v} ({edge})" for v, edge in seen.items()]


def notes(rows: Sequence[Row], variants: Sequence[str]) -> str:
    """"; diverged (...)" and "; tuned lr at the grid's edge: ..." for a claim row, or ""."""
    text = ""
    lost = diverged(rows, variants)
    if lost:
        text += "; diverged: " + ", ".join(lost)
    edges = at_edge(rows, variants)
    if edges:
        text += "; tuned lr still at the grid's edge: " + ", ".join(edges)
    return text


def rows_table(rows: Sequence[Row], metrics: Sequence[str]) -> dict[str, Any]:
    """The standard table of a study: one line per row."""
    def cell(value: float) -> Any:
        return round(value, 4) if math.isfinite(value) else "-"

    return {"columns": ["variant", "point", "seed", "setting", "lr", "status", *metrics],
            "rows": [[r.variant, "" if r.point is None else r.point, r.seed, r.setting,
                      "-" if r.lr is None else f"{r.lr:g}", r.status,
                      *(cell(r.value(m)) for m in metrics)] for r in rows]}
