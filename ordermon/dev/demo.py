"""`ordermon demo`: the whole loop with no setup. A private PostgreSQL, the shop's tables,
four simulated providers (fast, slow, flaky and down), a few dozen dispatched orders with mixed
fates, and sweeps on a compressed schedule until every order is settled; then the status view."""

import contextlib
import datetime as dt
import decimal
import itertools
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from ordermon import config, db, errors, migrate
from ordermon.config import human
from ordermon.dev import embedded, simulator
from ordermon.ops import report, report_html, status
from ordermon.sweep import sweep

# (provider, what happens, script): the providers' answers about each order, in turn.
FATES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("fast", "delivered at once", ("completed:{pin}",)),
    ("slow", "processing, then delivered", ("processing", "completed:{pin}")),
    ("fast", "refused: refunded", ("processing", "failed")),
    ("flaky", "HTTP 500 twice, then delivered", ("http500*2", "completed:{pin}")),
    ("fast", "delivered without a PIN", ("processing-blank", "completed")),
    ("slow", "refused: refunded", ("failed",)),
    ("fast", "never resolves: expires", ("processing",)),
    ("flaky", "unknown word, then delivered", ("word:LIMBO", "completed:{pin}")),
    ("fast", "admin approves it meanwhile", ("processing",)),
    ("down", "provider down: waits", ("completed:{pin}",)),
)
SCHEDULE = {
    "first_check_after": "0s",
    "base_delay": "1s",
    "factor": 1.5,
    "max_delay": "3s",
    "jitter": 0.1,
    "give_up_after": "12s",
}
KOD, SIFRE, TOKEN = "4711", "demo-secret", "demo-token"


def run(order_count: int, report_path: Path) -> None:
    import signal
    import sys

    from ordermon.cli import tables

    # SIGTERM ends the demo as Ctrl-C does: on the way out its private PostgreSQL is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    console = tables.console(markup=True)  # plain and complete off a terminal
    with contextlib.ExitStack() as stack:
        console.print("[bold]ordermon demo[/]: starting a private PostgreSQL ...")
        # Stopped, and exited, before its directory goes and before the demo returns.
        url = stack.enter_context(embedded.temporary(prefix="ordermon-demo-"))
        conn = stack.enter_context(db.connect(url, autocommit=True))
        fast = stack.enter_context(simulator.Simulator(kod=KOD, sifre=SIFRE))
        slow = stack.enter_context(simulator.Simulator(token=TOKEN, latency=0.8))
        flaky = stack.enter_context(simulator.Simulator(token=TOKEN))
        sims = {"fast": fast, "slow": slow, "flaky": flaky}
        conn.execute(db.platform_schema().encode())
        migrate.run(conn)
        cfg = _config(url, fast.url, slow.url, flaky.url)
        orders = _dispatch(conn, sims, order_count)
        console.print(
            f"{human.plural(len(orders), 'order')} dispatched to four simulated providers: "
            "[bold]fast[/] (znet), "
            "[bold]slow[/] (barakat, 0.8 s a reply), [bold]flaky[/] (json, errors now and then) "
            "and [bold]down[/] (nobody answers). Cron would run `ordermon sweep` every minute; "
            "the demo runs it every second.\n"
        )
        _watch(console, conn, cfg, orders)
        console.print()
        from ordermon.cli import render

        render.status_view(status.gather(conn, cfg, sweep.utc_now(), runs=3))
        _report(console, conn, cfg, report_path)


def _report(console: Any, conn: db.Connection, cfg: config.Config, path: Path) -> None:
    """The demo's `ordermon report --html`; without the report extra, how to get it (the
    demo still ends well: the page is a bonus)."""
    try:
        plotly = report_html.plotly_js()
    except errors.UsageError:
        from rich.markup import escape

        # The demo's console reads markup: the extras' brackets are escaped.
        console.print(
            escape(
                f"\nThe report page needs plotly: {report_html.INSTALL_HINT} "
                "(or '.[embedded,report]' in a checkout), then run the demo again."
            )
        )
        return
    from rich.markup import escape

    figures = report.gather(conn, cfg, sweep.utc_now(), dt.timedelta(hours=1))
    report_html.write(path, report_html.page(figures, plotly), "--report")
    console.print(
        escape(f"\nThe report of the last hour, as charts (open it in a browser): {path}")
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(url: str, fast: str, slow: str, flaky: str) -> config.Config:
    def provider(name: str, kind: str, **keys: Any) -> dict[str, Any]:
        return {"id": f"demo-{name}", "name": name, "kind": kind, "timeout": "3s", **keys}

    document = {
        "database": {"url": url},
        "schedule": SCHEDULE,
        "sweep": {"batch_size": 50, "concurrency": 8, "lease": "30s"},
        "on_failed": "refund",
        "providers": [
            provider("fast", "znet", base_url=fast, kod=KOD, sifre=SIFRE),
            provider("slow", "barakat", base_url=slow, token=TOKEN, batch_size=4),
            provider("flaky", "json", **simulator.json_provider_keys(flaky, TOKEN)),
            provider(
                "down",
                "znet",
                base_url=f"http://127.0.0.1:{_closed_port()}",
                kod=KOD,
                sifre=SIFRE,
                pause={"after_failures": 2, "cooldown": "5s"},
            ),
        ],
    }
    return config.parse(document, {})


def _dispatch(
    conn: db.Connection, sims: dict[str, simulator.Simulator], count: int
) -> list[dict[str, Any]]:
    user_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO users (id, email, username, balance) VALUES (%(id)s, %(email)s, 'demo', 100)",
        {"id": user_id, "email": "customer@example.com"},
    )
    orders = []
    now = dt.datetime.now(dt.UTC)
    fates = zip(range(1, count + 1), itertools.cycle(FATES), strict=False)
    for number, (provider, label, steps) in fates:
        order_id, reference = uuid.uuid4(), str(1760885915220000 + number)
        if provider in sims:
            sims[provider].script(reference, *(s.format(pin=f"DEMO-{number:04d}") for s in steps))
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
                "provider": f"demo-{provider}",
                "sent": now,
                "ref": reference,
            },
        )
        orders.append({"id": order_id, "no": number, "provider": provider, "fate": label})
    return orders


def _watch(console: Any, conn: db.Connection, cfg: config.Config, orders: list[Any]) -> None:
    from rich.live import Live

    admin_orders = [o["id"] for o in orders if o["fate"].startswith("admin")]
    started = time.monotonic()
    totals: dict[str, int] = {}
    with Live(_table(conn, orders), console=console, auto_refresh=False) as live:
        while time.monotonic() - started < 40:
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
        + f"; {human.plural(refunds['n'], 'refund')} worth {refunds['total']} USD, customer "
        f"balance now {balance['balance']} USD (each order refunded at most once). The orders "
        "of the provider that is down wait, without spending attempts, until it answers again."
    )


def _settled(conn: db.Connection) -> bool:
    """Every order of a reachable provider is settled (the down provider's orders wait)."""
    row = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments "
        "WHERE state = 'waiting' AND provider_id <> 'demo-down'"
    ).fetchone()
    return row is not None and row["n"] == 0


def _table(conn: db.Connection, orders: list[Any]) -> Any:
    from rich.text import Text

    from ordermon.cli import tables

    rows = {
        r["id"]: r
        for r in conn.execute(
            """SELECT o.id, o.status, o."externalStatus" AS ext, o."pinCode" AS pin,
                      e.state, e.attempts
               FROM product_orders o
               LEFT JOIN ordermon_enrolments e ON e.order_id = o.id
                    AND e.id = (SELECT max(id) FROM ordermon_enrolments x
                                WHERE x.order_id = o.id)"""
        )
    }
    columns = ("no", "provider", "scripted fate", "status", "external", "ordermon", "checks")
    table = tables.table(Text("orders"), (*columns, "PIN"))
    colours = {"approved": "green", "rejected": "red", "pending": "yellow"}
    for order in orders:
        row = rows[order["id"]]
        colour = colours.get(row["status"], "white")
        table.add_row(
            str(order["no"]),
            order["provider"],
            order["fate"],
            f"[{colour}]{row['status']}[/]",
            row["ext"],
            row["state"] or "-",
            str(row["attempts"] or 0),
            row["pin"] or "",
        )
    return table
