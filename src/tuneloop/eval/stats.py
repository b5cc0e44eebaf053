"""Significance for paired pass/fail results: Wilson intervals and the exact McNemar test.

Suites are small (tens of cases), so the normal approximation is wrong where it matters: a pass
rate of 0 % or 100 % gets a zero-width interval, and McNemar's chi-square misstates p for a
handful of flipped cases. Both are computed exactly here; scipy supplies the binomial tail.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

Z95 = 1.959963984540054  # the two-sided 95 % normal quantile


def wilson_interval(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of `passed` successes in `n` trials ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (fixed = fail→pass,
    broken = pass→fail): a binomial test of `fixed` out of `fixed + broken` at p = 0.5."""
    from scipy.stats import binomtest

    n = fixed + broken
    if n == 0:
        return 1.0
    return float(binomtest(fixed, n, 0.5, alternative="two-sided").pvalue)


@dataclass
class PairedVerdict:
    """Treatment against control on the same cases: flips, pass rates with intervals, p."""

    n: int
    fixed: list[str]
    broken: list[str]
    passed_before: int
    passed_after: int
    interval_before: tuple[float, float]
    interval_after: tuple[float, float]
    p_value: float

    @property
    def delta(self) -> float:
        """Pass-rate change in points of a share (0.1 = +10 points)."""
        return (self.passed_after - self.passed_before) / self.n if self.n else 0.0

    @property
    def verdict(self) -> str:
        """improved / no change / regression: more cases fixed than broken, as many, or fewer."""
        if len(self.fixed) != len(self.broken):
            return "improved" if len(self.fixed) > len(self.broken) else "regression"
        return "no change"

    @property
    def significant(self) -> bool:
        """p < 0.05 (two-sided exact McNemar)."""
        return self.p_value < 0.05

    def to_json(self) -> dict:
        """Plain dict (round.json, compare.json, the index)."""
        data = asdict(self)
        data["interval_before"] = list(self.interval_before)
        data["interval_after"] = list(self.interval_after)
        data["delta"] = self.delta
        data["verdict"] = self.verdict
        return data


def paired_verdict(before: Mapping[str, bool], after: Mapping[str, bool]) -> PairedVerdict:
    """Compare two results on the cases both have (keys are case ids)."""
    ids = [k for k in before if k in after]
    fixed = [k for k in ids if after[k] and not before[k]]
    broken = [k for k in ids if before[k] and not after[k]]
    n = len(ids)
    b = sum(bool(before[k]) for k in ids)
    a = sum(bool(after[k]) for k in ids)
    return PairedVerdict(n=n, fixed=fixed, broken=broken, passed_before=b, passed_after=a,
                         interval_before=wilson_interval(b, n), interval_after=wilson_interval(a, n),
                         p_value=mcnemar_exact(len(fixed), len(broken)))


def format_interval(passed: int, n: int) -> str:
    """'53.5 % [38.9, 67.5]' — a pass rate with its 95 % Wilson interval, in percent."""
    lo, hi = wilson_interval(passed, n)
    rate = passed / n if n else 0.0
    return f"{rate:.1%} [{lo * 100:.1f}, {hi * 100:.1f}]"


def format_p(p: float) -> str:
    """A p-value as people read it: 'p = 0.031', 'p < 0.001'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


__all__ = ["PairedVerdict", "format_interval", "format_p", "mcnemar_exact",
                          "paired_verdict", "wilson_interval"]
