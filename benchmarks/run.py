"""ordermon benchmarks: throughput, idle cost, large tables, many sweepers, memory.

    python benchmarks/run.py                 # every scenario, embedded PostgreSQL
    python benchmarks/run.py --dsn postgresql://postgres@127.0.0.1/postgres --only 1 4
    python benchmarks/run.py --quick         # smaller sizes, for a quick look

Sets up its own database (a fresh one on the server, or a private embedded PostgreSQL),
loads the shop's tables, creates orders, runs `ordermon sweep` as real processes against the
provider simulator (in this process), and prints a markdown table with the machine."""

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import cpu  # noqa: E402
from ordermon import db, migrate  # noqa: E402
from ordermon.dev import simulator  # noqa: E402

PROVIDER = "bench-provider"
Row = dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", help="a PostgreSQL server to create the bench database on")
    parser.add_argument("--only", nargs="*", type=int, help="scenario numbers")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    with _server(args.dsn) as server:
        rows: list[Row] = []
        try:
            for number, scenario in SCENARIOS.items():
                if args.only and number not in args.only:
                    continue
                doc = (scenario.__doc__ or "").splitlines()[0]
                print(f"scenario {number}: {doc}", file=sys.stderr)
                try:
                    rows.extend(scenario(_fresh_database(server), scale))
                finally:
                    # Gone before the next scenario, so that autovacuum on one scenario's
                    # tables does not weigh on the next one's figures.
                    _drop_databases(server)
            print(_report(server, rows, " ".join(sys.argv[1:])))
        finally:
            _drop_databases(server)


# ---------------------------------------------------------------- scenarios


def scenario_1(url: str, scale: float) -> list[Row]:
    """Throughput, one order per request (znet), against the bare HTTP ceiling."""
    count = int(10_000 * scale)
    with simulator.Simulator(kod="4711", sifre="bench") as sim:
        _populate(url, sim, count, "znet")
        sweep = _sweep(url, _config(url, "znet", sim.url))
        ceiling, ceiling_cpu = _ceiling(sim.url, count, 16, trust_env=False)
        trusting, _ = _ceiling(sim.url, count, 16, trust_env=True)
    rate = sweep["checks"] / sweep["seconds"]
    per_check = _per_item(sweep["cpu"], sweep["checks"])
    per_request = _per_item(ceiling_cpu, count)
    return [
        _row("1", "znet checks/s end to end (claim, HTTP, record)", rate, "checks/s"),
        _row("1", "ceiling: bare requests loop, same concurrency (16)", ceiling, "requests/s"),
        _row(
            "1",
            "sweep / ceiling",
            rate / ceiling,
            "ratio",
            target=">= 0.80",
            met=rate / ceiling >= 0.8,
        ),
        _row("1", "ceiling with trust_env=True (proxy/netrc look-ups)", trusting, "requests/s"),
        *_cpu_rows("1", "check", sweep["cpu"], sweep["seconds"], per_check),
        _row("1", "CPU per request, ceiling: HTTP loop", per_request.client, "ms"),
        _row("1", "CPU per request, ceiling: simulator", per_request.simulator, "ms"),
        _row(
            "1",
            "best ratio one Python process allows: loop's CPU per request / sweep's per check",
            per_request.client / per_check.client,
            "ratio",
        ),
    ]


def scenario_2(url: str, scale: float) -> list[Row]:
    """Throughput, batch protocol (barakat, batch_size 50)."""
    count = int(50_000 * scale)
    with simulator.Simulator(token="bench-token") as sim:
        _populate(url, sim, count, "barakat")
        sweep = _sweep(url, _config(url, "barakat", sim.url))
        requests_made = sim.count_kind("barakat")
    rate = sweep["checks"] / sweep["seconds"]
    per_order = _per_item(sweep["cpu"], sweep["checks"])
    # The same work for two sweeps at once: what both cores give when two pipelines keep
    # them busy (a sweep is one pipeline: its Python and its database take turns).
    second = _fresh_database(url)
    with simulator.Simulator(token="bench-token") as sim:
        _populate(second, sim, count, "barakat")
        config_path = _config(second, "barakat", sim.url)
        with cpu.CpuMeter() as meter:
            started = time.perf_counter()
            procs = [_start_sweep(config_path) for _ in range(2)]
            for proc in procs:
                proc.communicate(timeout=3600)
            both = time.perf_counter() - started
    return [
        _row(
            "2",
            f"barakat orders/s ({requests_made} requests)",
            rate,
            "orders/s",
            target=">= 5000",
            met=rate >= 5000,
        ),
        *_cpu_rows("2", "order", sweep["cpu"], sweep["seconds"], per_order),
        _row(
            "2",
            f"most orders/s the CPU allows ({os.cpu_count()} cores / CPU per order)",
            (os.cpu_count() or 1) / (per_order.total / 1000),
            "orders/s",
        ),
        _row("2", "two sweep processes at once: orders/s in all", count / both, "orders/s"),
        _row(
            "2",
            "two sweep processes at once: cores busy",
            meter.result.total / both,
            "cores",
        ),
    ]


def scenario_3(url: str, scale: float) -> list[Row]:
    """Latency-bound: 100 ms provider, concurrency 32."""
    count = int(5_000 * scale)
    with simulator.Simulator(kod="4711", sifre="bench", latency=0.1) as sim:
        _populate(url, sim, count, "znet")
        sweep = _sweep(url, _config(url, "znet", sim.url, concurrency=32))
    rate = sweep["checks"] / sweep["seconds"]
    return [
        _row(
            "3",
            "checks/s at 100 ms latency, concurrency 32 (ideal 320)",
            rate,
            "checks/s",
            target=">= 288",
            met=rate >= 288,
        ),
    ]


def scenario_4(url: str, scale: float) -> list[Row]:
    """Idle cost: a sweep with nothing due, against the psycopg floor."""
    config_path = _config(url, "znet", "http://127.0.0.1:9")
    _sweep(url, config_path)  # migrate-check once, create the run tables' pages
    sweep_cmd = [sys.executable, "-m", "ordermon", "sweep", "--config", str(config_path)]
    # The same provider on the learned schedule: an idle sweep must not read its summary.
    learned_path = config_path.with_suffix(".learned.yaml")
    document = yaml.safe_load(config_path.read_text())
    document["schedule"]["mode"] = "learned"
    learned_path.write_text(yaml.safe_dump(document))
    learned_cmd = [*sweep_cmd[:-1], str(learned_path)]
    floor_cmd = [
        sys.executable,
        "-c",
        f"import psycopg; psycopg.connect({url!r}).execute('SELECT 1').fetchone()",
    ]
    # An installed wheel has its bytecode compiled at install time; a checkout run with
    # PYTHONDONTWRITEBYTECODE (as on CI machines) would compile ordermon on every start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "ordermon")], check=True)
    sweep_s, learned_s, floor_s = _median_runs([sweep_cmd, learned_cmd, floor_cmd], 20)
    ratio = sweep_s / floor_s
    return [
        _row("4", "idle sweep, whole process (median of 20)", sweep_s * 1000, "ms"),
        _row("4", "idle sweep, the provider on the learned schedule", learned_s * 1000, "ms"),
        _row("4", "floor: python -c import psycopg, connect, one query", floor_s * 1000, "ms"),
        _row("4", "idle / floor", ratio, "ratio", target="<= 1.4", met=ratio <= 1.4),
    ]


def scenario_5(url: str, scale: float) -> list[Row]:
    """Large history: enrolment plus claim of a 500-order batch."""
    rows = []
    figures = {}
    for finished in (100_000, 1_000_000):
        size = int(finished * scale)
        database = _fresh_database_like(url)
        _history(database, size, int(10_000 * scale))
        figures[finished] = _enrol_and_claim(database)
        rows.append(
            _row(
                "5",
                f"enrol + claim 500 with {size:,} finished orders (median)",
                figures[finished] * 1000,
                "ms",
                target="< 20",
                met=figures[finished] < 0.020,
            )
        )
    ratio = figures[1_000_000] / figures[100_000]
    rows.append(
        _row("5", "at 1,000,000 / at 100,000", ratio, "ratio", target="<= 1.5", met=ratio <= 1.5)
    )
    return rows


def scenario_6(url: str, scale: float) -> list[Row]:
    """Many sweepers: 1, 2, 4, 8 processes on 20,000 orders, 50 ms provider."""
    return [_many_sweepers(url, scale, processes, "6") for processes in (1, 2, 4, 8)]


def scenario_9(url: str, scale: float) -> list[Row]:
    """Scenario 6's 8 sweepers through PgBouncer (transaction pooling, 4 server connections)."""
    from tests import pooler

    with pooler.running(url, pool_size=4) as port:
        return [_many_sweepers(url, scale, 8, "6 via PgBouncer", lambda u: pooler.pooled(u, port))]


def _many_sweepers(
    url: str,
    scale: float,
    processes: int,
    scenario: str,
    through: Callable[[str], str] = lambda direct: direct,
) -> Row:
    count = int(20_000 * scale)
    database = _fresh_database_like(url)
    with simulator.Simulator(kod="4711", sifre="bench", latency=0.05) as sim:
        _populate(database, sim, count, "znet", fates=False)
        config_path = _config(through(database), "znet", sim.url)
        started = time.perf_counter()
        procs = [_start_sweep(config_path) for _ in range(processes)]
        outcomes = [(proc.communicate(timeout=3600)[1], proc.returncode) for proc in procs]
        failed = [err for err, code in outcomes if code != 0]
        elapsed = time.perf_counter() - started
        twice = sum(1 for n in sim.counts().values() if n > 1)
    if failed:
        raise SystemExit(f"a sweep failed: {failed[0]}")
    return _row(
        scenario,
        f"{processes} sweep process(es): checks/s ({twice} orders asked twice)",
        count / elapsed,
        "checks/s",
        met=twice == 0,
        target="none twice",
    )


def scenario_7(url: str, scale: float) -> list[Row]:
    """Memory: peak RSS of a sweep over 10,000 orders."""
    count = int(10_000 * scale)
    with simulator.Simulator(kod="4711", sifre="bench") as sim:
        _populate(url, sim, count, "znet")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        _sweep(url, _config(url, "znet", sim.url))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    megabytes = max(peak, before) / 1024
    return [
        _row(
            "7",
            f"peak RSS of a sweep over {count:,} orders",
            megabytes,
            "MB",
            target="< 150",
            met=megabytes < 150,
        )
    ]


def scenario_8(url: str, scale: float) -> list[Row]:
    """Schedules: backoff against learned on the same orders (benchmarks/learned.py)."""
    from benchmarks import learned

    return learned.scenario_8(url, _fresh_database_like(url))


def scenario_10(url: str, scale: float) -> list[Row]:
    """Report: 30 days, 1,000,000 attempts, 200,000 orders; database time of every query."""
    import datetime as dt

    from benchmarks import report

    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    sizes = report.build(url, now, scale)
    print(f"  built in {time.perf_counter() - started:.0f} s: {sizes}", file=sys.stderr)
    rows = []
    cases = (("30d", dt.timedelta(days=30), ()), ("7d", dt.timedelta(days=7), ()))
    for label, since, names in (*cases, ("30d", dt.timedelta(days=30), ("znet",))):
        what = f"--since {label}" + "".join(f" --provider {n}" for n in names)
        before = report.load()
        figures = report.measure(url, now, since, names)
        wall = report.cli_wall(url, label, names)
        print(f"  {what}: load {before} .. {report.load()}", file=sys.stderr)
        for query, ms in figures["per_query"].items():
            print(
                f"    {query}: {ms:.0f} ms; {'; '.join(figures['plans'][query])}", file=sys.stderr
            )
        seq = report.seq_scans(figures["plans"])
        for found in seq:
            print(f"    SEQUENTIAL: {found}", file=sys.stderr)
        met = figures["db_median"] < 2000 and figures["db_max"] < 2000
        rows += [
            _row(
                "10",
                f"{what}: database time, median of {report.RUNS}",
                figures["db_median"],
                "ms",
                target="< 2000",
                met=met,
            ),
            _row("10", f"{what}: database time, max", figures["db_max"], "ms"),
            _row("10", f"{what}: gather() wall, median (client)", figures["wall_median"], "ms"),
            _row("10", f"{what}: `ordermon report --json` wall, median", wall, "ms"),
            _row(
                "10",
                f"{what}: sequential scans of period-bounded tables",
                len(seq),
                "scans",
                target="0",
                met=not seq,
            ),
        ]
    return rows


SCENARIOS: dict[int, Callable[[str, float], list[Row]]] = {
    1: scenario_1,
    2: scenario_2,
    3: scenario_3,
    4: scenario_4,
    5: scenario_5,
    6: scenario_6,
    7: scenario_7,
    8: scenario_8,
    9: scenario_9,
    10: scenario_10,
}


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from ordermon.dev import embedded

    with embedded.temporary(prefix="ordermon-bench-") as url:
        yield url


_databases: list[str] = []
_numbers = itertools.count()


def _drop_databases(server: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        for name in _databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    _databases.clear()


def _fresh_database(server: str) -> str:
    name = f"ordermon_bench_{os.getpid()}_{next(_numbers)}"
    _databases.append(name)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    with db.connect(url, autocommit=True) as conn:
        conn.execute(db.platform_schema().encode())
        migrate.run(conn)
    return url


def _fresh_database_like(url: str) -> str:
    return _fresh_database(url)


def _populate(
    url: str, sim: simulator.Simulator, count: int, kind: str, fates: bool = True
) -> None:
    """``count`` due orders; fates as on a real day: 70 % completed at the first check, 20 %
    processing once then completed, 10 % failed with a refund."""
    for i in range(count):
        reference = f"{700000000 + i}"
        if not fates or i % 10 < 7:
            sim.script(reference, f"completed:PIN{i}")
        elif i % 10 < 9:
            sim.script(reference, "processing", f"completed:PIN{i}")
        else:
            sim.script(reference, "failed")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, balance) VALUES "
            "('00000000-0000-4000-8000-000000000001', 'bench@example.com', 0)"
        )
        conn.execute(
            """INSERT INTO product_orders (id, status, "userId", "sellPriceAmount", "providerId",
                   "externalStatus", "sentAt", provider_referans)
               SELECT gen_random_uuid(), 'pending', '00000000-0000-4000-8000-000000000001', 1.00,
                      %(provider)s, 'sent', now() - interval '5 minutes', (700000000 + g)::text
               FROM generate_series(0, %(last)s) AS g""",
            {"provider": PROVIDER, "last": count - 1},
        )
        conn.execute("ANALYZE")


def _config(url: str, kind: str, sim_url: str, concurrency: int = 16) -> Path:
    provider: dict[str, Any] = {
        "id": PROVIDER,
        "name": "bench",
        "kind": kind,
        "base_url": sim_url,
        "timeout": "20s",
    }
    if kind == "znet":
        provider.update(kod="4711", sifre="bench")
    else:
        provider.update(token="bench-token", batch_size=50)
    document = {
        "database": {"url": url},
        "schedule": {"first_check_after": "0s", "give_up_after": "24h"},
        "sweep": {
            "batch_size": 100,
            "concurrency": concurrency,
            "lease": "5m",
            "soft_time_limit": "25m",
            "time_limit": "30m",
        },
        "providers": [provider],
    }
    path = Path(tempfile.mkstemp(prefix="ordermon-bench-", suffix=".yaml")[1])
    path.write_text(yaml.safe_dump(document))
    return path


def _start_sweep(config_path: Path) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "ordermon", "sweep", "--json", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _sweep(url: str, config_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with cpu.CpuMeter() as meter:
        proc = _start_sweep(config_path)
        out, err = proc.communicate(timeout=3600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed: {err}")
    report = json.loads(out)
    checks = report["completed"] + report["failed"] + report["processing"] + report["error"]
    return {"seconds": elapsed, "checks": checks, "report": report, "cpu": meter.result}


def _ceiling(
    url: str, count: int, concurrency: int, trust_env: bool
) -> tuple[float, cpu.CpuSeconds]:
    """Requests per second of the bare HTTP loop, and the CPU it and the simulator used."""
    with cpu.CpuMeter() as meter:
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "ceiling.py"),
                url + simulator.ZNET_PATH,
                str(count),
                str(concurrency),
                "1" if trust_env else "0",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return float(out.strip()), meter.result


def _per_item(used: cpu.CpuSeconds, items: int) -> cpu.CpuSeconds:
    """CPU milliseconds per item."""
    return cpu.CpuSeconds(
        postgres=used.postgres * 1000 / items,
        simulator=used.simulator * 1000 / items,
        client=used.client * 1000 / items,
    )


def _cpu_rows(
    scenario: str, item: str, used: cpu.CpuSeconds, seconds: float, per_item: cpu.CpuSeconds
) -> list[Row]:
    return [
        _row(scenario, f"CPU per {item}: sweep process", per_item.client, "ms"),
        _row(scenario, f"CPU per {item}: PostgreSQL", per_item.postgres, "ms"),
        _row(scenario, f"CPU per {item}: simulator", per_item.simulator, "ms"),
        _row(
            scenario,
            "cores busy during the sweep (CPU seconds / wall seconds)",
            used.total / seconds,
            "cores",
        ),
    ]


def _median_runs(commands: list[list[str]], runs: int) -> list[float]:
    """Median wall time of each command, run in turn so that a busy moment on the machine
    weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, samples in zip(commands, times, strict=True):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True, cwd=ROOT)
            samples.append(time.perf_counter() - started)
    return [statistics.median(samples) for samples in times]


def _history(url: str, finished: int, waiting: int) -> None:
    """``finished`` decided orders with their ordermon history, and ``waiting`` watched ones."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, balance) VALUES "
            "('00000000-0000-4000-8000-000000000001', 'bench@example.com', 0)"
        )
        conn.execute(
            """INSERT INTO product_orders (id, status, "userId", "providerId", "externalStatus",
                   "sentAt", provider_referans, "completedAt")
               SELECT gen_random_uuid(), 'approved', '00000000-0000-4000-8000-000000000001',
                      %(provider)s, 'done', now() - make_interval(mins => g %% 500000),
                      'h' || g, now()
               FROM generate_series(1, %(n)s) AS g""",
            {"provider": PROVIDER, "n": finished},
        )
        conn.execute(
            """INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,
                   attempts, next_check_at, deadline, last_outcome, finished_at)
               SELECT id, "providerId", provider_referans, "sentAt", 'done', 2, "sentAt",
                      "sentAt" + interval '24 hours', 'completed', "completedAt"
               FROM product_orders"""
        )
        conn.execute(
            """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at,
                   latency_ms, http_status, outcome, applied)
               SELECT id, order_id, provider_id, finished_at, 40, 200, 'completed', 'completed'
               FROM ordermon_enrolments"""
        )
        conn.execute(
            """INSERT INTO product_orders (id, status, "userId", "providerId", "externalStatus",
                   "sentAt", provider_referans)
               SELECT gen_random_uuid(), 'pending', '00000000-0000-4000-8000-000000000001',
                      %(provider)s, 'sent', now() - interval '1 minute', 'w' || g
               FROM generate_series(1, %(n)s) AS g""",
            {"provider": PROVIDER, "n": waiting},
        )
        conn.execute("VACUUM ANALYZE")


def _enrol_and_claim(url: str, runs: int = 15) -> float:
    """Median time of enrolment (nothing new after the first) plus one claim of 500, as
    successive sweeps take the backlog of due orders 500 at a time."""
    import datetime as dt
    import uuid

    from ordermon.sweep import enrolment, store

    rules = [
        store.ProviderRules(
            PROVIDER, "provider_referans", dt.timedelta(0), dt.timedelta(hours=24), None
        )
    ]
    times = []
    with db.connect(url, autocommit=True) as conn:
        enrolment.enrol(conn, rules)  # the first sweep enrols the 10,000 waiting orders
        conn.execute("VACUUM ANALYZE ordermon_enrolments")  # as autovacuum would after it
        waiting = store.count_due(conn, [PROVIDER], dt.datetime.now(dt.UTC))
        for _ in range(min(runs, waiting // 500)):
            now = dt.datetime.now(dt.UTC)
            started = time.perf_counter()
            with conn.transaction():
                enrolment.enrol_lock(conn)
                enrolment.enrol(conn, rules)
            with conn.transaction():
                claims = store.claim(
                    conn, rules, 500, uuid.uuid4(), now, now + dt.timedelta(minutes=5)
                )
            times.append(time.perf_counter() - started)
            assert len(claims) == 500
            # What recording does with answers still "processing": each claim released with
            # its next check later (one more update of the same rows, as in a sweep).
            conn.execute(
                "UPDATE ordermon_enrolments SET next_check_at = now() + interval '1 hour', "
                "claim_token = NULL, claimed_until = NULL WHERE id = ANY(%(ids)s)",
                {"ids": [c.enrolment_id for c in claims]},
            )
    return statistics.median(times)


def _row(
    scenario: str, what: str, value: float, unit: str, target: str = "", met: bool | None = None
) -> Row:
    return {
        "scenario": scenario,
        "what": what,
        "value": value,
        "unit": unit,
        "target": target,
        "met": met,
    }


def _report(server: str, rows: list[Row], arguments: str) -> str:
    with psycopg.connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"machine: {os.cpu_count()} cores, {memory:.0f} GiB, {platform.platform()}, "
        f"Python {platform.python_version()}, PostgreSQL {version[0] if version else '?'}",
        f"command: python benchmarks/run.py {arguments}".rstrip(),
        "",
        "| # | measure | value | unit | target | met |",
        "|---|---|---:|---|---|---|",
    ]
    for row in rows:
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(
            f"| {row['scenario']} | {row['what']} | {row['value']:,.2f} | {row['unit']} "
            f"| {row['target']} | {met} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
