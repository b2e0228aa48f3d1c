"""Seed statistics for claims that compare stochastic outcomes.

A comparison of two sides is decided by Welch's t-test (unequal variances, one-sided, level
:data:`ALPHA`): ``t = (mean_a − mean_b) / SE`` with ``SE = sqrt(s_a²/n_a + s_b²/n_b)`` and the
Welch–Satterthwaite degrees of freedom, so a difference counts as "beyond noise" only when its
one-sided p-value is below :data:`ALPHA`. At n = 3 seeds per side this needs t above about
2.1–2.9 (2–4 degrees of freedom), not the normal approximation's 2. One side against a fixed
value uses the one-sample t-test. With fewer than two seeds on a side the standard error is
unknown (reported as 0, p as NaN): the sign of the difference decides and the judging code
labels the verdict indicative. When both sides have zero spread the difference is exact and
its sign decides.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05  #: one-sided level of the t-tests that decide "beyond noise"
SE_FACTOR = 2.0  #: the old rule (before 2026-12-07): an effect exceeded this many SEs


@dataclass(frozen=True)
class Side:
    """One side of a comparison: the per-seed values of a measured quantity."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 with one seed)."""
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    @property
    def spread(self) -> bool:
        """Whether the values differ (beyond rounding): a t-test needs some spread."""
        return self.n > 1 and self.std > 1e-9 * max(1.0, abs(self.mean))

    @property
    def se(self) -> float:
        """Standard error of the mean (0 with one seed: unknown)."""
        return self.std / math.sqrt(self.n) if self.n > 1 else 0.0

    def p_above(self, value: float) -> float:
        """One-sided one-sample t-test p-value of ``mean > value`` (NaN: unknown, n < 2 or
        no spread)."""
        if not self.spread:
            return math.nan
        from scipy import stats

        with warnings.catch_warnings():  # nearly equal values: the p-value is still usable
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ttest_1samp(self.values, value, alternative="greater").pvalue)

    def above(self, value: float, alpha: float = ALPHA) -> bool:
        """``mean > value`` by a one-sided t-test at ``alpha`` (unknown spread: the sign)."""
        p = self.p_above(value)
        return self.mean > value if math.isnan(p) else p < alpha

    def text(self, label: str, fmt: str = ".3f") -> str:
        return f"{label} {self.mean:{fmt}} ± {self.std:{fmt}} (n={self.n})"


@dataclass(frozen=True)
class Difference:
    """``a − b`` of two sides' means, with its standard error."""

    a: Side
    b: Side

    @property
    def diff(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def se(self) -> float:
        """Welch standard error; 0 when a side has fewer than two seeds (unknown)."""
        if self.a.n < 2 or self.b.n < 2:
            return 0.0
        return math.sqrt(self.a.std ** 2 / self.a.n + self.b.std ** 2 / self.b.n)

    @property
    def p(self) -> float:
        """Welch's one-sided p-value of ``a > b`` (NaN when unknown: a side with n < 2, or
        no spread on either side)."""
        if self.a.n < 2 or self.b.n < 2 or not (self.a.spread or self.b.spread):
            return math.nan
        from scipy import stats

        with warnings.catch_warnings():  # nearly equal values: the p-value is still usable
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ttest_ind(self.a.values, self.b.values, equal_var=False,
                                         alternative="greater").pvalue)

    def beyond_noise(self, alpha: float = ALPHA) -> bool:
        """``a > b`` by Welch's one-sided t-test at ``alpha`` (unknown: ``diff > 0``)."""
        p = self.p
        return self.diff > 0 if math.isnan(p) else p < alpha

    def p_text(self) -> str:
        return "p n/a" if math.isnan(self.p) else f"Welch p {self.p:.3g}"

    def text(self, label_a: str, label_b: str, fmt: str = ".3f") -> str:
        return (f"{self.a.text(label_a, fmt)} vs {self.b.text(label_b, fmt)}; difference "
                f"{self.diff:+{fmt}} (SE {self.se:{fmt}}, {self.p_text()})")


def per_seed(results: dict[str, Any], key: str) -> Side:
    """The side stored under ``<key>_per_seed`` (a list), else the single value ``<key>``."""
    values = results.get(f"{key}_per_seed")
    if values is None:
        values = [results[key]]
    if not isinstance(values, Sequence) or not values:
        raise ValueError(f"{key}_per_seed is not a non-empty list")
    return Side(tuple(float(v) for v in values))


def difference(results: dict[str, Any], key_a: str, key_b: str) -> Difference:
    """``key_a − key_b`` over seeds (see :func:`per_seed`)."""
    return Difference(per_seed(results, key_a), per_seed(results, key_b))


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (average ranks for ties)."""
    if len(x) != len(y) or len(x) < 3:
        raise ValueError("rank correlation needs two sequences of the same length >= 3")

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(x), ranks(y)
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        return 0.0
    return statistics.correlation(rx, ry)


def log_linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit ``log y = a + b x``; returns ``(b, R²)``. Every ``y`` must be > 0."""
    if any(v <= 0 or not math.isfinite(v) for v in y):
        raise ValueError("log-linear fit needs positive finite values")
    logs = [math.log(v) for v in y]
    slope, intercept = statistics.linear_regression(list(map(float, x)), logs)
    mean = statistics.fmean(logs)
    total = sum((v - mean) ** 2 for v in logs)
    resid = sum((v - (intercept + slope * xi)) ** 2 for xi, v in zip(x, logs, strict=True))
    return slope, (1.0 - resid / total) if total > 0 else 0.0
