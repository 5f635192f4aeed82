"""Scenario 8: backoff against the learned schedule on the same orders.

For each delivery-time distribution (log-normal, median 90 s, p95 10 min; bimodal, 70 %
within 20 s and 30 % after 20 min) on a clock ``SPEED`` times faster than real time, with a
real `ordermon sweep --every` loop process and the provider simulator:

1. backoff: N orders dispatched at once, each delivered at its own drawn time; until all
   are found;
2. warm-up, learned: a stream of other orders from the same distribution, so the learned
   summary is refreshed many times (its first summaries come from the backoff phase);
3. learned: the same N delivery times again, dispatched at once; until all are found.

Measured at the simulator, per order: requests, and the detection delay (the first check
that was answered with the PIN, minus the delivery), in simulated seconds. Every schedule
duration is divided by SPEED, so the compressed run is the real one, scaled.

    python benchmarks/run.py --dsn postgresql://postgres@127.0.0.1/postgres --only 8
"""

import datetime as dt
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from benchmarks import run as harness
from ordermon.dev import delivery, simulator

SPEED = 50.0  # simulated seconds per real second
ORDERS = 300
WARMUP_ORDERS = 600
ORDER_SECONDS = 30.0  # real seconds over which each phase's orders are dispatched
WARMUP_SECONDS = 60.0
BATCH = 10
SWEEP_EVERY = "100ms"  # real: 5 simulated seconds
KOD, SIFRE = "4711", "bench"
USER = "00000000-0000-4000-8000-000000000001"


def _scaled(seconds: float) -> float:
    return seconds / SPEED


def schedule(mode: str) -> dict[str, Any]:
    """The defaults of config.example.yaml, every duration divided by SPEED."""
    keys: dict[str, Any] = {
        "first_check_after": _scaled(60),
        "base_delay": _scaled(30),
        "factor": 2,
        "max_delay": _scaled(600),
        "jitter": 0.1,
        "give_up_after": _scaled(86400),
    }
    if mode == "learned":
        keys.update(
            mode="learned",
            min_delay=_scaled(5),
            request_cost=_scaled(20),
            refresh_every=_scaled(300),
            stale_after=_scaled(3600),
            min_samples=100,
            explore=0.1,
        )
    return keys


def _config(url: str, sim_url: str, mode: str) -> Path:
    document = {
        "database": {"url": url},
        "schedule": schedule(mode),
        "sweep": {"batch_size": 100, "concurrency": 16, "lease": "5m"},
        "providers": [
            {
                "id": harness.PROVIDER,
                "name": "bench",
                "kind": "znet",
                "base_url": sim_url,
                "kod": KOD,
                "sifre": SIFRE,
                "timeout": "20s",
            }
        ],
    }
    path = Path(tempfile.mkstemp(prefix="ordermon-bench-", suffix=".yaml")[1])
    path.write_text(yaml.safe_dump(document))
    return path


class _Phase:
    """Orders dispatched into one database and found by one sweep loop."""

    def __init__(self, url: str, fates: delivery.DeliveryFates) -> None:
        self.url, self.fates = url, fates

    def dispatch(self, prefix: str, delays: list[float]) -> list[str]:
        references = [f"{prefix}{i}" for i in range(len(delays))]
        now = dt.datetime.now(dt.UTC)
        for reference, after in zip(references, delays, strict=True):
            self.fates.dispatch(reference, after, now.timestamp())
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                """INSERT INTO product_orders (id, status, "userId", "sellPriceAmount",
                       "providerId", "externalStatus", "sentAt", provider_referans)
                   SELECT gen_random_uuid(), 'pending', %(user)s, 1.00, %(provider)s, 'sent',
                          %(now)s, ref FROM unnest(%(refs)s::text[]) AS ref""",
                {"user": USER, "provider": harness.PROVIDER, "now": now, "refs": references},
            )
        return references

    def stream(self, prefix: str, delays: list[float], seconds: float) -> list[str]:
        """Dispatch in batches of BATCH spread evenly over ``seconds`` (real), as orders
        arrive on a real day: all at once would make every check a herd, and a herd's
        sweep takes long enough on a compressed clock to weigh on every delay."""
        references = []
        pause = seconds / max(len(delays) / BATCH, 1)
        for start in range(0, len(delays), BATCH):
            references += self.dispatch(f"{prefix}{start}-", delays[start : start + BATCH])
            time.sleep(pause)
        return references

    def wait(self, references: list[str], most: float) -> None:
        deadline = time.monotonic() + most
        while self.fates.pending(references) and time.monotonic() < deadline:
            time.sleep(0.2)


def _loop(config_path: Path) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ordermon",
            "sweep",
            "--every",
            SWEEP_EVERY,
            "--config",
            str(config_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=harness.ROOT,
    )


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)


def distribution(url: str, name: str, seed: int) -> dict[str, Any]:
    """Both modes on one distribution: the figures of each, and the learned summary."""
    draw = delivery.DISTRIBUTIONS[name]
    rng = random.Random(seed)
    delays = [draw(rng) for _ in range(ORDERS)]
    warmup = [draw(rng) for _ in range(WARMUP_ORDERS)]
    most = 2 * max(delays) / SPEED + ORDER_SECONDS + 60
    fates = delivery.DeliveryFates(SPEED)
    figures: dict[str, Any] = {}
    with simulator.Simulator(kod=KOD, sifre=SIFRE, fate=fates, record=False) as sim:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO users (id, email, balance) VALUES (%(u)s, 'b@example.com', 0)",
                {"u": USER},
            )
        phase = _Phase(url, fates)
        proc = _loop(_config(url, sim.url, "backoff"))
        try:
            started = dt.datetime.now(dt.UTC)
            backoff = phase.stream("b", delays, ORDER_SECONDS)
            phase.wait(backoff, most)
        finally:
            _stop(proc)
        figures["backoff"] = _figures(fates, backoff) | _sweeps(url, started)
        proc = _loop(_config(url, sim.url, "learned"))
        try:
            phase.stream("w", warmup, WARMUP_SECONDS)
            started = dt.datetime.now(dt.UTC)
            learned = phase.stream("l", delays, ORDER_SECONDS)
            phase.wait(learned, most)
        finally:
            _stop(proc)
        figures["learned"] = _figures(fates, learned) | _sweeps(url, started)
    with psycopg.connect(url, autocommit=True) as conn:
        model = conn.execute("SELECT samples, p50, p90 FROM ordermon_schedule_models").fetchone()
    figures["model"] = (
        {"samples": model[0], "p50": _sim(model[1]), "p90": _sim(model[2])} if model else None
    )
    return figures


def _sweeps(url: str, since: dt.datetime) -> dict[str, float]:
    """How often the loop swept during a phase: the granularity of every check."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT count(*), extract(epoch FROM max(started_at) - min(started_at)),
                      extract(epoch FROM avg(finished_at - started_at))
               FROM ordermon_runs WHERE started_at >= %(since)s""",
            {"since": since},
        ).fetchone()
    assert row is not None
    count, span, mean = row
    return {
        "sweeps": count,
        "sweep_every_sim_s": float(span or 0) / max(count - 1, 1) * SPEED,
        "sweep_takes_sim_s": float(mean or 0) * SPEED,
    }


def _sim(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * SPEED


def _figures(fates: delivery.DeliveryFates, references: list[str]) -> dict[str, float]:
    requests = sorted(fates.orders[r].requests for r in references)
    delays = sorted(d for d in (fates.delay(r) for r in references) if d is not None)
    return {
        "orders": len(references),
        "found": len(delays),
        "requests_mean": statistics.fmean(requests),
        "requests_p95": requests[int(0.95 * (len(requests) - 1))],
        "delay_mean": statistics.fmean(delays) if delays else float("nan"),
        "delay_p95": delays[int(0.95 * (len(delays) - 1))] if delays else float("nan"),
    }


def scenario_8(url: str, other_url: str) -> list[harness.Row]:
    """Schedules: backoff against learned, log-normal and bimodal deliveries, each in its
    own database, at the same time."""
    urls = {"lognormal": url, "bimodal": other_url}
    results: dict[str, dict[str, Any]] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, distribution(urls[n], n, 13)))
        for n in urls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = []
    for name, figures in results.items():
        for mode in ("backoff", "learned"):
            f = figures[mode]
            what = f"{name}, {mode}: requests/order mean (p95)"
            rows.append(harness._row("8", what, f["requests_mean"], f"p95 {f['requests_p95']}"))
            what = f"{name}, {mode}: detection delay mean (p95 {f['delay_p95']:.0f} s)"
            rows.append(harness._row("8", what, f["delay_mean"], "s"))
        b, le = figures["backoff"], figures["learned"]
        ratio = le["delay_mean"] / b["delay_mean"]
        fewer = le["requests_mean"] <= b["requests_mean"]
        rows.append(
            harness._row(
                "8",
                f"{name}: learned / backoff mean delay (requests {le['requests_mean']:.2f} "
                f"vs {b['requests_mean']:.2f})",
                ratio,
                "ratio",
                target="<= 0.5, no more requests",
                met=ratio <= 0.5 and fewer,
            )
        )
        print(f"{name}: {figures}", file=sys.stderr)
    return rows
