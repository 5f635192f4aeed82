"""A real PgBouncer (Debian's package) in transaction pooling mode in front of the test
PostgreSQL: its own ini and auth file in a temporary directory, on a free local port, with a
pool so small that clients really do share server connections."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg.conninfo

POOL_SIZE = 2  # server connections per database and user: fewer than the tests' clients
# What marks a URL as one through a transaction pooler (README: "Behind PgBouncer").
HINT = "ordermon_pooler=transaction"


class Unavailable(RuntimeError):
    """No pgbouncer installed, or it would not start."""


def executable() -> str:
    found = shutil.which("pgbouncer") or shutil.which("/usr/sbin/pgbouncer")
    if not found:
        raise Unavailable("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(
    server_dsn: str,
    pool_size: int = POOL_SIZE,
    users: tuple[str, ...] = (),
    *,
    port: int | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[int]:
    """Start PgBouncer in front of ``server_dsn``'s server, for its user and ``users``; yield
    its port (``port``, to start one again where a stopped one listened). ``settings`` are
    more lines of its [pgbouncer] section (query_wait_timeout, server_reset_query ...)."""
    binary = executable()
    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    host, server_port = str(params.get("host") or "127.0.0.1"), str(params.get("port") or 5432)
    user = str(params.get("user") or "postgres")
    with tempfile.TemporaryDirectory(prefix="ordermon-pgbouncer-") as tmp:
        directory = Path(tmp)
        listen = port or _free_port()
        extra = "".join(f"{key} = {value}\n" for key, value in (settings or {}).items())
        # auth_type = trust still wants every user in the auth file.
        (directory / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in (user, *users)))
        # "*": every database of the server, so that each test's fresh database is reachable.
        (directory / "pgbouncer.ini").write_text(
            f"[databases]\n* = host={host} port={server_port}\n\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
            "max_client_conn = 500\nserver_check_delay = 0\n"
            f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
            + extra
        )
        command = [binary, str(directory / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            shutil.chown(directory, "postgres")
            for path in directory.iterdir():
                shutil.chown(path, "postgres")
            command[1:1] = ["-u", "postgres"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(listen, process, directory)
            yield listen
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_listening(port: int, process: "subprocess.Popen[bytes]", directory: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = directory / "pgbouncer.log"
            said = log.read_text() if log.exists() else ""
            out = process.stdout.read().decode() if process.stdout else ""
            raise Unavailable(f"pgbouncer exited {process.returncode}: {out}{said}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise Unavailable("pgbouncer did not listen within 15s")


@contextlib.contextmanager
def for_tests(
    server_dsn: str,
    pool_size: int = POOL_SIZE,
    users: tuple[str, ...] = (),
    *,
    settings: dict[str, str] | None = None,
) -> Iterator[int]:
    """``running``, for a test: in CI (or with the test database given) no pgbouncer is a
    failure, elsewhere a skip."""
    import pytest

    try:
        executable()
    except Unavailable as exc:
        if os.environ.get("CI") or os.environ.get("ORDERMON_TEST_DSN"):
            pytest.fail(f"{exc}; .ci/run installs Debian's pgbouncer package")
        pytest.skip(str(exc))
    require_tcp(server_dsn)
    with running(server_dsn, pool_size, users, settings=settings) as port:
        yield port


def require_tcp(server_dsn: str) -> None:
    """Skip unless the test PostgreSQL listens on TCP: the private embedded one listens on a
    socket in a directory of the user running the tests, which pgbouncer (run as postgres
    when that user is root) cannot open, and libpq asks a socket for no SSL. ORDERMON_TEST_DSN
    names a TCP server in CI (.ci/run)."""
    import pytest

    host = str(psycopg.conninfo.conninfo_to_dict(server_dsn).get("host") or "")
    if not host or host.startswith("/"):
        pytest.skip(
            "the pooler tests need a PostgreSQL on TCP: set ORDERMON_TEST_DSN (e.g. "
            "postgresql://postgres@127.0.0.1:5432/postgres), as .ci/run does"
        )


def pooled(direct_dsn: str, port: int, *, hint: bool = True) -> str:
    """The URL of ``direct_dsn``'s database through the pooler on ``port`` (with ordermon's
    hint in the URL, unless ``hint`` is false)."""
    params = psycopg.conninfo.conninfo_to_dict(direct_dsn)
    user, name = params.get("user") or "postgres", params.get("dbname") or "postgres"
    url = f"postgresql://{user}@127.0.0.1:{port}/{name}"
    return f"{url}?{HINT}" if hint else url
