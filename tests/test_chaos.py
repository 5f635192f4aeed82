"""Chaos with real processes: four sweeps at once over two providers, SIGKILLed at random
moments again and again, `ordermon check` on the same orders, and an admin deciding and
re-sending orders meanwhile; then sweeps to the end. Nothing is refunded twice, nothing is
lost, no admin decision is overridden, and the figures are printed (`pytest -s`).

``ORDERMON_CHAOS_SEED`` picks the run (the choices are seeded; the timing is the machine's)."""

import decimal
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ordermon import db
from ordermon.dev import simulator
from tests import chaos_support
from tests.chaos_actors import ADMIN_PIN, OUTAGES, SEED, Chaos, Figures, Order
from tests.conftest import KOD, SIFRE, TOKEN, config_document, run_cli

ZNET_ID, BARAKAT_ID = "chaos-znet", "chaos-barakat"
ORDERS_PER_PROVIDER = 150
SETTLE_SECONDS = 75.0
LEASE = 4.0


def _fate(i: int, kind: str) -> tuple[str, ...]:
    """A day's mix: most orders take several checks (so the work outlasts many kills), some
    answer slowly or hang past the timeout (so kills land in the middle of calls)."""
    pin = f"completed:PIN-{kind}-{i}"
    waits = f"processing*{2 + i * 7 % 25}"
    fault = "http500" if kind == "znet" else "garbage"
    return [
        (waits, pin),
        (pin,),
        (waits, "failed"),
        ("slow:1.5:processing", waits, pin),
        ("hang:3", waits, pin),
        (fault, waits, "failed"),
        (waits, f"slow:1.5:{pin}"),
        ("failed",),
        (waits, fault, pin),
        (waits, "slow:1:failed"),
    ][i % 10]


def _pin(steps: tuple[str, ...]) -> str | None:
    found = re.search(r"completed:(\S+)", " ".join(steps))
    return found.group(1) if found else None


def _refuses(steps: tuple[str, ...]) -> bool:
    return any(step.partition("*")[0].split(":")[-1] == "failed" for step in steps)


def _populate(
    conn: db.Connection, sim: simulator.Simulator
) -> tuple[list[Order], dict[str, tuple[str, ...]], dict[uuid.UUID, decimal.Decimal]]:
    users = {uuid.uuid4(): decimal.Decimal(f"{n}.00") for n in range(10)}
    for user, balance in users.items():
        conn.execute(
            "INSERT INTO users (id, email, balance) VALUES (%(id)s, %(email)s, %(balance)s)",
            {"id": user, "email": f"{user}@example.com", "balance": balance},
        )
    orders, scripts, rows = [], {}, []
    for kind, provider in (("znet", ZNET_ID), ("barakat", BARAKAT_ID)):
        for i in range(ORDERS_PER_PROVIDER):
            reference = f"{7100000 + i}" if kind == "znet" else f"{8200000 + i}"
            scripts[reference] = _fate(i, kind)
            sim.script(reference, *scripts[reference])
            order = Order(uuid.uuid4(), kind, reference)
            orders.append(order)
            rows.append(
                {
                    "id": order.id,
                    "user": list(users)[i % len(users)],
                    "provider": provider,
                    "amount": decimal.Decimal(f"{1 + i % 7}.{i % 100:02d}"),
                    "ref": reference,
                }
            )
    with conn.cursor() as cursor:
        cursor.executemany(
            """INSERT INTO product_orders (id, status, "userId", "sellPriceAmount", "providerId",
                   "externalStatus", "sentAt", provider_referans)
               VALUES (%(id)s, 'pending', %(user)s, %(amount)s, %(provider)s, 'sent',
                       now() - interval '1 minute', %(ref)s)""",
            rows,
        )
    return orders, scripts, users


def _config(path: Path, db_url: str, url: str) -> Path:
    pause = {"after_failures": 5, "cooldown": "1s", "max_cooldown": "2s"}
    common = {"base_url": url, "timeout": "2s", "pause": pause}
    document = config_document(
        db_url,
        url,
        providers=[
            {"id": ZNET_ID, "name": "znet", "kind": "znet", "kod": KOD, "sifre": SIFRE, **common},
            {
                "id": BARAKAT_ID,
                "name": "barakat",
                "kind": "barakat",
                "token": TOKEN,
                "batch_size": 10,
                **common,
            },
        ],
        schedule={
            "first_check_after": "0s",
            "base_delay": "300ms",
            "factor": 2,
            "max_delay": "1s",
            "jitter": 0.1,
            "give_up_after": "1h",
        },
        sweep={"batch_size": 50, "concurrency": 8, "lease": f"{LEASE:g}s"},
        on_failed="refund",
    )
    # A JSON round trip unshares the providers' common keys: YAML would write them as
    # aliases, which ordermon's config refuses.
    path.write_text(yaml.safe_dump(json.loads(json.dumps(document))))
    return path


_UNSETTLED = """
    SELECT (SELECT count(*) FROM ordermon_enrolments WHERE state = 'waiting') AS waiting,
           (SELECT count(*) FROM product_orders o
            WHERE o.status = 'pending' AND o."externalStatus" IN ('sent', 'queued', 'processing')
              AND NOT EXISTS (SELECT 1 FROM ordermon_enrolments e
                              WHERE e.order_id = o.id AND e.state = 'waiting'
                                AND e.reference = o.provider_referans
                                AND e.sent_at = o."sentAt")) AS unwatched"""


def _settle(conn: db.Connection, config_path: Path, figures: Figures) -> bool:
    """Sweeps, one after another and never killed, until nothing waits; False on time out."""
    time.sleep(LEASE + 0.5)  # the killed sweeps' claims come back
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if conn.execute(_UNSETTLED).fetchone() == {"waiting": 0, "unwatched": 0}:
            return True
        result = run_cli("sweep", "--config", str(config_path))
        figures.settle_sweeps += 1
        if result.returncode != 0 or "Traceback" in result.stderr:
            last = (result.stderr.strip().splitlines() or [""])[-1]
            figures.problems.append(f"a settling sweep exited {result.returncode}: {last}")
        time.sleep(0.3)
    return False


_ORDERS = """
    SELECT o.id, o.status, o."pinCode" AS pin, o.provider_referans AS reference,
           o."sentAt" AS sent_at, o."externalStatus" AS external,
           (SELECT count(*) FROM ordermon_refunds r WHERE r.order_id = o.id) AS refunds,
           (SELECT r.enrolment_id FROM ordermon_refunds r WHERE r.order_id = o.id) AS refund_by,
           (SELECT array_agg(a.enrolment_id) FROM ordermon_attempts a
            WHERE a.order_id = o.id AND a.applied = ANY(%(final)s)) AS finals,
           (SELECT array_agg(e.state || ' ' || e.reference ORDER BY e.id)
            FROM ordermon_enrolments e WHERE e.order_id = o.id) AS dispatches,
           (SELECT array_agg(e.id) FROM ordermon_enrolments e
            WHERE e.order_id = o.id AND e.reference = o.provider_referans
              AND e.sent_at = o."sentAt") AS current,
           (SELECT count(*) FROM ordermon_enrolments e WHERE e.order_id = o.id
              AND e.claim_token IS NOT NULL AND e.claimed_until < now()) AS stuck,
           (SELECT count(*) FROM ordermon_enrolments e WHERE e.order_id = o.id
              AND e.state = 'waiting' AND e.reference = o.provider_referans
              AND e.sent_at = o."sentAt") AS watched
    FROM product_orders o"""


def _verdicts(row: dict[str, Any], chaos: Chaos) -> list[str]:
    """What is wrong with one order at the end (nothing, one hopes)."""
    what = f"order {row['id']} ({row['status']}, dispatches {row['dispatches']})"
    finals, current = row["finals"] or [], row["current"] or []
    wrong = [f"finalised {len(finals)} times: {what}"] if len(finals) > 1 else []
    if row["stuck"]:
        wrong.append(f"claimed past its lease: {what}")
    decided = chaos.decided.get(row["id"])
    if decided is not None:
        if row["status"] != decided or row["refunds"] or finals:
            wrong.append(f"the admin's {decided} was overridden: {what}, refunds {row['refunds']}")
        if decided == "approved" and row["pin"] != ADMIN_PIN:
            wrong.append(f"the admin's PIN was replaced by {row['pin']!r}: {what}")
        return wrong
    if not current:
        return [*wrong, f"its current dispatch was never enrolled (lost): {what}"]
    script = chaos.scripts[row["reference"]]
    if row["status"] == "pending":
        if not (row["watched"] or row["external"] not in ("sent", "queued", "processing")):
            wrong.append(f"left pending, not waiting for a check (lost): {what}")
    elif finals and finals[0] not in current:
        wrong.append(f"decided by an old dispatch after a re-send: {what}")
    elif row["status"] == "approved" and (not finals or row["pin"] != _pin(script)):
        wrong.append(f"approved with PIN {row['pin']!r}, script {script}: {what}")
    elif row["status"] == "rejected" and (
        not finals or not _refuses(script) or row["refund_by"] not in current
    ):
        wrong.append(f"rejected/refunded though its dispatch {script} did not refuse: {what}")
    return wrong


@pytest.mark.timeout(600)
def test_chaos(db_url: str, conn: db.Connection, tmp_path: Path) -> None:
    """Four sweeps SIGKILLed at random again and again, with checks and an admin at work on
    the same orders, then sweeps to the end: no double refund, no lost order, no overridden
    decision, and every refund exactly what was paid."""
    with simulator.Simulator(kod=KOD, sifre=SIFRE, token=TOKEN, latency=0.05) as sim:
        # A killed client is the point here: no traceback on stderr for each reset.
        setattr(sim._server, "handle_error", lambda *args: None)  # noqa: B010
        orders, scripts, balances = _populate(conn, sim)
        config_path = _config(tmp_path / "chaos.yaml", db_url, sim.url)
        logs = tmp_path / "logs"
        logs.mkdir()
        chaos = Chaos(db_url, config_path, sim, orders, scripts, logs)
        seconds = chaos.run()
        figures = chaos.figures
        settled = _settle(conn, config_path, figures)
        requests = len(sim.requests)
    problems = list(figures.problems)
    if not settled:
        problems.append(
            f"not settled after {SETTLE_SECONDS:g}s: {conn.execute(_UNSETTLED).fetchone()}"
        )
    for row in conn.execute(_ORDERS, {"final": ["completed", "refunded", "rejected", "held"]}):
        problems.extend(_verdicts(row, chaos))
    try:
        chaos_support.assert_ledger(conn, balances)
    except AssertionError as exc:
        problems.append(str(exc))
    _print_figures(conn, chaos, seconds, requests)
    assert problems == [], f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def _print_figures(conn: db.Connection, chaos: Chaos, seconds: float, requests: int) -> None:
    f = chaos.figures
    statuses = {
        r["status"]: r["n"]
        for r in conn.execute("SELECT status, count(*) AS n FROM product_orders GROUP BY 1")
    }
    states = {
        r["state"]: r["n"]
        for r in conn.execute(
            "SELECT state, count(*) AS n FROM ordermon_enrolments GROUP BY 1 ORDER BY 1"
        )
    }
    refunds = conn.execute(
        "SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM ordermon_refunds"
    ).fetchone()
    assert refunds is not None
    print(
        f"\nchaos (seed {SEED}): {len(chaos.orders)} orders over 2 providers, "
        f"{seconds:.0f}s of chaos, {requests} provider requests, "
        f"{chaos.outage_replies} HTTP 500s in outages {OUTAGES}\n"
        f"  sweeps: {f.sweeps} started, {f.kills} SIGKILLed, exits {dict(f.sweep_exits)}; "
        f"{f.settle_sweeps} settling sweeps\n"
        f"  checks: {sum(f.checks.values())} runs, exits {dict(f.checks)}, "
        f"{f.check_kills} SIGKILLed\n"
        f"  check refusals (exit 1): {dict(f.check_refusals.most_common(6))}\n"
        f"  admin: {sum(f.admin.values())} actions {dict(f.admin)}\n"
        f"  refunds: {refunds['n']} totalling {refunds['total']}\n"
        f"  orders: {statuses}; enrolments: {states}\n"
        f"  problems: {len(f.problems)} from the processes"
    )
