"""Small text helpers shared by the Markdown and HTML renderers."""

from __future__ import annotations

import json
import math
import re
from typing import Any

MISSING = "—"


def fmt_value(value: Any) -> str:
    """Format one table cell: numbers compactly, ``None`` as a dash, containers as compact JSON."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt_float(value)
    if isinstance(value, str):
        return value
    try:
        text = json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


def fmt_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1e6 or a < 1e-3:
        return f"{value:.3e}"
    if a >= 100:
        return f"{value:.1f}"
    return f"{value:.4g}"


def fmt_seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return MISSING
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def slug(text: str, max_len: int = 48) -> str:
    """A file-name and anchor safe version of ``text`` (lower case, ``[a-z0-9._-]``)."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return (s[:max_len].rstrip("-.") or "x")
