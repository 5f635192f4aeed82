"""Chaos with real processes: four sweeps at once over two providers, SIGKILLed at random
moments again and again, `ordermon check` on the same orders, and an admin deciding and
re-sending orders meanwhile; then sweeps to the end. Nothing is refunded twice, nothing is
lost, no admin decision is overridden, and the figures are printed (`pytest -s`).

``ORDERMON_CHAOS_SEED`` picks the run (the choices are seeded; the timing is the machine's)."""

import collections
import contextlib
import dataclasses
import decimal
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ordermon import db, simulator, simulator_replies
from tests import chaos_support
from tests.conftest import KOD, SIFRE, TOKEN, config_document, run_cli

SEED = int(os.environ.get("ORDERMON_CHAOS_SEED", "10"))
ZNET_ID, BARAKAT_ID = "chaos-znet", "chaos-barakat"
ADMIN_PIN = "SET-BY-ADMIN"
ORDERS_PER_PROVIDER = 150
SWEEPS_AT_ONCE = 4
CHAOS_SECONDS = (50.0, 80.0)  # at least, at most; and until KILLS_WANTED
KILLS_WANTED = 35
SETTLE_SECONDS = 75.0
LEASE = 4.0
# Provider-wide outages (seconds from the start): the first hits the whole backlog, so pauses
# trip with work queued behind them.
OUTAGES = {"znet": (0.0, 6.0), "barakat": (20.0, 26.0)}


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


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    kind: str
    reference: str


@dataclasses.dataclass
class Figures:
    kills: int = 0
    check_kills: int = 0
    sweeps: int = 0
    sweep_exits: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    checks: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    check_refusals: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    admin: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    settle_sweeps: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


class Chaos:
    """The threads of the chaos phase: sweep slots, a killer, checkers and an admin."""

    def __init__(
        self,
        conn_url: str,
        config_path: Path,
        sim: simulator.Simulator,
        orders: list[Order],
        scripts: dict[str, tuple[str, ...]],
        logs: Path,
    ) -> None:
        self.db_url, self.config_path, self.sim = conn_url, config_path, sim
        self.orders, self.scripts, self.logs = orders, scripts, logs
        self.rng = random.Random(SEED)
        self.figures = Figures()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sweeping: dict[int, subprocess.Popen[bytes]] = {}
        self.checking: dict[int, subprocess.Popen[bytes]] = {}
        self.decided: dict[uuid.UUID, str] = {}  # the admin's status
        self.resent: dict[uuid.UUID, tuple[str, Any]] = {}  # the latest (reference, sentAt)
        self.fresh: queue.Queue[uuid.UUID] = queue.Queue()  # re-sent: check them at once
        self._serial = 0
        self._resends = 0
        self.outage: str | None = None  # the provider kind answering HTTP 500 to everything
        self.outage_replies = 0
        setattr(sim, "answer", self._answer_unless_down(sim.answer))  # noqa: B010

    def _answer_unless_down(self, answer: Any) -> Any:
        def answer_or_fail(path: str, query: dict[str, str], headers: Any) -> Any:
            kind = "znet" if path == simulator.ZNET_PATH else "barakat"
            if self.outage == kind:
                self.outage_replies += 1
                return simulator_replies.fault("http500", kind)
            return answer(path, query, headers)

        return answer_or_fail

    def _spawn(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        with self.lock:
            self._serial += 1
            err = self.logs / f"{args[0]}-{self._serial}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}
        command = [sys.executable, "-m", "ordermon", *args, "--config", str(self.config_path)]
        with err.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return process, err

    def _judge(self, what: str, code: int, err: Path, allowed: tuple[int, ...]) -> str:
        """A process's stderr, with a problem noted for an exit outside ``allowed`` or a
        traceback (its last line says which)."""
        said = err.read_text(errors="replace").strip()
        if code not in (*allowed, -signal.SIGKILL) or "Traceback" in said:
            last = (said.splitlines() or ["(nothing on stderr)"])[-1]
            self.figures.problems.append(f"{what} exited {code}: {last[:300]}")
        return said

    def sweep_slot(self) -> None:
        while not self.stop.is_set():
            process, err = self._spawn("sweep")
            with self.lock:
                self.sweeping[process.pid] = process
                self.figures.sweeps += 1
            code = process.wait()
            with self.lock:
                del self.sweeping[process.pid]
                self.figures.sweep_exits[code] += 1
            self._judge("a sweep", code, err, (0,))
            time.sleep(0.1)

    def killer(self) -> None:
        while not self.stop.is_set():
            time.sleep(self.rng.uniform(0.4, 1.6))
            with self.lock:
                checks = self.rng.random() < 0.15 and bool(self.checking)
                pool = sorted(self.checking.items() if checks else self.sweeping.items())
                if not pool:
                    continue
                _, victim = self.rng.choice(pool)
                if victim.poll() is None:
                    victim.send_signal(signal.SIGKILL)
                    if checks:
                        self.figures.check_kills += 1
                    else:
                        self.figures.kills += 1

    def checker(self) -> None:
        """Checks on random orders, most of them decided already."""
        while not self.stop.is_set():
            self._check(self.rng.choice(self.orders).id)

    def fresh_checker(self) -> None:
        """Checks on orders just re-sent, racing the sweeps that enrol the new dispatch."""
        while not self.stop.is_set():
            with contextlib.suppress(queue.Empty):
                self._check(self.fresh.get(timeout=0.5))

    def _check(self, order_id: uuid.UUID) -> None:
        process, err = self._spawn("check", str(order_id))
        with self.lock:
            self.checking[process.pid] = process
        code = process.wait()
        with self.lock:
            del self.checking[process.pid]
            self.figures.checks[code] += 1
        said = self._judge(f"a check of {order_id}", code, err, (0, 1))
        if code == 1:  # an expected refusal: the order is decided, or a sweep holds it now
            shape = re.sub(r"[0-9a-f-]{36}|\d[\d:-]+\d", "…", (said.splitlines() or [""])[-1])
            self.figures.check_refusals[shape[:110]] += 1

    def admin(self) -> None:
        with db.connect(self.db_url, autocommit=True) as conn:
            while not self.stop.is_set():
                time.sleep(self.rng.uniform(0.2, 0.7))
                order = self.rng.choice(self.orders)
                action = self.rng.choices(["approve", "reject", "resend"], [3, 2, 5])[0]
                if action == "resend":
                    self._resend(conn, order)
                    continue
                status = "approved" if action == "approve" else "rejected"
                row = conn.execute(
                    """UPDATE product_orders SET status = %(status)s::text,
                           "externalStatus" = %(external)s::text,
                           "pinCode" = CASE WHEN %(status)s::text = 'approved' THEN %(pin)s::text
                                            ELSE "pinCode" END
                       WHERE id = %(id)s AND status = 'pending' RETURNING id""",
                    {
                        "id": order.id,
                        "status": status,
                        "pin": ADMIN_PIN,
                        "external": "done" if status == "approved" else "failed",
                    },
                ).fetchone()
                if row is not None:
                    self.decided[order.id] = status
                    self.figures.admin[action] += 1

    def _resend(self, conn: db.Connection, order: Order) -> None:
        self._resends += 1
        reference = f"R{self._resends:04d}-{order.reference}"
        pin = f"completed:PIN-{reference}"
        waits = f"processing*{self.rng.randint(1, 12)}"
        steps = self.rng.choice([(pin,), ("failed",), (waits, pin), (waits, "failed")])
        self.scripts[reference] = steps
        self.sim.script(reference, *steps)
        row = conn.execute(
            """UPDATE product_orders SET provider_referans = %(ref)s, "sentAt" = now(),
                   "externalStatus" = 'sent'
               WHERE id = %(id)s AND status = 'pending' RETURNING "sentAt" AS sent_at""",
            {"id": order.id, "ref": reference},
        ).fetchone()
        if row is not None:
            self.resent[order.id] = (reference, row["sent_at"])
            self.figures.admin["resend"] += 1
            self.fresh.put(order.id)

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a broken test thread must fail the test, not hide
                self.figures.problems.append(f"{target.__name__} thread failed: {exc!r}")
                self.stop.set()

        return run

    def run(self) -> float:
        targets = [self.sweep_slot] * SWEEPS_AT_ONCE
        targets += [self.killer, self.admin, self.checker, self.fresh_checker]
        threads = [threading.Thread(target=self._guarded(t)) for t in targets]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        least, most = CHAOS_SECONDS
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= most or (elapsed >= least and self.figures.kills >= KILLS_WANTED):
                break
            self.outage = next((k for k, (a, b) in OUTAGES.items() if a <= elapsed < b), None)
            time.sleep(0.25)
        self.outage = None
        self.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        return time.monotonic() - started


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
    path.write_text(yaml.safe_dump(document))
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
