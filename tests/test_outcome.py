"""What each outcome writes: the exact columns of product_orders, users and
wallet_transactions, for every on_failed policy."""

import datetime as dt
import decimal
import json
import threading
import time
import uuid
from typing import Any

import pytest

from ordermon import config, db
from ordermon.dev import simulator
from ordermon.sweep import sweep
from tests.conftest import (
    FakeClock,
    add_order,
    add_user,
    enrolment_of,
    make_config,
    order_row,
)

REF = "1760885915220128"


def _sweep(conn: db.Connection, cfg: config.Config, clock: FakeClock) -> sweep.Report:
    return sweep.run(conn, cfg, sweep.Options(), clock=clock)


def _wallet(conn: db.Connection) -> list[dict[str, Any]]:
    return list(conn.execute('SELECT * FROM wallet_transactions ORDER BY "createdAt"'))


def _balance(conn: db.Connection, user_id: uuid.UUID) -> decimal.Decimal:
    row = conn.execute("SELECT balance FROM users WHERE id = %(id)s", {"id": user_id}).fetchone()
    assert row is not None
    return decimal.Decimal(row["balance"])


def _attempts(conn: db.Connection, order_id: uuid.UUID) -> list[dict[str, Any]]:
    return list(
        conn.execute(
            "SELECT outcome, applied, http_status, message FROM ordermon_attempts "
            "WHERE order_id = %(id)s ORDER BY id",
            {"id": order_id},
        )
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_completed_writes_exactly_the_documented_columns(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """completed: approved, done, PIN, times, duration, messages and one system note."""
    user = add_user(conn)
    sent_at = clock.now - dt.timedelta(seconds=90)
    earlier_note = [{"by": "admin", "text": "VIP", "at": "2026-01-01T00:00:00Z"}]
    order = add_order(
        conn, user, REF, sent_at=sent_at, notes=json.dumps(earlier_note), notesCount=1
    )
    before = order_row(conn, order)
    sim.script(REF, "completed:AB12-CD34-EF56-GH78")
    report = _sweep(conn, make_config(db_url, sim.url), clock)
    assert report.counts["completed"] == 1
    after = order_row(conn, order)
    assert after["status"] == "approved"
    assert after["externalStatus"] == "done"
    assert after["pinCode"] == "AB12-CD34-EF56-GH78"
    assert after["completedAt"] == after["approvedAt"] == after["lastSyncAt"] == clock.now
    assert after["durationMs"] == 90_000
    assert after["providerMessage"] == after["lastMessage"] == "Teslim edildi"
    assert after["notesCount"] == 2 == len(after["notes"])
    assert after["notes"][0] == earlier_note[0]
    assert after["notes"][1]["by"] == "system"
    assert "alaya: delivered" in after["notes"][1]["text"]
    assert after["notes"][1]["at"] == clock.now.isoformat()
    unchanged = {
        "id",
        "userId",
        "sellPriceAmount",
        "sentAt",
        "provider_referans",
        "createdAt",
        "providerId",
        "quantity",
        "manualNote",
        "externalOrderId",
        "orderNo",
    }
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert _wallet(conn) == []
    assert _balance(conn, user) == decimal.Decimal("100.00")
    assert enrolment_of(conn, order)["state"] == "done"
    assert _attempts(conn, order) == [
        {
            "outcome": "completed",
            "applied": "completed",
            "http_status": 200,
            "message": "Teslim edildi",
        }
    ]


def test_completed_with_placeholder_stores_no_pin(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """A placeholder PIN ('-', blank) leaves pinCode NULL."""
    order = add_order(conn, add_user(conn), REF, pinCode="stale")
    sim.script(REF, "completed")
    _sweep(conn, make_config(db_url, sim.url), clock)
    after = order_row(conn, order)
    assert (after["status"], after["pinCode"]) == ("approved", None)


def test_failed_refund(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """failed + refund: rejected, the charged total returned once, one refund row."""
    user = add_user(conn, "5.00")
    order = add_order(
        conn, user, REF, amount="12.50", quantity=3, orderNo=1042, sellPriceCurrency="TRY"
    )
    sim.script(REF, "failed")
    report = _sweep(conn, make_config(db_url, sim.url), clock)
    assert report.counts["failed"] == 1
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("rejected", "failed")
    assert after["completedAt"] == after["lastSyncAt"] == clock.now
    assert after["approvedAt"] is None and after["pinCode"] is None
    assert after["providerMessage"] == "İptal edildi"
    assert "refunded 12.50 TRY" in after["notes"][-1]["text"]
    assert _balance(conn, user) == decimal.Decimal("17.50")  # never multiplied by quantity
    [wallet] = _wallet(conn)
    assert wallet["type"] == "refund"
    assert wallet["amount"] == decimal.Decimal("12.50")
    assert (wallet["balanceBefore"], wallet["balanceAfter"]) == (
        decimal.Decimal("5.00"),
        decimal.Decimal("17.50"),
    )
    assert (wallet["userId"], wallet["orderId"]) == (user, order)
    assert "1042" in wallet["description"]
    refunds = list(conn.execute("SELECT order_id, amount FROM ordermon_refunds"))
    assert refunds == [{"order_id": order, "amount": decimal.Decimal("12.50")}]
    assert enrolment_of(conn, order)["state"] == "done"


def test_failed_reject(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """failed + reject: rejected, no money moves."""
    user = add_user(conn)
    order = add_order(conn, user, REF)
    sim.script(REF, "failed")
    _sweep(conn, make_config(db_url, sim.url, on_failed="reject"), clock)
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("rejected", "failed")
    assert after["completedAt"] == clock.now
    assert _wallet(conn) == [] and _balance(conn, user) == decimal.Decimal("100.00")


def test_failed_hold(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """failed + hold: still pending, externalStatus failed, no money, left for a person."""
    user = add_user(conn)
    order = add_order(conn, user, REF)
    sim.script(REF, "failed")
    _sweep(conn, make_config(db_url, sim.url, on_failed="hold"), clock)
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("pending", "failed")
    assert after["completedAt"] is None and after["durationMs"] is None
    assert after["lastSyncAt"] == clock.now
    assert "left pending for a person" in after["notes"][-1]["text"]
    assert _wallet(conn) == [] and _balance(conn, user) == decimal.Decimal("100.00")
    assert enrolment_of(conn, order)["state"] == "held"
    clock.advance(3600)
    _sweep(conn, make_config(db_url, sim.url, on_failed="hold"), clock)
    assert sim.count(REF) == 1  # a held order is not checked again


def test_refund_without_customer_is_held(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """An order with no userId cannot be refunded: it is held instead."""
    order = add_order(conn, None, REF)
    sim.script(REF, "failed")
    _sweep(conn, make_config(db_url, sim.url), clock)
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("pending", "failed")
    assert "no customer to refund" in after["notes"][-1]["text"]
    assert _wallet(conn) == []


def test_nothing_charged_is_rejected_without_a_wallet_row(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """A refund of 0 writes no wallet row; the order is rejected."""
    order = add_order(conn, add_user(conn), REF, amount="0")
    sim.script(REF, "failed")
    _sweep(conn, make_config(db_url, sim.url), clock)
    assert order_row(conn, order)["status"] == "rejected"
    assert _wallet(conn) == []


def test_processing_then_backoff(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """processing: externalStatus processing, lastSyncAt, message; next check after backoff."""
    order = add_order(conn, add_user(conn), REF)
    sim.script(REF, "processing*3", "completed:PIN")
    cfg = make_config(db_url, sim.url)
    _sweep(conn, cfg, clock)
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("pending", "processing")
    assert after["lastSyncAt"] == clock.now
    assert after["lastMessage"] == "İşlem bekleniyor"
    assert after["notesCount"] == 0 and after["completedAt"] is None
    enrolment = enrolment_of(conn, order)
    assert (enrolment["state"], enrolment["attempts"]) == ("waiting", 1)
    assert enrolment["next_check_at"] == clock.now + dt.timedelta(seconds=1)
    assert enrolment["claim_token"] is None
    _sweep(conn, cfg, clock)
    assert sim.count(REF) == 1  # not due yet
    for pause in (1, 2, 4):
        clock.advance(pause)
        _sweep(conn, cfg, clock)
    assert sim.count(REF) == 4
    assert order_row(conn, order)["status"] == "approved"


def test_error_leaves_the_order_untouched(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """error: not a column of product_orders changes; the check is retried later."""
    order = add_order(conn, add_user(conn), REF)
    before = order_row(conn, order)
    for step in ("http500", "empty", "request_error", "unknown", "garbage", "429:30"):
        sim.script(REF, step)
        _sweep(conn, make_config(db_url, sim.url), clock)
        clock.advance(600)
    assert order_row(conn, order) == before
    outcomes = [a["outcome"] for a in _attempts(conn, order)]
    assert outcomes == ["error"] * 6
    assert _wallet(conn) == []


def test_retry_after_pushes_the_next_check(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """A 429 with Retry-After: 120 moves the next check at least 120 s away."""
    order = add_order(conn, add_user(conn), REF)
    sim.script(REF, "429:120")
    _sweep(conn, make_config(db_url, sim.url), clock)
    assert enrolment_of(conn, order)["next_check_at"] == clock.now + dt.timedelta(seconds=120)


def test_expired_after_the_deadline(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """Still processing at the deadline: checked at the deadline, then expired, order untouched."""
    order = add_order(conn, add_user(conn), REF, sent_at=clock.now)
    sim.script(REF, "processing")
    document_schedule = {
        "first_check_after": "0s",
        "base_delay": "10s",
        "factor": 2,
        "max_delay": "10m",
        "jitter": 0,
        "give_up_after": "60s",
    }
    cfg = make_config(db_url, sim.url, schedule=document_schedule)
    for _ in range(15):  # 0 s to 70 s, every 5 s
        _sweep(conn, cfg, clock)
        clock.advance(5)
    enrolment = enrolment_of(conn, order)
    assert enrolment["state"] == "expired"
    # checks at 0, 10, 30 and at the deadline (60): the one past it was moved to it
    assert sim.count(REF) == 4
    assert enrolment["last_checked_at"] == enrolment["deadline"]
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("pending", "processing")


def test_max_attempts_expires(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """max_attempts checks, then expired."""
    order = add_order(conn, add_user(conn), REF)
    cfg = make_config(
        db_url,
        sim.url,
        schedule={"first_check_after": "0s", "base_delay": "1s", "jitter": 0, "max_attempts": 3},
    )
    for _ in range(10):
        _sweep(conn, cfg, clock)
        clock.advance(30)
    assert sim.count(REF) == 3
    assert enrolment_of(conn, order)["state"] == "expired"


def test_long_pin_is_an_error(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """A PIN longer than the column is never cut and stored: it is an error."""
    order = add_order(conn, add_user(conn), REF)
    sim.script(REF, "completed:" + "P" * 121)
    _sweep(conn, make_config(db_url, sim.url), clock)
    assert order_row(conn, order)["status"] == "pending"
    assert _attempts(conn, order)[0]["outcome"] == "error"


def test_admin_decision_during_the_call_wins(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """An admin rejects the order while its check is in flight: ordermon's 'completed' changes
    nothing and refunds nothing; the attempt is recorded as superseded."""
    user = add_user(conn)
    order = add_order(conn, user, REF)
    sim.script(REF, "slow:1.0:failed")

    def admin() -> None:
        time.sleep(0.4)
        with db.connect(db_url, autocommit=True) as other:
            other.execute(
                """UPDATE product_orders SET status = 'rejected', "manualNote" = 'by admin'
                   WHERE id = %(id)s""",
                {"id": order},
            )

    thread = threading.Thread(target=admin)
    thread.start()
    report = _sweep(conn, make_config(db_url, sim.url), clock)
    thread.join()
    assert report.counts["superseded"] == 1
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"], after["manualNote"]) == (
        "rejected",
        "sent",
        "by admin",
    )
    assert after["notesCount"] == 0 and after["lastSyncAt"] is None
    assert _wallet(conn) == [] and _balance(conn, user) == decimal.Decimal("100.00")
    assert _attempts(conn, order) == [
        {
            "outcome": "failed",
            "applied": "superseded",
            "http_status": 200,
            "message": "İptal edildi",
        }
    ]
    assert enrolment_of(conn, order)["state"] == "superseded"


def test_admin_decision_before_the_claim(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """An order approved by an admin after enrolment is retired at claim, without a call."""
    order = add_order(conn, add_user(conn), REF)
    sim.script(REF, "processing")
    cfg = make_config(db_url, sim.url)
    _sweep(conn, cfg, clock)
    conn.execute("UPDATE product_orders SET status = 'approved' WHERE id = %(id)s", {"id": order})
    clock.advance(60)
    report = _sweep(conn, cfg, clock)
    assert report.counts["superseded"] == 1
    assert sim.count(REF) == 1
    assert enrolment_of(conn, order)["state"] == "superseded"


def test_a_refund_never_happens_twice(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """An order refunded once, re-opened and re-sent, refused again: held, not refunded again."""
    user = add_user(conn, "0")
    order = add_order(conn, user, REF)
    sim.script(REF, "failed")
    sim.script("second-dispatch", "failed")
    cfg = make_config(db_url, sim.url)
    _sweep(conn, cfg, clock)
    assert _balance(conn, user) == decimal.Decimal("12.50")
    conn.execute(
        """UPDATE product_orders SET status = 'pending', "externalStatus" = 'sent',
               provider_referans = 'second-dispatch', "sentAt" = %(now)s WHERE id = %(id)s""",
        {"id": order, "now": clock.now},
    )
    clock.advance(60)
    _sweep(conn, cfg, clock)
    after = order_row(conn, order)
    assert (after["status"], after["externalStatus"]) == ("pending", "failed")
    assert "refunded once already" in after["notes"][-1]["text"]
    assert _balance(conn, user) == decimal.Decimal("12.50")
    assert len(_wallet(conn)) == 1


def test_duration_is_capped(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, clock: FakeClock
) -> None:
    """durationMs never overflows its integer column."""
    order = add_order(conn, add_user(conn), REF, sent_at=clock.now - dt.timedelta(days=40))
    sim.script(REF, "completed:X")
    _sweep(conn, make_config(db_url, sim.url), clock)
    assert order_row(conn, order)["durationMs"] == 2147483647
