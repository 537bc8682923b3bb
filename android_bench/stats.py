"""Latency summaries and the noise-aware comparison of two of them.

A `Summary` holds what one runner invocation tells us about one graph: count, min, median, mean,
p90, max and the sample standard deviation, in milliseconds. Runners that print every run
(executor_runner, the host worker) give all of them; `benchmark_model` prints aggregates only, so
the fields it does not report stay None rather than being guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Summary:
    runs: int
    mean_ms: float
    min_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    max_ms: float | None = None
    stdev_ms: float | None = None  # sample standard deviation (n - 1)

    @classmethod
    def of(cls, samples_ms: list[float]) -> Summary:
        s = np.asarray(samples_ms, dtype=np.float64)
        if s.size == 0:
            raise ValueError("no samples")
        return cls(runs=int(s.size), mean_ms=float(s.mean()), min_ms=float(s.min()),
                   median_ms=float(np.median(s)), p90_ms=float(np.percentile(s, 90)),
                   max_ms=float(s.max()),
                   stdev_ms=float(s.std(ddof=1)) if s.size > 1 else 0.0)

    @property
    def typical_ms(self) -> float:
        """The median where the runner reports one, else the mean."""
        return self.median_ms if self.median_ms is not None else self.mean_ms


def sample_stdev(population_std: float, n: int) -> float:
    """benchmark_model prints the population deviation; comparisons want the sample one."""
    return population_std * math.sqrt(n / (n - 1)) if n > 1 else 0.0


@dataclass
class Change:
    before_ms: float
    after_ms: float
    ratio: float  # after / before
    p_value: float | None  # Welch's two-sided t-test on the summaries; None without a spread
    significant: bool

    @property
    def verdict(self) -> str:
        if self.p_value is None:
            return "no spread reported"
        if not self.significant:
            return "within noise"
        return "slower" if self.ratio > 1 else "faster"


def compare_summaries(before: Summary, after: Summary, alpha: float = 0.01,
                      min_change: float = 0.02) -> Change:
    """A change is significant when Welch's t-test on the two runs' mean, sample deviation and
    count rejects equal means at `alpha` AND the means differ by at least `min_change` (a
    relative change below that is real but too small to act on)."""
    from scipy.stats import ttest_ind_from_stats

    ratio = after.mean_ms / before.mean_ms
    if (before.stdev_ms is None or after.stdev_ms is None or before.runs < 2
            or after.runs < 2):
        return Change(before.mean_ms, after.mean_ms, ratio, None, False)
    if before.stdev_ms == 0 and after.stdev_ms == 0:
        p = 1.0 if before.mean_ms == after.mean_ms else 0.0
    else:
        p = float(ttest_ind_from_stats(before.mean_ms, before.stdev_ms, before.runs,
                                       after.mean_ms, after.stdev_ms, after.runs,
                                       equal_var=False).pvalue)
    return Change(before.mean_ms, after.mean_ms, ratio, p,
                  p < alpha and abs(ratio - 1) >= min_change)
