"""How long a provider takes to give its final answer, learned from ordermon's own checks.

An order's true time to its final answer is never seen: only that it was not final at its
last ``processing`` check (L seconds after "sentAt", 0 when there was none) and final at its
first final check (R). So every finished order is an interval (L, R]; an expired one is
(L, infinity), right-censored. Taking R itself as the time would teach a schedule its own
lateness (R is when ordermon looked, not when the provider delivered), so this module uses
Turnbull's non-parametric maximum-likelihood estimate (the self-consistency EM) on the
intervals, and spreads each innermost interval's mass evenly over it.

Pure Python, no I/O: O(orders + intervals) per iteration, a bounded number of iterations,
over at most MAX_FITTED orders.
"""

import bisect
import dataclasses
import itertools
import math
from collections.abc import Sequence

MAX_ITERATIONS = 300
TOLERANCE = 1e-7
QUANTILE_STEPS = 100  # the summary keeps the time at each whole percent of the answered mass
# The fit's cost grows with its intervals (100,000 took 17 s of a sweep): a larger window is
# fitted from this many of its orders, evenly spread, which moves a quantile by about a
# percent of the share, what the summary's whole percents keep anyway.
MAX_FITTED = 5000


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The learned distribution as a quantile table: ``quantiles[k]`` is the time (seconds)
    by which a share ``k / 100`` of orders had their final answer, for every k up to
    ``covered`` (the share answered within the observed times; the rest is beyond them)."""

    samples: int
    covered: float
    quantiles: tuple[float, ...]

    def quantile(self, share: float) -> float | None:
        """The time by which ``share`` of orders were answered; None beyond what was seen."""
        position = share * QUANTILE_STEPS
        if position < 0 or position > len(self.quantiles) - 1 + 1e-9:
            return None
        low = min(int(position), len(self.quantiles) - 1)
        high = min(low + 1, len(self.quantiles) - 1)
        return self.quantiles[low] + (position - low) * (self.quantiles[high] - self.quantiles[low])


def innermost(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Turnbull's innermost intervals (a, b]: a left end directly followed by a right end
    once all ends are sorted (at equal times a right end comes first: (x, t] and (t, y] do
    not meet)."""
    ends = sorted(
        [(left, 1) for left, _ in intervals] + [(right, 0) for _, right in intervals],
    )
    found = []
    for (value, kind), (next_value, next_kind) in itertools.pairwise(ends):
        if kind == 1 and next_kind == 0 and next_value > value:
            found.append((value, next_value))
    return found


def turnbull(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """The NPMLE: (a, b, mass) for each innermost interval, masses summing to 1. Each
    observation (L, R] must have 0 <= L < R (R may be infinity); others are ignored."""
    data = [(lo, hi) for lo, hi in intervals if 0 <= lo < hi and not math.isnan(hi)]
    if not data:
        return []
    cells = innermost(data)
    lefts = [a for a, _ in cells]
    rights = [b for _, b in cells]
    # Cells are disjoint and sorted, so the cells inside (L, R] are one contiguous run.
    spans = []
    for lo, hi in data:
        first = bisect.bisect_left(lefts, lo)
        last = bisect.bisect_right(rights, hi) - 1
        if first <= last:
            spans.append((first, last))
    count = len(cells)
    mass = [1.0 / count] * count
    for _ in range(MAX_ITERATIONS):
        prefix = [0.0]
        for p in mass:
            prefix.append(prefix[-1] + p)
        weight = [0.0] * (count + 1)  # a difference array of sum(1 / P(observation))
        for first, last in spans:
            total = prefix[last + 1] - prefix[first]
            if total > 0:
                weight[first] += 1.0 / total
                weight[last + 1] -= 1.0 / total
        running, updated = 0.0, []
        for j in range(count):
            running += weight[j]
            updated.append(mass[j] * running / len(spans))
        change = max(abs(x - y) for x, y in zip(updated, mass, strict=True))
        mass = updated
        if change < TOLERANCE:
            break
    total = sum(mass) or 1.0
    return [(a, b, p / total) for (a, b), p in zip(cells, mass, strict=True)]


def estimate(intervals: Sequence[tuple[float, float]]) -> Estimate:
    """The quantile summary of the NPMLE, the mass of each innermost interval spread evenly
    over it (mass in an interval without end is beyond the observed times)."""
    stride = max(len(intervals) / MAX_FITTED, 1.0)
    fitted = [intervals[int(i * stride)] for i in range(min(len(intervals), MAX_FITTED))]
    cells = turnbull(fitted)
    knots = [(0.0, 0.0)]  # the piecewise-linear CDF: (time, share answered by then)
    share = 0.0
    for a, b, p in cells:
        if math.isinf(b):
            break
        if a > knots[-1][0]:
            knots.append((a, share))
        share += p
        knots.append((b, min(share, 1.0)))
    covered = knots[-1][1]
    quantiles = []
    for k in range(QUANTILE_STEPS + 1):
        target = k / QUANTILE_STEPS
        if target > covered + 1e-9:
            break
        quantiles.append(_time_at(knots, target))
    return Estimate(len(intervals), covered, tuple(quantiles))


def _time_at(knots: list[tuple[float, float]], share: float) -> float:
    """The first time the piecewise-linear CDF reaches ``share``."""
    for (t0, f0), (t1, f1) in itertools.pairwise(knots):
        if f1 >= share - 1e-12 and f1 > f0:
            return t0 + (t1 - t0) * max(0.0, min(1.0, (share - f0) / (f1 - f0)))
    return knots[-1][0]
