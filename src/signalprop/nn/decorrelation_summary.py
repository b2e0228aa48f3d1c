"""What :func:`~signalprop.nn.decorrelation_policy.decorrelate` did to a model, in words.

``decorrelation_summary(model)`` lists the layers that carry a decorrelator (or would get one
from ``decorrelate`` with the same ``include``/``exclude``), and the layers with weights that
stay plain, each with the reason. ``str(summary)`` is a table, :meth:`DecorrelationSummary.line`
one line in the style of ``signalprop.diagnose``'s headline.
"""

from __future__ import annotations

from dataclasses import dataclass


def _short(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True)
class DecorrelationSummary:
    """``wrapped``: ``(layer, kind)`` pairs with a decorrelator (``kind`` such as
    ``"DecorrelatedLinear"`` or ``"AdditiveFilterStack branch, 5 layers"``); ``plain``:
    ``(layer, reason)`` pairs of layers with parameters left as they were."""

    wrapped: tuple[tuple[str, str], ...]
    plain: tuple[tuple[str, str], ...]

    def line(self) -> str:
        """One line: counts, then the plain layers with their reasons."""
        text = f"decorrelate: {len(self.wrapped)} layer(s) decorrelated"
        if self.wrapped:
            text += f" ({_short([name for name, _ in self.wrapped])})"
        if not self.plain:
            return text + ", none left plain"
        reasons: dict[str, list[str]] = {}
        for name, reason in self.plain:
            reasons.setdefault(reason.split(":")[0], []).append(name)
        parts = [f"{_short(names, 3)} ({why})" for why, names in reasons.items()]
        return text + f"; {len(self.plain)} left plain: " + "; ".join(parts)

    def table(self) -> str:
        """Every layer with a decorrelator or left plain, one per row."""
        rows = [("layer", "decorrelated", "kind / reason")]
        rows += [(name, "yes", kind) for name, kind in self.wrapped]
        rows += [(name, "no", reason) for name, reason in self.plain]
        width = [max(len(row[i]) for row in rows) for i in range(2)]
        return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in rows)

    def __str__(self) -> str:
        return self.table()
