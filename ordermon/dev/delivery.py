"""Delivery-time distributions for the provider simulator: each order is ``processing`` until
its own delivery time after dispatch, then completed, on a compressed clock (``speed`` times
faster than real time, so a day of deliveries takes minutes).

Used by the schedule benchmark (benchmarks/learned.py) to compare backoff with the learned
schedule on the same orders. Each order's requests and the moment its PIN was first handed
out are kept, so the detection delay (first final check minus delivery) is measured where it
happens, at the provider."""

import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable

# Draws are in simulated seconds after dispatch.
Draw = Callable[[random.Random], float]


def lognormal(median: float = 90.0, p95: float = 600.0) -> Draw:
    """A log-normal with this median and 95th percentile (seconds)."""
    sigma = math.log(p95 / median) / 1.6449

    def draw(rng: random.Random) -> float:
        return median * math.exp(sigma * rng.gauss(0.0, 1.0))

    return draw


def bimodal(fast_share: float = 0.7, fast_within: float = 20.0, slow_after: float = 1200.0) -> Draw:
    """``fast_share`` of orders within ``fast_within`` seconds (uniform), the others after
    ``slow_after`` (exponential, mean 5 minutes more)."""

    def draw(rng: random.Random) -> float:
        if rng.random() < fast_share:
            return rng.uniform(0.0, fast_within)
        return slow_after + rng.expovariate(1 / 300.0)

    return draw


DISTRIBUTIONS: dict[str, Draw] = {"lognormal": lognormal(), "bimodal": bimodal()}


@dataclasses.dataclass
class Delivery:
    dispatched: float  # real time.time()
    after: float  # simulated seconds from dispatch to delivery
    requests: int = 0
    found_at: float | None = None  # real time of the first request answered completed


class DeliveryFates:
    """A simulator ``fate``: ``processing`` until the order's delivery, then completed."""

    def __init__(self, speed: float, clock: Callable[[], float] = time.time) -> None:
        self.speed, self.clock = speed, clock
        self.orders: dict[str, Delivery] = {}
        self._lock = threading.Lock()

    def dispatch(self, reference: str, after: float, at: float | None = None) -> None:
        """Order ``reference`` was dispatched now (or at ``at``) and is delivered ``after``
        simulated seconds later."""
        with self._lock:
            self.orders[reference] = Delivery(self.clock() if at is None else at, after)

    def __call__(self, reference: str, served: int) -> str:
        now = self.clock()
        with self._lock:
            order = self.orders.get(reference)
            if order is None:
                return "unknown"
            order.requests += 1
            if now < order.dispatched + order.after / self.speed:
                return "processing"
            if order.found_at is None:
                order.found_at = now
        return f"completed:PIN-{reference}"

    def delay(self, reference: str) -> float | None:
        """Simulated seconds from delivery to the check that found it; None: not yet."""
        with self._lock:
            order = self.orders[reference]
            if order.found_at is None:
                return None
            return (order.found_at - order.dispatched) * self.speed - order.after

    def pending(self, references: list[str]) -> int:
        with self._lock:
            return sum(1 for r in references if self.orders[r].found_at is None)
