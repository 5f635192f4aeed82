"""ordermon's record of itself: the schema version, one row per run with its counts, and the
pruning of old history."""

import datetime as dt

from ordermon import db


def schema_version(conn: db.Connection) -> int | None:
    exists = conn.execute("SELECT to_regclass('ordermon_migrations') IS NOT NULL AS ok").fetchone()
    if not exists or not exists["ok"]:
        return None
    row = conn.execute("SELECT max(version) AS version FROM ordermon_migrations").fetchone()
    return row["version"] if row else None


def start_run(conn: db.Connection, command: str, host: str, pid: int, now: dt.datetime) -> int:
    row = conn.execute(
        "INSERT INTO ordermon_runs (command, host, pid, started_at) "
        "VALUES (%(command)s, %(host)s, %(pid)s, %(now)s) RETURNING id",
        {"command": command, "host": host, "pid": pid, "now": now},
    ).fetchone()
    assert row is not None
    return int(row["id"])


def finish_run(
    conn: db.Connection,
    run_id: int,
    counts: dict[str, int],
    stopped_by: str | None,
    exit_code: int,
    now: dt.datetime,
) -> None:
    conn.execute(
        """UPDATE ordermon_runs SET finished_at = %(now)s, enrolled = %(enrolled)s,
               claimed = %(claimed)s, completed = %(completed)s, failed = %(failed)s,
               processing = %(processing)s, errors = %(error)s, superseded = %(superseded)s,
               expired = %(expired)s, stopped_by = %(stopped_by)s, exit_code = %(exit_code)s
           WHERE id = %(run_id)s""",
        {"run_id": run_id, "now": now, "stopped_by": stopped_by, "exit_code": exit_code}
        | {k: counts.get(k, 0) for k in RUN_COUNTS},
    )


RUN_COUNTS = (
    "enrolled",
    "claimed",
    "completed",
    "failed",
    "processing",
    "error",
    "superseded",
    "expired",
)


def prune(conn: db.Connection, before: dt.datetime, chunk: int = 5000, chunks: int = 20) -> int:
    """Delete attempts and finished runs older than ``before``, a bounded chunk per statement
    and at most ``chunks`` chunks per call, so no sweep stalls on a big backlog."""
    deleted = 0
    for query in (_PRUNE_ATTEMPTS, _PRUNE_RUNS):
        for _ in range(chunks):
            count = max(conn.execute(query, {"before": before, "chunk": chunk}).rowcount, 0)
            deleted += count
            if count < chunk:
                break
    return deleted


_PRUNE_ATTEMPTS = """
DELETE FROM ordermon_attempts WHERE id IN (
    SELECT id FROM ordermon_attempts WHERE checked_at < %(before)s
    ORDER BY checked_at LIMIT %(chunk)s)
"""
_PRUNE_RUNS = """
DELETE FROM ordermon_runs WHERE id IN (
    SELECT id FROM ordermon_runs WHERE started_at < %(before)s AND finished_at IS NOT NULL
    ORDER BY started_at LIMIT %(chunk)s)
"""
