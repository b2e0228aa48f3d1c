"""Helpers shared by experiment definitions: results from metrics, verdict rules, series."""

from __future__ import annotations

from pathlib import Path

from signalprop.train import epoch_records

__all__ = ["at_least", "at_most", "curve", "epoch_records", "grad_norm_profile"]




def curve(sub_run: Path, key: str) -> list[list[float]]:
    """``[[epoch, value], ...]`` for ``key`` from a sub-run's epoch records."""
    return [[r["epoch"], r[key]] for r in epoch_records(sub_run) if key in r]


def grad_norm_profile(sub_run: Path, epoch_index: int = -1) -> list[float]:
    """Per-layer gradient norms (forward order) of one epoch of a sub-run."""
    records = [r for r in epoch_records(sub_run) if r.get("grad_norms")]
    return list(records[epoch_index]["grad_norms"].values()) if records else []


def at_least(value: float, good: float, partly: float) -> str:
    """Verdict for a larger-is-better number: reproduced >= good, partly >= partly."""
    if value >= good:
        return "reproduced"
    return "partly" if value >= partly else "not reproduced"


def at_most(value: float, good: float, partly: float) -> str:
    """Verdict for a smaller-is-better number: reproduced <= good, partly <= partly."""
    if value <= good:
        return "reproduced"
    return "partly" if value <= partly else "not reproduced"
