"""Scenario 8's bound, computed: what any check schedule can get for the log-normal provider
(median 90 s, p95 10 min), at backoff's number of requests. Pure arithmetic, no database.

For a deterministic schedule c1 < c2 < ... (seconds after "sentAt") and a delivery time T of
the true distribution F, an order costs N = min{k : c_k >= T} requests and waits
c_N - T. Exactly, with E[T; a < T <= b] in closed form for the log-normal:

    E[N] = sum_k P(T > c_(k-1))        (c_0 = 0: the first check is always made)
    E[delay] = sum_k c_k (F(c_k) - F(c_(k-1))) - E[T; c_(k-1) < T <= c_k]

Printed: backoff's default curve without jitter; ordermon's own placement (sweep/placement.py,
the DP a learned provider runs) on the true quantiles at several request_cost values, its
pauses bounded as a sweep bounds them (schedule.learned_pause, no explore) and backoff past
its end, as in a sweep; the best geometric curve (first check, first pause, factor, capped at
max_delay) at backoff's requests, by grid search; and a lower bound for every schedule at
backoff's requests (Lagrangian duality over an exact DP on a 1 % geometric grid, corrected
for that grid), and the requests halving backoff's delay takes. Runs in under a minute:

    python -m benchmarks.learned_bound
"""

import dataclasses
import datetime as dt
import math
import statistics

from ordermon.sweep import estimate, placement, schedule

MEDIAN, P95 = 90.0, 600.0
MU = math.log(MEDIAN)
SIGMA = math.log(P95 / MEDIAN) / statistics.NormalDist().inv_cdf(0.95)
DEADLINE = 86400.0  # give_up_after's default: no check after it
MAX_DELAY = 600.0
_NORMAL = statistics.NormalDist()


def cdf(t: float) -> float:
    return 0.0 if t <= 0 else _NORMAL.cdf((math.log(t) - MU) / SIGMA)


def partial_mean(t: float) -> float:
    """E[T; T <= t]."""
    if t <= 0:
        return 0.0
    return math.exp(MU + SIGMA**2 / 2) * _NORMAL.cdf((math.log(t) - MU - SIGMA**2) / SIGMA)


def quantile(share: float) -> float:
    return math.exp(MU + SIGMA * _NORMAL.inv_cdf(share))


def evaluate(checks: list[float]) -> tuple[float, float]:
    """(E[requests], E[delay]) of a schedule; an order not answered by its last check (at
    the deadline: about 1e-9 of them) counts its requests and no delay."""
    requests = delay = 0.0
    previous = 0.0
    for check in checks:
        requests += 1.0 - cdf(previous)
        delay += check * (cdf(check) - cdf(previous)) - (
            partial_mean(check) - partial_mean(previous)
        )
        previous = check
    return requests, delay


def backoff_checks(policy: schedule.Policy) -> list[float]:
    """The default curve without jitter: first_check_after, then base * factor^(n-1), capped,
    the last check moved to the deadline."""
    at = policy.first_check_after.total_seconds()
    checks, attempts = [at], 1
    while at < DEADLINE:
        at = min(at + schedule.raw_backoff(attempts, policy), DEADLINE)
        checks.append(at)
        attempts += 1
    return checks


def true_summary(samples: int = 2000) -> estimate.Estimate:
    """The true quantiles at every whole percent, the 100th the largest of ``samples``
    orders would typically be (the log-normal has no end)."""
    values = [0.0] + [quantile(k / 100) for k in range(1, 100)]
    values.append(quantile(1 - 1 / (2 * samples)))
    return estimate.Estimate(samples, 1.0, tuple(values))


def learned_checks(plan: placement.Plan, policy: schedule.Policy) -> list[float]:
    """Where a sweep puts a learned order's checks (no jitter, no explore, no sweep
    interval): the plan's first check, the plan's pauses bounded to [min_delay, max_delay],
    backoff past the plan's end, the deadline last."""
    first = schedule.learned_pause(plan.first_after(), policy)
    at = min(first if first is not None else policy.first_check_after.total_seconds(), DEADLINE)
    checks, attempts = [at], 1
    while at < DEADLINE:
        pause = schedule.learned_pause(plan.pause_after(at), policy)
        if pause is None:
            pause = schedule.raw_backoff(attempts, policy)
        at = min(at + pause, DEADLINE)
        checks.append(at)
        attempts += 1
    return checks


def geometric_checks(first: float, pause: float, factor: float) -> list[float]:
    at, checks = first, [first]
    while at < DEADLINE:
        at = min(at + pause, DEADLINE)
        checks.append(at)
        pause = min(pause * factor, MAX_DELAY)
    return checks


def best_geometric(most_requests: float) -> tuple[float, float, tuple[float, float, float]]:
    """The least mean delay of a geometric curve within ``most_requests``."""
    best = (math.inf, math.inf, (0.0, 0.0, 0.0))
    for first in range(5, 181, 5):
        for pause in range(5, 241, 5):
            for factor in [1.0 + 0.1 * i for i in range(0, 31)]:
                requests, delay = evaluate(geometric_checks(first, pause, factor))
                if requests <= most_requests and delay < best[1]:
                    best = (requests, delay, (float(first), float(pause), factor))
    return best


@dataclasses.dataclass(frozen=True)
class Grid:
    """Candidate check times, 1 % apart (1 s to the deadline), with F and E[T; T <= t]."""

    times: list[float]
    shares: list[float]
    moments: list[float]

    @classmethod
    def geometric(cls, ratio: float = 1.01) -> "Grid":
        times, t = [], 1.0
        while t < DEADLINE:
            times.append(t)
            t *= ratio
        times.append(DEADLINE)
        return cls(times, [cdf(t) for t in times], [partial_mean(t) for t in times])


def optimal_on_grid(grid: Grid, request_cost: float) -> tuple[float, float]:
    """(E[requests], E[delay]) of the grid schedule minimising delay + cost * requests, any
    pauses (an exact DP: U(i) = min_j cost * P(T > t_i) + E[(t_j - T); t_i < T <= t_j] +
    U(j), the last grid point the last check)."""
    times, shares, moments = grid.times, grid.shares, grid.moments
    count = len(times)
    value = [0.0] * count
    requests = [0.0] * count
    delays = [0.0] * count
    for i in range(count - 2, -1, -1):
        survive = 1.0 - shares[i]
        best, best_j = math.inf, count - 1
        for j in range(i + 1, count):
            total = times[j] * (shares[j] - shares[i]) - (moments[j] - moments[i]) + value[j]
            if total < best:
                best, best_j = total, j
        value[i] = request_cost * survive + best
        j = best_j
        requests[i] = survive + requests[j]
        delays[i] = times[j] * (shares[j] - shares[i]) - (moments[j] - moments[i]) + delays[j]
    # the first check: any grid point, from "sentAt" (nothing is known answered at 0)
    first = min(
        range(count),
        key=lambda j: request_cost + times[j] * shares[j] - moments[j] + value[j],
    )
    return 1.0 + requests[first], times[first] * shares[first] - moments[first] + delays[first]


def frontier(grid: Grid) -> list[tuple[float, float, float]]:
    """(request_cost, E[requests], E[delay]) of the grid's optimal schedules over a range
    of costs: each is a schedule that can be run (free pauses)."""
    return [(cost, *optimal_on_grid(grid, cost)) for cost in [4.0 * 1.2**k for k in range(16)]]


def lower_bound(most_requests: float, found: list[tuple[float, float, float]], grid: Grid) -> float:
    """A mean delay no schedule with at most ``most_requests`` expected requests beats. Weak
    duality on the grid: any grid schedule S has D(S) + c N(S) >= D*(c) + c N*(c), so
    D(S) >= D*(c) + c (N*(c) - n) for every c. Any schedule rounded up to the grid makes no
    more requests and waits at most 1 % longer per order (plus under 1 s for checks before
    the grid's first point), so for every schedule it is (D_grid - 0.01 E[T] - F(1 s)) / 1.01."""
    bound = max(delay + cost * (requests - most_requests) for cost, requests, delay in found)
    mean = math.exp(MU + SIGMA**2 / 2)
    ratio = grid.times[1] / grid.times[0] - 1
    return (bound - ratio * mean - cdf(grid.times[0]) * grid.times[0]) / (1 + ratio)


def main() -> None:
    backoff = schedule.Policy()
    base_requests, base_delay = evaluate(backoff_checks(backoff))
    rows = [("backoff (defaults, no jitter)", base_requests, base_delay)]
    summary = true_summary()
    for cost in (20.0, 15.0, 10.0):
        policy = dataclasses.replace(
            backoff, mode="learned", request_cost=dt.timedelta(seconds=cost), explore=0.0
        )
        plan = placement.plan(
            summary, cost, policy.min_delay.total_seconds(), policy.max_delay.total_seconds()
        )
        requests, delay = evaluate(learned_checks(plan, policy))
        rows.append((f"optimal (placement.py), request_cost {cost:g}s", requests, delay))
    requests, delay, (first, pause, factor) = best_geometric(base_requests)
    rows.append(
        (
            f"best geometric: first {first:g}s, pause {pause:g}s x {factor:.1f}, cap 600s",
            requests,
            delay,
        )
    )
    print(f"log-normal: median {MEDIAN:g}s, p95 {P95:g}s (sigma {SIGMA:.4f}); exact integrals")
    print(f"{'schedule':<58} {'requests/order':>14} {'mean delay':>11}")
    for name, requests, delay in rows:
        print(f"{name:<58} {requests:>14.2f} {delay:>9.1f} s ({delay / base_delay:.2f})")
    grid = Grid.geometric()
    found = frontier(grid)
    half = base_delay / 2
    bound = lower_bound(base_requests, found, grid)
    print(
        f"no schedule at {base_requests:.2f} requests/order or fewer has a mean delay under "
        f"{bound:.1f} s ({bound / base_delay:.2f} of backoff's; any pauses)"
    )
    needed = base_requests
    while lower_bound(needed, found, grid) > half:
        needed += 0.01
    # the cheapest grid schedule at half the delay: bisection on the cost between the
    # frontier's points on either side of it
    low = max(cost for cost, _, delay in found if delay <= half)
    high = min(cost for cost, _, delay in found if delay > half)
    enough = min(requests for _, requests, delay in found if delay <= half)
    for _ in range(8):
        cost = (low + high) / 2
        requests, delay = optimal_on_grid(grid, cost)
        if delay <= half:
            low, enough = cost, min(enough, requests)
        else:
            high = cost
    print(
        f"half of backoff's delay ({half:.1f} s) takes at least {needed:.2f} requests/order "
        f"(the bound); {enough:.2f} suffice (the grid's optimal schedule, any pauses)"
    )


if __name__ == "__main__":
    main()
