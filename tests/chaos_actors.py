"""The actors of the chaos test, each a thread: sweep slots that start `ordermon sweep`
again and again, a killer that SIGKILLs them (and now and then a check) at random moments,
checkers running `ordermon check`, an admin deciding and re-sending orders, and outages when a
provider answers HTTP 500 to everything. Their choices are seeded by ``ORDERMON_CHAOS_SEED``.
"""

import collections
import contextlib
import dataclasses
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

from ordermon import db
from ordermon.dev import simulator, simulator_replies

SEED = int(os.environ.get("ORDERMON_CHAOS_SEED", "10"))
ADMIN_PIN = "SET-BY-ADMIN"
SWEEPS_AT_ONCE = 4
CHAOS_SECONDS = (50.0, 80.0)  # at least, at most; and until KILLS_WANTED
KILLS_WANTED = 35
# Provider-wide outages (kind, from, to: seconds from the start). The first ones hit the whole
# backlog, so that pauses trip with work queued behind them.
OUTAGES = (("znet", 0.0, 6.0), ("barakat", 0.0, 6.0), ("znet", 25.0, 30.0), ("barakat", 35.0, 40.0))


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
        self.down: set[str] = set()  # the provider kinds answering HTTP 500 to everything
        self.outage_replies = 0
        setattr(sim, "answer", self._answer_unless_down(sim.answer))  # noqa: B010

    def _answer_unless_down(self, answer: Any) -> Any:
        def answer_or_fail(path: str, query: dict[str, str], headers: Any) -> Any:
            kind = "znet" if path == simulator.ZNET_PATH else "barakat"
            if kind in self.down:
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
            self.down = {kind for kind, start, end in OUTAGES if start <= elapsed < end}
            time.sleep(0.25)
        self.down = set()
        self.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        return time.monotonic() - started
