"""What the whole-system tests share: a provider on a raw socket (any status line, any header
bytes, any body, or no answer at all) and the money checks every run must pass."""

import contextlib
import dataclasses
import decimal
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from ordermon import db

_MAX_REQUEST = 65536


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Response:
    """What the raw server sends back. ``drop`` is ``None`` (send it all), ``close`` (close
    without a byte), ``reset`` (a TCP reset) or ``partial`` (a status line cut in the middle
    of the headers)."""

    status: int = 200
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""
    drop: str | None = None

    def wire(self) -> bytes:
        head = f"HTTP/1.1 {self.status} Whatever\r\n".encode()
        for name, value in self.headers:
            head += name.encode("latin-1") + b": " + value + b"\r\n"
        head += f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
        return head + self.body


Handler = Callable[[Request], Response]


class RawServer:
    """A provider that says exactly the bytes it is told to, one connection per request.

    ``with RawServer(handler) as server:``; ``server.url`` is its base URL; every request it
    received is in ``server.requests``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() at once
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            request = _read_request(client)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            response = self.handler(request)
            with contextlib.suppress(OSError):  # the client gave up first: nothing to tell it
                _send(client, response)


def _read_request(client: socket.socket) -> Request | None:
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < _MAX_REQUEST:
            chunk = client.recv(4096)
            if not chunk:
                return None
            data += chunk
    except OSError:
        return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, target, _ = [*request_line.split(" "), "", ""][:3]
    parsed = urllib.parse.urlsplit(target)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    return Request(method, parsed.path, query, headers)


def _send(client: socket.socket, response: Response) -> None:
    if response.drop == "close":
        return
    if response.drop == "reset":
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return
    wire = response.wire()
    if response.drop == "partial":
        wire = wire[: wire.index(b"\r\n") + 12]
    client.sendall(wire)


def assert_ledger(conn: db.Connection, initial: dict[uuid.UUID, decimal.Decimal]) -> None:
    """Money moved at most once per order, by exactly what the customer paid, every wallet row
    adds up, and every balance is its start plus its refunds."""
    twice = conn.execute(
        """SELECT "orderId" AS order_id, count(*) AS n FROM wallet_transactions
           WHERE type = 'refund' GROUP BY 1 HAVING count(*) > 1"""
    ).fetchall()
    assert twice == [], f"refunded twice: {twice}"
    unmatched = conn.execute(
        """SELECT coalesce(r.order_id, w."orderId") AS order_id, r.amount AS ledger,
                  w.amount AS wallet, o."sellPriceAmount" AS paid, o.status
           FROM ordermon_refunds r
           FULL JOIN (SELECT * FROM wallet_transactions WHERE type = 'refund') w
             ON w."orderId" = r.order_id
           LEFT JOIN product_orders o ON o.id = coalesce(r.order_id, w."orderId")
           WHERE r.order_id IS NULL OR w."orderId" IS NULL OR r.amount <> w.amount
              OR w.amount <> o."sellPriceAmount" OR o.status <> 'rejected'
              OR w."balanceAfter" - w."balanceBefore" <> w.amount"""
    ).fetchall()
    assert unmatched == [], f"refunds that do not match their order exactly: {unmatched}"
    balances = {
        row["id"]: row["balance"]
        for row in conn.execute(
            "SELECT id, balance FROM users WHERE id = ANY(%(ids)s)", {"ids": list(initial)}
        )
    }
    credited: dict[Any, decimal.Decimal] = {
        row["user_id"]: row["total"]
        for row in conn.execute(
            """SELECT "userId" AS user_id, sum(amount) AS total FROM wallet_transactions
               WHERE type = 'refund' GROUP BY 1"""
        )
    }
    expected = {u: start + credited.get(u, decimal.Decimal(0)) for u, start in initial.items()}
    assert balances == expected, "a balance is not its start plus its refunds"
