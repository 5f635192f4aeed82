"""Findings of the hostile tester after issue 10 (expected to fail until fixed): replies that
contradict themselves are taken as a final answer, and a database password holding an
unencoded ``@`` is printed in part."""

import decimal
import json
import socket
from pathlib import Path
from typing import Any

from ordermon import db
from ordermon.dev import simulator
from tests import hostile
from tests.conftest import (
    PROVIDER_ID,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    order_row,
    provider_doc,
    run_cli,
    write_config,
)


def _serve_body(body: bytes) -> hostile.Server:
    return hostile.Server(hostile.reply(200, body))


def _sweep(tmp_path: Path, db_url: str, provider: dict[str, Any]) -> str:
    document = config_document(db_url, "http://127.0.0.1:9", providers=[provider])
    path = tmp_path / "ordermon.yaml"
    path.write_text(json.dumps(document))
    assert run_cli("migrate", "--config", str(path)).returncode == 0
    result = run_cli("sweep", "--config", str(path), "-v")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout + result.stderr


def test_a_znet_reply_with_a_second_status_line_is_an_error_not_a_refund(
    db_url: str, conn: db.Connection, tmp_path: Path
) -> None:
    """A znet body whose first line refuses and whose second line delivers is an error for
    that order: no refund on a contradictory answer."""
    with _serve_body(b"OK|3| |iptal\r\nOK|2|AB12-CD34|teslim") as server:
        doc = {
            "id": PROVIDER_ID,
            "name": "alaya",
            "kind": "znet",
            "base_url": server.url,
            "kod": "4711",
            "sifre": "s3cret",
            "timeout": "5s",
        }
        order_id = add_order(conn, add_user(conn), "1001", provider_id=PROVIDER_ID)
        _sweep(tmp_path, db_url, doc)
    row = order_row(conn, order_id)
    assert row["status"] == "pending", row
    refunds = conn.execute(
        'SELECT count(*) AS n FROM wallet_transactions WHERE "orderId" = %s', (order_id,)
    )
    assert refunds.fetchone()["n"] == 0  # type: ignore[index]


def test_a_json_reply_naming_its_status_key_twice_is_an_error(
    db_url: str, conn: db.Connection, tmp_path: Path
) -> None:
    """A json-kind reply whose object repeats a key with different values (CANCELLED, then
    DELIVERED) is an error for that order, never the last value taken as the answer."""
    body = b'{"result": {"state": "DELIVERED", "code": "PIN-1"}, "result": {"state": "CANCELLED"}}'
    with _serve_body(body) as server:
        doc = provider_doc("json", server.url, id=PROVIDER_ID)
        order_id = add_order(conn, add_user(conn), "3004", provider_id=PROVIDER_ID)
        _sweep(tmp_path, db_url, doc)
    assert order_row(conn, order_id)["status"] == "pending"


def test_a_barakat_item_naming_its_status_twice_is_an_error(
    db_url: str, conn: db.Connection, tmp_path: Path
) -> None:
    """A barakat item with "status" twice (accept, then reject) is an error for that order."""
    body = (
        b'{"status": "OK", "data": '
        b'[{"order_id": "2011", "status": "accept", "pin": "P1", "status": "reject"}]}'
    )
    with _serve_body(body) as server:
        doc = provider_doc("barakat", server.url, id=PROVIDER_ID)
        order_id = add_order(conn, add_user(conn), "2011", provider_id=PROVIDER_ID)
        _sweep(tmp_path, db_url, doc)
    assert order_row(conn, order_id)["status"] == "pending"


def test_a_database_password_holding_an_unencoded_at_sign_is_never_printed(
    tmp_path: Path,
) -> None:
    """A URL whose password holds a raw '@' (postgresql://shop:Pw0rd@SECRET/x@host/db), which
    cannot connect, is printed with none of the password's parts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    for url in (
        f"postgresql://shop:Pw0rd@S3CRET-tail/x@127.0.0.1:{port}/shop",
        f"shop:Pw0rd@S3CRET-tail/x@127.0.0.1:{port}/shop",
    ):
        document = config_document(url, "http://127.0.0.1:9")
        path = tmp_path / "c.yaml"
        path.write_text(json.dumps(document))
        for command in ("sweep", "status"):
            result = run_cli(command, "--config", str(path))
            output = result.stdout + result.stderr
            assert result.returncode == 1, output
            assert "S3CRET-tail" not in output, (url, output)


def test_a_url_without_a_password_is_shown_as_written(tmp_path: Path) -> None:
    """A URL with a user and no password names nothing secret: an error about it shows it
    whole. (The password pattern took "postgresql:" for a user and "//postgres" for a
    password, so every "postgres" in the message became ***: "***ql:***@127.0.0.1".)"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    url = f"postgresql://postgres@127.0.0.1:{port}/shop"
    assert db.redact_url(url) == url
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config_document(url, "http://127.0.0.1:9")))
    result = run_cli("status", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"postgresql://postgres@127.0.0.1:{port}/shop" in result.stderr, result.stderr
    assert db.redact_url("postgresql://u:pw@h/x") == "postgresql://u:***@h/x"


def test_a_refusal_of_an_order_whose_amount_is_nan_holds_it_and_spares_the_others(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """ "sellPriceAmount" is the shop's: PostgreSQL's numeric(12, 2) takes 'NaN'. Refused, such
    an order cannot be refunded (comparing a NaN raised InvalidOperation): it is held for a
    person, saying why; the other refusal of the same sweep is refunded; the sweep exits 0."""
    user = add_user(conn, "100.00")
    sim.script("nan", "failed")
    sim.script("ok", "failed")
    nan_order = add_order(conn, user, "nan", amount="NaN")
    ok_order = add_order(conn, user, "ok", amount="5.00")
    path = write_config(tmp_path / "c.yaml", db_url, sim.url)
    result = run_cli("sweep", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert order_row(conn, ok_order)["status"] == "rejected"
    balance = conn.execute("SELECT balance FROM users WHERE id = %(u)s", {"u": user}).fetchone()
    assert balance is not None and balance["balance"] == decimal.Decimal("105.00")
    held = order_row(conn, nan_order)
    assert (held["status"], held["externalStatus"]) == ("pending", "failed")
    assert enrolment_of(conn, nan_order)["state"] == "held"
    assert "is not an amount (NaN)" in json.dumps(held["notes"])
    refunds = conn.execute("SELECT order_id FROM ordermon_refunds").fetchall()
    assert [r["order_id"] for r in refunds] == [ok_order]
