"""The simulator's delivery-time distributions: the shapes the learned-schedule benchmark
relies on, each order processing until its own time, and the delay measured where it
happens."""

import random
import statistics

from ordermon.dev import delivery, simulate


def _draws(name: str, count: int = 20_000) -> list[float]:
    rng = random.Random(5)
    draw = delivery.DISTRIBUTIONS[name]
    return sorted(draw(rng) for _ in range(count))


def test_lognormal_has_median_90s_and_p95_10min() -> None:
    draws = _draws("lognormal")
    assert 85 < statistics.median(draws) < 95
    assert 560 < draws[int(0.95 * len(draws))] < 640


def test_bimodal_is_70_percent_within_20s_and_the_rest_after_20min() -> None:
    draws = _draws("bimodal")
    fast = sum(1 for d in draws if d <= 20) / len(draws)
    assert 0.68 < fast < 0.72
    assert all(d <= 20 or d >= 1200 for d in draws)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_order_is_processing_until_its_time_on_the_compressed_clock() -> None:
    """Delivered 100 simulated seconds after dispatch at 50x: 2 real seconds; the check at
    2.5 s finds it 25 simulated seconds late."""
    clock = _Clock()
    fates = delivery.DeliveryFates(50.0, clock)
    fates.dispatch("r1", 100.0)
    clock.now += 1.9
    assert fates("r1", 0) == "processing"
    assert fates.delay("r1") is None and fates.pending(["r1"]) == 1
    clock.now += 0.6
    assert fates("r1", 1) == "completed:PIN-r1"
    assert fates("r1", 2) == "completed:PIN-r1"
    assert abs((fates.delay("r1") or 0) - 25.0) < 1e-6
    assert fates.orders["r1"].requests == 3 and fates.pending(["r1"]) == 0
    assert fates("never-dispatched", 0) == "unknown"


def test_simulate_delivery_draws_each_order_its_own_time() -> None:
    """`ordermon simulate --delivery bimodal --speed 60`: the same seed gives each order the
    same delivery time; most orders are delivered within a third of a real second."""
    settings = simulate.settings(
        host="127.0.0.1",
        port=0,
        fate="delivered",
        seed=4,
        after_checks=0,
        after_seconds=0,
        latency=0,
        orders=[],
        delivery="bimodal",
        speed=60.0,
    )
    fates = simulate.Fates(settings)
    times = [fates.delivery_after(f"ref{i}") for i in range(1000)]
    assert times == [simulate.Fates(settings).delivery_after(f"ref{i}") for i in range(1000)]
    assert 0.65 < sum(1 for t in times if t <= 20 / 60) / len(times) < 0.75
    assert "bimodal" in simulate.describe(settings)
