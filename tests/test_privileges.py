"""Least privilege that works: a role with exactly the README's grants migrates (handing the
owner of the shop's tables their statements), sweeps and refunds; a role that lacks a grant is
told which one, by whom."""

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import add_order, add_user, config_document, run_cli

README = Path(__file__).parent.parent / "README.md"


def _readme_blocks() -> list[str]:
    """The SQL blocks of the README's section on privileges, in order."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Privileges") :]
    section = section[: section.index("\n## ")]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def _statements(block: str, role: str, database: str) -> list[tuple[str, str]]:
    """(who runs it, statement) for each statement of a README block, with the role's and
    the database's names put in; who: "superuser" until a comment says "as the owner"."""
    who, found = "superuser", []
    for line in block.splitlines():
        if line.startswith("--"):
            who = "owner" if "as the owner" in line else "superuser"
        elif line.strip():
            line = re.sub(r"\bordermon\b", f'"{role}"', line)
            found.append((who, re.sub(r"\bshop\b", f'"{database}"', line)))
    return found


@pytest.fixture
def shop(server_dsn: str, empty_db_url: str) -> Iterator[dict[str, str]]:
    """A fresh database whose shop tables belong to a role of their own, and two more login
    roles (without any grant yet); every role is dropped afterwards."""
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    roles = {"owner": f"shop_owner_{tag}", "role": f"ordermon_{tag}", "other": f"om_other_{tag}"}
    database = str(psycopg.conninfo.conninfo_to_dict(empty_db_url)["dbname"])
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        for name in roles.values():
            admin.execute(f'CREATE ROLE "{name}" LOGIN'.encode())
    with psycopg.connect(empty_db_url, autocommit=True) as superuser:
        superuser.execute(db.platform_schema().encode())
        for table in ("users", "product_orders", "wallet_transactions"):
            superuser.execute(f'ALTER TABLE {table} OWNER TO "{roles["owner"]}"'.encode())
        # As the shop's backend has, having created its tables there (an index needs it).
        superuser.execute(f'GRANT CREATE ON SCHEMA public TO "{roles["owner"]}"'.encode())
    urls = {k: psycopg.conninfo.make_conninfo(empty_db_url, user=v) for k, v in roles.items()}
    yield {"database": database, "superuser": empty_db_url, **roles} | {
        f"{k}_url": v for k, v in urls.items()
    }
    with psycopg.connect(empty_db_url, autocommit=True) as superuser:
        names = ", ".join(f'"{n}"' for n in roles.values())
        superuser.execute(f"DROP OWNED BY {names} CASCADE".encode())
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        for name in roles.values():
            admin.execute(f'DROP ROLE IF EXISTS "{name}"'.encode())


def _grant(shop: dict[str, str], block: str, role: str) -> None:
    for who, statement in _statements(block, role, shop["database"]):
        if statement.startswith("CREATE ROLE"):
            continue  # the fixture made the role (and drops it)
        url = shop["superuser"] if who == "superuser" else shop["owner_url"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement.encode())


def _config(tmp_path: Path, url: str, sim_url: str) -> str:
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(json.dumps(config_document(url, sim_url)))
    return str(path)


def _migrate_with_the_owners_help(shop: dict[str, str], config_path: str) -> None:
    refused = run_cli("migrate", "--config", config_path)
    assert refused.returncode == 1, refused.stderr
    assert "not the table's owner" in refused.stderr and "Traceback" not in refused.stderr
    printed = [line.strip() for line in refused.stderr.splitlines() if line.startswith("    ")]
    with psycopg.connect(shop["owner_url"], autocommit=True) as owner:
        for statement in " ".join(printed).split(";"):
            if statement.strip():
                owner.execute(statement.encode())
    finished = run_cli("migrate", "--config", config_path)
    assert finished.returncode == 0, finished.stderr


def _refund_by_a_sweep(shop: dict[str, str], config_path: str, sim: simulator.Simulator) -> None:
    with db.connect(shop["owner_url"], autocommit=True) as owner:
        user = add_user(owner, balance="10.00")
        order = add_order(owner, user, "refused-ref", amount="12.50")
    sim.script("refused-ref", "failed")
    swept = run_cli("sweep", "--config", config_path)
    assert swept.returncode == 0, swept.stderr
    with db.connect(shop["owner_url"], autocommit=True) as owner:
        row = owner.execute(
            "SELECT o.status, u.balance, (SELECT count(*) FROM wallet_transactions w "
            "WHERE w.\"orderId\" = o.id AND w.type = 'refund') AS refunds "
            'FROM product_orders o JOIN users u ON u.id = o."userId" WHERE o.id = %(id)s',
            {"id": order},
        ).fetchone()
    assert row is not None
    assert (row["status"], str(row["balance"]), row["refunds"]) == ("rejected", "22.50", 1)


def test_the_readmes_grants_are_enough(
    shop: dict[str, str], sim: simulator.Simulator, tmp_path: Path
) -> None:
    """With exactly the README's grants, migrate creates ordermon's tables, exits 1 with the
    statements for the owner of product_orders, finishes once they ran, and a sweep as that
    role refunds a refused order; a grant revoked later is named in the error."""
    [public, *_] = _readme_blocks()
    _grant(shop, public, shop["role"])
    config_path = _config(tmp_path, shop["role_url"], sim.url)
    _migrate_with_the_owners_help(shop, config_path)
    _refund_by_a_sweep(shop, config_path, sim)
    assert run_cli("status", "--config", config_path).returncode in (0, 3)
    with psycopg.connect(shop["owner_url"], autocommit=True) as owner:
        owner.execute(f'REVOKE SELECT ON product_orders FROM "{shop["role"]}"'.encode())
    refused = run_cli("status", "--config", config_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"GRANT SELECT ON product_orders TO {shop['role']};" in refused.stderr
    assert "ON SCHEMA" not in refused.stderr and "ON users" not in refused.stderr


def test_the_readmes_dedicated_schema_works_too(
    shop: dict[str, str], sim: simulator.Simulator, tmp_path: Path
) -> None:
    """The README's other way, a schema of ordermon's own on its search_path, migrates and
    sweeps as well, and leaves nothing of ordermon in public."""
    [public, dedicated, *_] = _readme_blocks()
    shop_grants = "\n".join(
        line
        for line in public.splitlines()
        if "ON SCHEMA" not in line and "CREATE ROLE" not in line
    )
    _grant(shop, dedicated + "\n" + shop_grants, shop["role"])
    config_path = _config(tmp_path, shop["role_url"], sim.url)
    _migrate_with_the_owners_help(shop, config_path)
    _refund_by_a_sweep(shop, config_path, sim)
    with psycopg.connect(shop["superuser"], autocommit=True) as superuser:
        placed = {
            r[0]
            for r in superuser.execute(
                "SELECT DISTINCT schemaname FROM pg_tables WHERE tablename LIKE 'ordermon%'"
            )
        }
    assert placed == {shop["role"]}


def test_a_role_without_create_on_the_schema_is_told_to_grant_it(
    shop: dict[str, str], sim: simulator.Simulator, tmp_path: Path
) -> None:
    """On PostgreSQL 15 and later, a role with only table grants cannot create ordermon's
    tables in public: migrate says to grant CREATE on the schema, not more table grants."""
    with psycopg.connect(shop["owner_url"], autocommit=True) as owner:
        owner.execute(
            f'GRANT SELECT, UPDATE ON product_orders, users TO "{shop["other"]}"'.encode()
        )
        owner.execute(f'GRANT INSERT ON wallet_transactions TO "{shop["other"]}"'.encode())
    with psycopg.connect(shop["superuser"], autocommit=True) as superuser:
        superuser.execute(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{shop["other"]}"'.encode())
    refused = run_cli("migrate", "--config", _config(tmp_path, shop["other_url"], sim.url))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"GRANT USAGE, CREATE ON SCHEMA public TO {shop['other']};" in refused.stderr
    assert "GRANT SELECT" not in refused.stderr and "GRANT INSERT" not in refused.stderr


def test_a_grant_missing_after_migrate_is_said_before_the_first_refund(
    shop: dict[str, str], sim: simulator.Simulator, tmp_path: Path
) -> None:
    """A role lacking one of the README's grants is told by migrate (exit 1, the GRANT) and by
    status (exit 3), not first by a sweep; and a sweep that meets the refusal leaves its run
    row failed (exit code 1), not running forever."""
    [public, *_] = _readme_blocks()
    _grant(shop, public, shop["role"])
    config_path = _config(tmp_path, shop["role_url"], sim.url)
    _migrate_with_the_owners_help(shop, config_path)
    with psycopg.connect(shop["owner_url"], autocommit=True) as owner:
        owner.execute(f'REVOKE INSERT ON wallet_transactions FROM "{shop["role"]}"'.encode())
    grant = f"GRANT INSERT ON wallet_transactions TO {shop['role']};"
    migrated = run_cli("migrate", "--config", config_path)
    assert migrated.returncode == 1 and grant in migrated.stderr, migrated.stderr
    status = run_cli("status", "--json", "--config", config_path)
    assert status.returncode == 3, status.stderr
    assert any(grant in reason for reason in json.loads(status.stdout)["attention"])
    with db.connect(shop["owner_url"], autocommit=True) as owner:
        order = add_order(owner, add_user(owner), "refused-ref")
    sim.script("refused-ref", "failed")
    swept = run_cli("sweep", "--config", config_path)
    assert swept.returncode == 1 and grant in swept.stderr and "Traceback" not in swept.stderr
    with db.connect(shop["role_url"], autocommit=True) as ordermon_role:
        run = ordermon_role.execute(
            "SELECT finished_at, exit_code FROM ordermon_runs WHERE command = 'sweep' "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert run is not None and run["finished_at"] is not None and run["exit_code"] == 1
    # The answer it could not record is an error attempt that spends nothing, its claim
    # released: `show` tells what happened, and the next sweep asks again on schedule.
    with db.connect(shop["role_url"], autocommit=True) as ordermon_role:
        enrolment = ordermon_role.execute(
            "SELECT attempts, claim_token, state FROM ordermon_enrolments"
        ).fetchone()
        attempt = ordermon_role.execute(
            "SELECT outcome, applied, counted, message FROM ordermon_attempts"
        ).fetchone()
    assert enrolment == {"attempts": 0, "claim_token": None, "state": "waiting"}
    assert attempt is not None and (attempt["outcome"], attempt["counted"]) == ("error", False)
    assert "insufficient privilege, SQLSTATE 42501" in attempt["message"]
    shown = run_cli("show", "--config", config_path, str(order))
    assert "1 check: 0 counted, 1 that ordermon could not record" in shown.stdout, shown.stdout
    assert "no: not recorded" in shown.stdout
