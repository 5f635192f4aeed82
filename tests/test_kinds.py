"""Every provider kind against the simulator: each reply variant maps to the right outcome and
the right product_orders columns."""

import json
import uuid
from typing import Any

import pytest

from ordermon import config, db
from ordermon.dev import simulator
from ordermon.sweep import sweep
from tests.conftest import (
    TOKEN,
    FakeClock,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    order_row,
    provider_doc,
)


def _cfg(db_url: str, sim: simulator.Simulator, *docs: dict[str, Any]) -> config.Config:
    return config.parse(config_document(db_url, sim.url, providers=list(docs)), {})


def _sweep(conn: db.Connection, cfg: config.Config) -> sweep.Report:
    return sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())


def _outcomes(conn: db.Connection, orders: dict[str, uuid.UUID]) -> dict[str, tuple[Any, ...]]:
    result = {}
    for label, order in orders.items():
        row = order_row(conn, order)
        result[label] = (row["status"], row["externalStatus"], row["pinCode"])
    return result


@pytest.fixture
def token_sim() -> Any:
    with simulator.Simulator(token=TOKEN) as server:
        yield server


@pytest.mark.parametrize("kind", ["barakat", "apstore"])
def test_barakat_protocol(
    conn: db.Connection, token_sim: simulator.Simulator, db_url: str, kind: str
) -> None:
    """Status words, PINs, missing and extra items, and uuid=1 decided per id."""
    sim = token_sim
    sim.extra_items = True
    user = add_user(conn)
    provider_id = f"{kind}-id"
    scripts = {
        "delivered": ("1001", "completed:PIN-1001"),
        "refused": ("1002", "failed"),
        "waiting": ("1003", "processing"),
        "new word": ("1004", "word:teleported"),
        "missing": ("1005", "missing"),
        "mixed case": ("1006", "word: Success "),
    }
    orders = {}
    for label, (reference, step) in scripts.items():
        sim.script(reference, step)
        orders[label] = add_order(conn, user, reference, provider_id=provider_id)
    shop_uuid = str(uuid.uuid4())
    sim.script(shop_uuid, "completed:PIN-UUID")
    orders["by uuid"] = add_order(
        conn, user, None, provider_id=provider_id, externalOrderId=shop_uuid
    )
    report = _sweep(conn, _cfg(db_url, sim, provider_doc(kind, sim.url)))
    assert report.counts["claimed"] == 7
    assert _outcomes(conn, orders) == {
        "delivered": ("approved", "done", "PIN-1001"),
        "refused": ("rejected", "failed", None),
        "waiting": ("pending", "processing", None),
        "new word": ("pending", "sent", None),
        "missing": ("pending", "sent", None),
        "mixed case": ("approved", "done", None),
        "by uuid": ("approved", "done", "PIN-UUID"),
    }
    assert order_row(conn, orders["delivered"])["providerMessage"] == "Teslim edildi"
    requests = [r for r in sim.requests if r.kind == "barakat"]
    assert len(requests) == 2  # the uuid id went in a call of its own
    assert sorted(len(r.references) for r in requests) == [1, 6]
    assert enrolment_of(conn, orders["missing"])["last_message"] == (
        "missing from the provider's reply"
    )


def test_internal_protocol(
    conn: db.Connection, token_sim: simulator.Simulator, db_url: str
) -> None:
    """approved, rejected, pending, sent, unknown and missing, keyed by our own order id."""
    sim = token_sim
    user = add_user(conn)
    steps = {
        "approved": "completed:SISTER-PIN",
        "rejected": "failed",
        "pending": "processing",
        "sent": "word:sent",
        "unknown": "word:lost",
        "missing": "missing",
    }
    orders = {}
    for label, step in steps.items():
        order = add_order(conn, user, None, provider_id="internal-id")
        sim.script(str(order), step)
        orders[label] = order
    _sweep(conn, _cfg(db_url, sim, provider_doc("internal", sim.url)))
    assert _outcomes(conn, orders) == {
        "approved": ("approved", "done", "SISTER-PIN"),
        "rejected": ("rejected", "failed", None),
        "pending": ("pending", "processing", None),
        "sent": ("pending", "processing", None),
        "unknown": ("pending", "sent", None),
        "missing": ("pending", "sent", None),
    }
    [request] = sim.requests
    assert request.kind == "internal" and len(request.references) == 6


def test_json_kind(conn: db.Connection, token_sim: simulator.Simulator, db_url: str) -> None:
    """The generic kind reads the status, PIN and message where the config says."""
    sim = token_sim
    user = add_user(conn)
    steps = {
        "delivered": "completed:J-PIN",
        "refused": "failed",
        "waiting": "processing",
        "unmapped": "word:ON_HOLD",
        "not found": "missing",
    }
    orders = {}
    for number, (label, step) in enumerate(steps.items()):
        reference = f"J/{number}"  # quoted into the URL path
        sim.script(reference, step)
        orders[label] = add_order(conn, user, reference, provider_id="json-id")
    _sweep(conn, _cfg(db_url, sim, provider_doc("json", sim.url)))
    assert _outcomes(conn, orders) == {
        "delivered": ("approved", "done", "J-PIN"),
        "refused": ("rejected", "failed", None),
        "waiting": ("pending", "processing", None),
        "unmapped": ("pending", "sent", None),
        "not found": ("pending", "sent", None),
    }
    assert order_row(conn, orders["delivered"])["lastMessage"] == "state DELIVERED"
    assert sorted(r.references[0] for r in sim.requests) == [f"J/{n}" for n in range(5)]


@pytest.mark.parametrize("kind", ["barakat", "internal", "json", "znet"])
@pytest.mark.parametrize(
    "fault", ["http500", "401", "429:5", "garbage", "truncated", "badutf8", "empty", "huge"]
)
def test_request_faults_are_errors(conn: db.Connection, db_url: str, kind: str, fault: str) -> None:
    """Every request-level fault leaves the orders pending, never failed."""
    with simulator.Simulator(token=TOKEN, kod="4711", sifre="s3cr3t-sifre-value") as sim:
        user = add_user(conn)
        provider_id = f"{kind}-id"
        order = add_order(conn, user, "5150", provider_id=provider_id)
        sim.script(str(order) if kind == "internal" else "5150", fault)
        _sweep(conn, _cfg(db_url, sim, provider_doc(kind, sim.url)))
        row = order_row(conn, order)
        assert (row["status"], row["externalStatus"]) == ("pending", "sent")
        attempt = conn.execute("SELECT outcome, message FROM ordermon_attempts").fetchone()
        assert attempt is not None and attempt["outcome"] == "error"


def _one(item: dict[str, Any], ref: str = "67890") -> Any:
    from ordermon.providers import barakat

    body = json.dumps({"status": "OK", "data": [item]}).encode()
    return barakat.parse(200, body, [ref])[ref]


@pytest.mark.parametrize(
    ("item", "outcome", "pin", "message"),
    [
        (
            {
                "order_id": "67890",
                "status": "accept",
                "pin": "ABC123",
                "note": "n",
                "replay_api": ["", "done it"],
            },
            "completed",
            "ABC123",
            "done it",
        ),
        ({"order_id": 67890, "state": "SUCCESS", "code": 555}, "completed", "555", None),
        (
            {"order_id": "67890", "orderStatus": "done", "voucher": " V-1 "},
            "completed",
            "V-1",
            None,
        ),
        (
            {"order_id": "67890", "status": "ok", "pin": "", "serial": "S-9"},
            "completed",
            "S-9",
            None,
        ),
        ({"order_id": "67890", "status": "complete", "pin": " - "}, "completed", None, None),
        (
            {"order_id": "67890", "status": None, "state": "canceled", "message": "m"},
            "failed",
            None,
            "m",
        ),
        ({"order_id": "67890", "status": "fail", "desc": "d"}, "failed", None, "d"),
        ({"order_id": "67890", "status": "inprogress", "text": "t"}, "processing", None, "t"),
        ({"order_id": "67890", "status": "queue"}, "processing", None, None),
        ({"order_id": "67890", "status": "accepted"}, "error", None, "unknown status 'accepted'"),
        ({"order_id": "67890"}, "error", None, "unknown status 'none'"),
        (
            {"order_id": "11111", "status": "accept"},
            "error",
            None,
            "missing from the provider's reply",
        ),
    ],
)
def test_barakat_reply_rules(
    item: dict[str, Any], outcome: str, pin: str | None, message: str | None
) -> None:
    """The status, PIN and message rules of providers.md, one by one."""
    answer = _one(item)
    assert (str(answer.outcome), answer.pin, answer.message) == (outcome, pin, message)


def test_barakat_request_level_errors() -> None:
    """A non-OK top-level status, a non-JSON body or an HTTP error fails every order's check."""
    from ordermon.providers import barakat

    refs = ["1", "2"]
    for status, body in [
        (200, b'{"status": "ERROR", "data": []}'),
        (200, b"<html>"),
        (502, b'{"status": "OK", "data": []}'),
        (200, b'{"status": "OK"}'),
    ]:
        answers = barakat.parse(status, body, refs)
        assert {str(a.outcome) for a in answers.values()} == {"error"}
