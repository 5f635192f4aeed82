"""Operators know order numbers: every command that takes an order id also takes its
``"orderNo"``, with ``--tenant`` when several tenants use the number (issue 11, friction 8)."""

import json
import uuid
from pathlib import Path

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import add_order, add_user, enrolment_of, run_cli, write_config

TENANT_A = uuid.UUID("aaaaaaaa-0000-4000-8000-00000000000a")
TENANT_B = uuid.UUID("bbbbbbbb-0000-4000-8000-00000000000b")


def _orders(conn: db.Connection) -> dict[str, uuid.UUID]:
    user = add_user(conn)
    return {
        "alone": add_order(conn, user, "ref-alone", orderNo=1001, tenantId=TENANT_A),
        "a": add_order(conn, user, "ref-a", orderNo=2002, tenantId=TENANT_A),
        "b": add_order(conn, user, "ref-b", orderNo=2002, tenantId=TENANT_B),
    }


def test_show_check_and_requeue_take_an_order_number(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`show 1001`, `check 1001`, `requeue 1001` act on the order numbered 1001."""
    orders = _orders(conn)
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    sim.script("ref-alone", "processing")
    shown = run_cli("show", "1001", "--json", "--config", config_path)
    assert shown.returncode == 0, shown.stderr
    order = json.loads(shown.stdout)["order"]
    assert (order["id"], order["order_no"]) == (str(orders["alone"]), 1001)
    checked = run_cli("check", "1001", "--json", "--config", config_path)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["order_id"] == str(orders["alone"])
    assert enrolment_of(conn, orders["alone"])["attempts"] == 1
    assert sim.count("ref-alone") == 1
    # a number and a UUID together; neither is expired, so both are refused, each by its id
    requeued = run_cli("requeue", "1001", str(orders["b"]), "--dry-run", "--config", config_path)
    assert requeued.returncode == 1, requeued.stderr
    lines = requeued.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(orders["alone"]), str(orders["b"])]
    human = run_cli("show", "1001", "--config", config_path)
    assert human.returncode == 0 and "1001" in human.stdout


def test_a_number_several_tenants_use_needs_tenant(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """2002 in two tenants: refused (exit 2) listing both; `--tenant` picks one."""
    orders = _orders(conn)
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    for command in (["show"], ["check", "--dry-run"], ["requeue"]):
        refused = run_cli(*command, "2002", "--config", config_path)
        assert refused.returncode == 2, refused.stderr
        assert str(TENANT_A) in refused.stderr and str(TENANT_B) in refused.stderr
        assert "--tenant" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert sim.requests == []
    picked = run_cli("show", "2002", "--tenant", str(TENANT_B), "--json", "--config", config_path)
    assert picked.returncode == 0, picked.stderr
    assert json.loads(picked.stdout)["order"]["id"] == str(orders["b"])
    sim.script("ref-a", "processing")
    checked = run_cli(
        "check", "2002", "--tenant", str(TENANT_A), "--dry-run", "--json", "--config", config_path
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["order_id"] == str(orders["a"])
    assert sim.count("ref-a") == 1 and sim.count("ref-b") == 0


def test_unknown_numbers_and_bad_arguments_are_clear_errors(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """An unknown number, a number out of "orderNo"'s range, a word, a bad --tenant: exit 2,
    one line, no traceback and no database error."""
    _orders(conn)
    config_path = str(write_config(tmp_path / "c.yaml", db_url, "http://127.0.0.1:9"))
    cases = {
        ("3003",): "no order is numbered 3003",
        ("1001", "--tenant", str(TENANT_B)): f"no order is numbered 1001 in tenant {TENANT_B}",
        ("2147483648",): "out of range",
        ("9223372036854775808",): "out of range",
        ("9" * 400,): "out of range",
        ("12a",): "is not an order id (a UUID) or an order number",
        ("1.5",): "is not an order id (a UUID) or an order number",
        ("\u0661\u0662",): "is not an order id (a UUID) or an order number",  # Arabic digits
        ("",): "is not an order id (a UUID) or an order number",
        ("1001", "--tenant", "acme"): "--tenant: 'acme' is not a tenant id (a UUID,",
        # Only a UUID as PostgreSQL writes it is an id: 32 digits are an out-of-range number,
        # not a UUID without its hyphens; braces, urn:uuid: and non-ASCII digits are refused.
        ("00000000000040008000000000001001",): "out of range",
        ("{00000000-0000-4000-8000-000000001001}",): "is not an order id",
        ("urn:uuid:00000000-0000-4000-8000-000000001001",): "is not an order id",
        ("00000000-0000-4000-8000-00000000100\uff17",): "is not an order id",
        ("1001", "--tenant", "urn:uuid:" + str(TENANT_A)): "is not a tenant id",
    }
    for command in ("show", "check", "requeue"):
        for args, says in cases.items():
            result = run_cli(command, *args, "--config", config_path)
            assert result.returncode == 2, (command, args, result.stderr)
            assert says in result.stderr, (command, args, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1
            assert "Traceback" not in result.stderr and "psycopg" not in result.stderr


def test_a_bad_number_is_refused_before_the_database(tmp_path: Path) -> None:
    """Bounds are checked before any connection: an unreachable database changes nothing."""
    config_path = str(write_config(tmp_path / "c.yaml", "postgresql://127.0.0.1:9/x", "http://x"))
    for command in ("show", "check", "requeue"):
        result = run_cli(command, "99999999999", "--config", config_path)
        assert result.returncode == 2 and "out of range" in result.stderr, result.stderr


def test_a_number_shared_within_one_tenant_or_without_one(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """Two orders of one tenant with one number: give the UUID; a tenantless order sharing a
    number with a tenant's is listed as "no tenant"."""
    user = add_user(conn)
    twins = [add_order(conn, user, f"t{i}", orderNo=4004, tenantId=TENANT_A) for i in (1, 2)]
    lone = add_order(conn, user, "n1", orderNo=5005)
    add_order(conn, user, "n2", orderNo=5005, tenantId=TENANT_B)
    config_path = str(write_config(tmp_path / "c.yaml", db_url, "http://127.0.0.1:9"))
    same = run_cli("show", "4004", "--config", config_path)
    assert same.returncode == 2
    assert f"used by several orders of tenant {TENANT_A}" in same.stderr
    assert all(str(twin) in same.stderr for twin in twins) and "give the order's id" in same.stderr
    mixed = run_cli("show", "5005", "--config", config_path)
    assert mixed.returncode == 2
    assert f"no tenant (order {lone})" in mixed.stderr and f"tenant {TENANT_B}" in mixed.stderr
    assert "--tenant TENANT_ID (or the order's id)" in mixed.stderr


def test_one_order_named_twice_is_acted_on_once(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`requeue 1001 <its id> 1001` is one order: one line, not a requeue and two refusals."""
    orders = _orders(conn)
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    given = ("1001", str(orders["alone"]), "01001")
    requeued = run_cli("requeue", *given, "--dry-run", "--config", config_path)
    assert [line.split(":")[0] for line in requeued.stdout.splitlines()] == [str(orders["alone"])]


def test_huge_counts_are_usage_errors(db_url: str, tmp_path: Path) -> None:
    config_path = str(write_config(tmp_path / "c.yaml", db_url, "http://127.0.0.1:9"))
    for args in (
        ("events", "list", "--limit", "9" * 20),
        ("status", "--runs", "9" * 20),
        ("sweep", "--limit", "9" * 20),
    ):
        result = run_cli(*args, "--config", config_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "out of range" not in result.stderr
