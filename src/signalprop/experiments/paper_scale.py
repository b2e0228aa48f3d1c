"""The paper's budget beside ours, for every claim (issue 27.5: "scale in every row").

Each claim of each experiment has a :class:`Scale`: the quantities that size its experiment
(epochs or steps, training-set size, width, depth, sequence length), each with the paper's
value where the paper or its code states it, the config key that holds ours, and where the
paper's number was read. :func:`scale_row` sets the two side by side for a run's config.

A "not reproduced" from a run below the paper's budget in any stated quantity is not a verdict
on the method: :func:`judge_at_scale` turns it into "not checked" with the text "not checked at
scale (ours X of Y)", unless the claim names a ``control``: a positive control in the same run
whose success shows the budget was enough (its rule then already reads "not checked" where the
control failed). The table lives here, beside the claims rather than inside them, so the
experiments stay short declarations; ``tests/test_paper_scale.py`` checks that it covers every
claim and that every key names a config field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SOURCE_NOTE = "see docs/paper-scale.md"


@dataclass(frozen=True)
class Quantity:
    """One quantity of the budget: ``name`` as the row shows it, ``key`` the config field
    holding ours (dotted; a list field counts by its largest entry), ``paper`` the paper's
    value (None: not stated) and ``source`` where that value was read."""

    name: str
    key: str
    paper: float | None
    source: str = ""


@dataclass(frozen=True)
class Scale:
    """A claim's budget. ``control``: the positive control, in the same run, whose success
    shows that our budget suffices (empty: none, so a run below budget cannot fail the
    claim). ``note``: what differs that the quantities cannot say (data, hardware)."""

    quantities: tuple[Quantity, ...] = ()
    control: str = ""
    note: str = ""


def config_value(config: dict[str, Any] | None, key: str) -> float | None:
    """``key`` (dotted) in a run's config dict; a list counts by its largest number."""
    node: Any = config or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, list | tuple):
        numbers = [float(v) for v in node if isinstance(v, int | float)
                   and not isinstance(v, bool)]
        return max(numbers) if numbers else None
    if isinstance(node, int | float) and not isinstance(node, bool):
        return float(node)
    return None


def default_data(config: dict[str, Any], same_data: tuple[str, ...] = ()) -> str:
    """The data a run of this config judges on: ``data.name``/``data.names`` (and
    ``data.also``), else the claim's own dataset names, else "synthetic (built in)"."""
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    names: list[str] = []
    for key in ("name", "names", "also"):
        value = data.get(key)
        if isinstance(value, str):
            names.append(value)
        elif isinstance(value, list | tuple):
            names += [str(v) for v in value]
    names = names or list(same_data)
    return ", ".join(dict.fromkeys(names)) if names else "synthetic (built in)"


def _number(x: float) -> str:
    if x >= 1000 and float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:g}"


def scale_row(scale: Scale | None, config: dict[str, Any] | None) -> tuple[str, list[str]]:
    """``(text, below)``: "epochs: ours 5 of the paper's 50; ..." and the names of the
    quantities where ours is smaller than the paper's."""
    if scale is None:
        return "", []
    parts, below = [], []
    for q in scale.quantities:
        ours = config_value(config, q.key)
        ours_text = "none in this run" if ours is None else _number(ours)
        if q.paper is None:
            parts.append(f"{q.name}: ours {ours_text} (paper: not stated)")
            continue
        parts.append(f"{q.name}: ours {ours_text} of the paper's {_number(q.paper)}")
        if ours is not None and math.isfinite(ours) and ours < q.paper:
            below.append(f"{q.name} {ours_text} of {_number(q.paper)}")
    if scale.note:
        parts.append(scale.note)
    return "; ".join(parts), below


def judge_at_scale(verdict: str, ours: str, scale: Scale | None,
                   config: dict[str, Any] | None) -> tuple[str, str, str]:
    """``(verdict, our_value, scale_text)`` after the scale rule: a "not reproduced" below the
    paper's budget, without a positive control that shows the budget suffices, becomes "not
    checked" with ``our_value`` prefixed "not checked at scale (ours X of Y)"."""
    text, below = scale_row(scale, config)
    if verdict == "not reproduced" and below and scale is not None and not scale.control:
        return ("not checked", f"not checked at scale (ours {'; '.join(below)}); {ours}", text)
    return verdict, ours, text
