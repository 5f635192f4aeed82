"""Where a learned schedule puts an order's next check.

The objective (documented in the README): every check costs one request, and every second
between the provider's final answer and the check that finds it costs one second of delay.
Given the learned distribution F of the time to the final answer, the plan is the sequence of
check times c1 < c2 < ... that minimises

    E[delay] + request_cost * E[requests]

where ``request_cost`` (a duration, per provider) says how many seconds of expected delay one
request is worth: a smaller cost checks more often and finds PINs sooner. It is solved exactly
over a grid of candidate times by dynamic programming (backwards from the end of the learned
distribution): U(i) = min over j of [request_cost * P(T > g_i) + E[(g_j - T); g_i < T <= g_j]
+ U(j)], with every step between min_delay and max_delay. An order last checked at t0 (known
unanswered then) is placed from the grid point at or before t0, so a check that was late (a
sweep interval, a Retry-After, provider trouble) never makes the next one earlier than planned.
Past the end of what was learned the order goes back to backoff.

Pure arithmetic: the plan is computed from the stored summary when a sweep has work, in
milliseconds, never from history.
"""

import bisect
import dataclasses
import itertools
import math

from ordermon.sweep import estimate

MAX_GRID = 600  # candidate times; the DP is O(grid x steps within max_delay)


@dataclasses.dataclass(frozen=True)
class Plan:
    grid: tuple[float, ...]
    following: tuple[int, ...]  # the index of the next check after a check at grid[i]
    estimate: estimate.Estimate

    def pause_after(self, waited: float) -> float | None:
        """Seconds from now to the next check of an order ``waited`` seconds after "sentAt",
        unanswered at its last check; None past the learned distribution (backoff's turn)."""
        if math.isnan(waited) or waited < 0 or waited >= self.grid[-1]:
            return None
        index = bisect.bisect_right(self.grid, waited) - 1
        after = self.following[index]
        if after >= len(self.grid):
            return None
        return self.grid[after] - waited

    def first_after(self) -> float:
        """Seconds from "sentAt" to the first check."""
        return self.grid[self.following[0]]


def plan(
    summary: estimate.Estimate, request_cost: float, min_delay: float, max_delay: float
) -> Plan:
    """The check times that minimise E[delay] + request_cost * E[requests] under ``summary``."""
    knots = _cdf_knots(summary)
    horizon = knots[-1][0]
    grid = _grid(knots, horizon, min_delay, max_delay)
    shares = [_cdf(knots, g) for g in grid]
    # moment[i]: E[T; T <= grid[i]], exact for a piecewise-linear CDF whose knots are on the grid
    moment = [0.0]
    for i in range(1, len(grid)):
        moment.append(moment[-1] + (shares[i] - shares[i - 1]) * (grid[i] + grid[i - 1]) / 2)
    count = len(grid)
    best = [0.0] * count  # U(i): the expected cost still to come after a check at grid[i]
    following = [count] * count  # count: nothing planned (the end: backoff from there)
    for i in range(count - 2, -1, -1):
        request = request_cost * (1.0 - shares[i])
        choice, value = count, math.inf
        for j in range(i + 1, count):
            step = grid[j] - grid[i]
            if step < min_delay and j < count - 1:
                continue
            # Past max_delay only until something is chosen: with min_delay near max_delay
            # no grid step may fall between them, and every point needs a next check (the
            # sweep bounds the pause to [min_delay, max_delay] anyway).
            if step > max_delay and choice < count:
                break
            delay = grid[j] * (shares[j] - shares[i]) - (moment[j] - moment[i])
            total = request + delay + best[j]
            if total < value:
                choice, value = j, total
        best[i], following[i] = value, choice
    return Plan(tuple(grid), tuple(following), summary)


def _cdf_knots(summary: estimate.Estimate) -> list[tuple[float, float]]:
    knots = [(0.0, 0.0)]
    for k, t in enumerate(summary.quantiles):
        share = k / estimate.QUANTILE_STEPS
        if t > knots[-1][0]:
            knots.append((t, share))
        else:  # an atom: the knot's share rises in place
            knots[-1] = (knots[-1][0], share)
    return knots


def _cdf(knots: list[tuple[float, float]], t: float) -> float:
    index = bisect.bisect_right([k for k, _ in knots], t)
    if index >= len(knots):
        return knots[-1][1]
    if index == 0:
        return 0.0
    (t0, f0), (t1, f1) = knots[index - 1], knots[index]
    return f0 + (f1 - f0) * (t - t0) / (t1 - t0)


def _grid(
    knots: list[tuple[float, float]], horizon: float, min_delay: float, max_delay: float
) -> list[float]:
    """Candidate times: the CDF's knots, their midpoints, a geometric ladder from min_delay,
    and enough fill that no gap exceeds max_delay / 2."""
    points = {t for t, _ in knots}
    points.update((a + b) / 2 for (a, _), (b, _) in itertools.pairwise(knots))
    step = max(min_delay, 0.5)
    while step < horizon:
        points.add(step)
        step *= 1.25
    ordered = sorted(p for p in points if 0 <= p <= horizon)
    fill = max(max_delay / 2, 0.5)
    filled = [ordered[0]]
    for point in ordered[1:]:
        while point - filled[-1] > fill and len(filled) < MAX_GRID:
            filled.append(filled[-1] + fill)
        filled.append(point)
    if len(filled) > MAX_GRID:  # keep the knots' region and the end; thin evenly
        stride = len(filled) / MAX_GRID
        filled = sorted({filled[int(i * stride)] for i in range(MAX_GRID)} | {filled[-1]})
    return filled
