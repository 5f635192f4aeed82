"""Sockets that keep one deadline for a whole HTTP exchange: requests' adapter with urllib3
connection classes of ours. Inside `within(deadline)`, every new connection gets only what is
left for the name lookup, for each address it tries and for the TLS handshake, and every read
of the reply (the status line and headers included, which urllib3's read timeout does not
bound as a whole: it restarts with every byte) sets the socket's timeout to what is left
before it waits. Outside it they behave exactly like urllib3's."""

import contextlib
import contextvars
import http.client
import io
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util.connection

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ordermon_exchange_deadline", default=None
)


@contextlib.contextmanager
def within(deadline: float) -> Iterator[None]:
    """Connections and replies opened in this block end at ``deadline`` (time.monotonic())."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def left(deadline: float) -> float:
    """Seconds left before ``deadline``; a timeout once none is."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    return remaining


class _DeadlineReader(io.RawIOBase):
    """The socket file of one reply: each read waits at most until the deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(left(self._deadline))
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        # The raw socket file holds a reference on the socket: closing it lets the socket
        # close once the connection lets go too (http.client's own life cycle).
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's reply reader, reading through a `_DeadlineReader` inside `fetch`."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        deadline = _deadline.get()
        if deadline is not None:
            raw = self.fp.detach()  # detached, so its buffer never closes the socket file
            assert isinstance(raw, io.RawIOBase)
            self.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline))


def _new_connection(conn: urllib3.connection.HTTPConnection, deadline: float) -> socket.socket:
    """urllib3's connect, with one budget for the lookup and every address tried."""
    try:
        sock = _connect(conn._dns_host, conn.port, deadline, conn)
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise urllib3.exceptions.ConnectTimeoutError(conn, "connect timed out") from exc
    except OSError as exc:
        raise urllib3.exceptions.NewConnectionError(conn, f"connect failed: {exc}") from exc
    sys.audit("http.client.connect", conn, conn.host, conn.port)
    return sock


def _connect(
    host: str, port: int, deadline: float, conn: urllib3.connection.HTTPConnection
) -> socket.socket:
    error: OSError = OSError("the host name has no address")
    for family, kind, proto, _, address in _addresses(host.strip("[]"), port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(left(deadline))
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
            sock.settimeout(left(deadline))  # the TLS handshake gets what is left
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error


_Address = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _addresses(host: str, port: int, deadline: float) -> Sequence[_Address]:
    """getaddrinfo within the deadline: a name lookup cannot be interrupted, so a slow one
    runs on in a daemon thread (never joined at exit) while this request gives up."""
    family = urllib3.util.connection.allowed_gai_family()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    found: list[Sequence[_Address] | BaseException] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting request, raised there
            found.append(exc)

    worker = threading.Thread(target=lookup, name="ordermon-lookup", daemon=True)
    worker.start()
    worker.join(left(deadline))
    if not found:
        raise TimeoutError("host name lookup timed out")
    result = found[0]
    if isinstance(result, BaseException):
        raise result
    return result


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _DeadlineResponse

    def _new_conn(self) -> socket.socket:
        deadline = _deadline.get()
        return super()._new_conn() if deadline is None else _new_connection(self, deadline)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _DeadlineResponse

    def _new_conn(self) -> socket.socket:
        deadline = _deadline.get()
        return super()._new_conn() if deadline is None else _new_connection(self, deadline)


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: dict[str, type[urllib3.connectionpool.HTTPConnectionPool]] = {
    "http": _HTTPPool,
    "https": _HTTPSPool,
}


class Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connection pools (direct or through a proxy) of ours."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
