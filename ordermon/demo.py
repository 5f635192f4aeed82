"""`ordermon demo`: the whole loop with no setup. A private PostgreSQL, the shop's tables, a
simulated znet provider, a few dozen dispatched orders with mixed fates, and sweeps on a
compressed schedule until every order is settled."""

import datetime as dt
import decimal
import itertools
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ordermon import config, db, embedded, migrate, simulator, sweep

PROVIDER_ID = "3b6d4c1e-0000-4000-8000-000000000001"
# (label, script): what the simulated provider will say about each order, in turn.
FATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("delivered at once", ("completed:{pin}",)),
    ("processing, then delivered", ("processing*2", "completed:{pin}")),
    ("refused: refund", ("processing", "failed")),
    ("flaky provider, then delivered", ("http500", "request_error", "completed:{pin}")),
    ("delivered without a PIN", ("processing-blank", "completed")),
    ("slow provider, then delivered", ("hang:1.5", "completed:{pin}")),
    ("never resolves: expires", ("processing",)),
    ("unknown status word, then refused", ("unknown", "failed")),
    ("admin approves it meanwhile", ("processing",)),
)
SCHEDULE = {
    "first_check_after": "0s",
    "base_delay": "1s",
    "factor": 1.5,
    "max_delay": "3s",
    "jitter": 0.1,
    "give_up_after": "12s",
}


def run(order_count: int) -> None:
    from rich.console import Console

    console = Console()
    with tempfile.TemporaryDirectory(prefix="ordermon-demo-") as tmp:
        console.print("[bold]ordermon demo[/]: starting a private PostgreSQL ...")
        url = embedded.start(Path(tmp) / "pg", delete_on_exit=True)
        with (
            db.connect(url, autocommit=True) as conn,
            simulator.Simulator(kod="4711", sifre="demo-secret") as sim,
        ):
            conn.execute(db.platform_schema().encode())
            migrate.run(conn)
            cfg = _config(url, sim.url)
            orders = _dispatch(conn, sim, order_count)
            console.print(
                f"{len(orders)} orders dispatched to a simulated znet panel at {sim.url}; "
                "cron would run `ordermon sweep` every minute, the demo runs it every second.\n"
            )
            _watch(console, conn, cfg, orders)


def _config(url: str, base_url: str) -> config.Config:
    document = {
        "database": {"url": url},
        "schedule": SCHEDULE,
        "sweep": {"batch_size": 50, "concurrency": 8, "lease": "30s"},
        "on_failed": "refund",
        "providers": [
            {
                "id": PROVIDER_ID,
                "name": "alaya",
                "kind": "znet",
                "base_url": base_url,
                "kod": "4711",
                "sifre": "demo-secret",
                "timeout": "3s",
            }
        ],
    }
    return config.parse(document, {})


def _dispatch(conn: db.Connection, sim: simulator.Simulator, count: int) -> list[dict[str, Any]]:
    user_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO users (id, email, username, balance) VALUES (%(id)s, %(email)s, 'demo', 100)",
        {"id": user_id, "email": "customer@example.com"},
    )
    orders = []
    now = dt.datetime.now(dt.UTC)
    for number, (label, steps) in zip(range(1, count + 1), itertools.cycle(FATES), strict=False):
        order_id, reference = uuid.uuid4(), str(1760885915220000 + number)
        pin = f"DEMO-{number:04d}-PIN"
        sim.script(reference, *(step.format(pin=pin) for step in steps))
        conn.execute(
            """INSERT INTO product_orders (id, "orderNo", status, "userId", "sellPriceAmount",
                   "sellPriceCurrency", "providerId", "externalStatus", "sentAt",
                   provider_referans)
               VALUES (%(id)s, %(no)s, 'pending', %(user)s, %(amount)s, 'USD', %(provider)s,
                   'sent', %(sent)s, %(ref)s)""",
            {
                "id": order_id,
                "no": number,
                "user": user_id,
                "amount": decimal.Decimal("2.50"),
                "provider": PROVIDER_ID,
                "sent": now,
                "ref": reference,
            },
        )
        orders.append({"id": order_id, "no": number, "fate": label})
    return orders


def _watch(console: Any, conn: db.Connection, cfg: config.Config, orders: list[Any]) -> None:
    from rich.live import Live

    admin_orders = [o["id"] for o in orders if o["fate"].startswith("admin")]
    started = time.monotonic()
    totals: dict[str, int] = {}
    with Live(_table(conn, orders), console=console, auto_refresh=False) as live:
        while time.monotonic() - started < 50:
            report = sweep.run(conn, cfg, sweep.Options())
            for name, value in report.counts.items():
                totals[name] = totals.get(name, 0) + value
            if admin_orders and time.monotonic() - started > 2:
                # A person decides these in the shop's admin panel while ordermon watches.
                conn.execute(
                    """UPDATE product_orders SET status = 'approved', "pinCode" = 'BY-ADMIN'
                       WHERE id = ANY(%(ids)s)""",
                    {"ids": admin_orders},
                )
                admin_orders = []
            live.update(_table(conn, orders), refresh=True)
            if _settled(conn):
                break
            time.sleep(1.0)
    balance = conn.execute("SELECT balance FROM users").fetchone()
    refunds = conn.execute(
        "SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM wallet_transactions"
    ).fetchone()
    assert balance is not None and refunds is not None
    console.print(
        f"\n[bold]done in {time.monotonic() - started:.0f}s[/]: "
        + ", ".join(f"{v} {k}" for k, v in totals.items() if v)
        + f"; {refunds['n']} refunds worth {refunds['total']} USD, customer balance now "
        f"{balance['balance']} USD (each order refunded at most once)."
    )


def _settled(conn: db.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting'"
    ).fetchone()
    return row is not None and row["n"] == 0


def _table(conn: db.Connection, orders: list[Any]) -> Any:
    from rich.table import Table

    rows = {
        r["id"]: r
        for r in conn.execute(
            """SELECT o.id, o.status, o."externalStatus" AS ext, o."pinCode" AS pin,
                      e.state, e.attempts, e.last_outcome
               FROM product_orders o
               LEFT JOIN ordermon_enrolments e ON e.order_id = o.id
                    AND e.id = (SELECT max(id) FROM ordermon_enrolments x
                                WHERE x.order_id = o.id)"""
        )
    }
    table = Table(title="orders", show_lines=False)
    for column in ("no", "scripted fate", "status", "externalStatus", "ordermon", "checks", "PIN"):
        table.add_column(column)
    colours = {"approved": "green", "rejected": "red", "pending": "yellow"}
    for order in orders:
        row = rows[order["id"]]
        colour = colours.get(row["status"], "white")
        table.add_row(
            str(order["no"]),
            order["fate"],
            f"[{colour}]{row['status']}[/]",
            row["ext"],
            row["state"] or "-",
            str(row["attempts"] or 0),
            row["pin"] or "",
        )
    return table
