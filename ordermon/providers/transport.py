"""One provider request from socket to `base.Reply`, bounded everywhere: a single deadline for
the whole exchange (name lookup, connect, TLS, status line, headers, body), no redirect ever
followed, the body cut at ``max_bytes``, and every failure a `base.TransportError` whose
message holds no URL.

The deadline lives in a context variable that `fetch` sets; the connection classes mounted by
`session` read it. Every new connection gets only what is left of it for the lookup, for each
address it tries and for the TLS handshake, and every read of the reply (the status line and
headers included, which urllib3's read timeout does not bound as a whole: it restarts on every
byte) sets the socket's timeout to what is left before it waits."""

import contextvars
import http.client
import io
import ipaddress
import logging
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util.connection

from ordermon.providers import base

TARGET_LIMIT = 200  # characters of a redirect's target shown in its error

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ordermon_exchange_deadline", default=None
)


def session(pool_size: int, proxy: str | None) -> requests.Session:
    """A session whose connections keep the deadline of `fetch` (keep-alive, one pool)."""
    # urllib3 quotes the request URL in its warnings (a reply header it cannot parse), and
    # znet's kod and sifre ride in the query: none of its chatter may reach a log.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    client = requests.Session()
    # No proxy or netrc look-ups from the environment on every call (measured: about twice
    # the requests per second); a proxy is an explicit per-provider setting.
    client.trust_env = False
    if proxy:
        client.proxies = {"http": proxy, "https": proxy}
    pool = _DeadlineAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
    client.mount("http://", pool)
    client.mount("https://", pool)
    return client


def fetch(
    client: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> base.Reply:
    """One request, never redirected; the exchange ends ``timeout`` seconds after it starts,
    whatever the provider trickles. Raises only `base.TransportError`."""
    deadline = time.monotonic() + timeout
    token = _deadline.set(deadline)
    try:
        return _exchange(client, method, url, deadline, max_bytes, params, headers)
    except base.TransportError:
        raise
    except Exception as exc:  # whatever the reply provoked, it is this request's failure
        reason = base.connection_reason(exc)
        if reason == "timed out" or time.monotonic() >= deadline:
            reason = f"timed out after {timeout:g}s"
        raise base.TransportError(reason) from None
    finally:
        _deadline.reset(token)


def _exchange(
    client: requests.Session,
    method: str,
    url: str,
    deadline: float,
    max_bytes: int,
    params: dict[str, str] | None,
    headers: dict[str, str] | None,
) -> base.Reply:
    prepared = client.prepare_request(requests.Request(method, url, params=params, headers=headers))
    # Straight to the adapter: Session.send would resolve a redirect's target even when not
    # following it (and fail on one it cannot parse); a redirect is ours to describe.
    adapter = client.get_adapter(prepared.url or url)
    left = _left(deadline)
    with adapter.send(
        prepared, stream=True, timeout=(left, left), verify=True, proxies=client.proxies
    ) as response:
        body = bytearray()
        truncated = False
        while True:
            # read1 returns whatever has arrived (read() would wait for a full buffer); each
            # socket read below it waits at most until the deadline.
            chunk = response.raw.read1(16384, decode_content=True)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                truncated = True
                break
            _left(deadline)
        return base.Reply(
            response.status_code,
            bytes(body[:max_bytes]),
            base.parse_retry_after(response.headers.get("Retry-After")),
            truncated,
            location=response.headers.get("Location"),
        )


def redirect_message(
    status: int, location: str | None, origin: str, redact: Callable[[str], str]
) -> str:
    """The error for a 3xx: where it pointed (redacted), and what to do about it."""
    target = shown_target(location, origin, redact)
    return (
        f"redirected (HTTP {status}) to {target}; ordermon does not follow redirects: fix base_url"
    )


def shown_target(location: str | None, origin: str, redact: Callable[[str], str]) -> str:
    """A redirect target fit to show: resolved against the request's URL, without user
    information, query or fragment, secrets replaced, control and non-ASCII bytes
    percent-encoded, cut to `TARGET_LIMIT` characters."""
    if not location or not location.strip():
        return "an unreadable location"
    try:
        base_url = urllib.parse.urlsplit(origin)._replace(query="", fragment="").geturl()
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(base_url, redact(location.strip())))
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable location"
    if not host or parts.scheme not in ("http", "https"):
        return "an unreadable location"
    host = urllib.parse.quote(_wire(host), safe=".-:")
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    shown += urllib.parse.quote(_wire(parts.path), safe="/%:@!$&'()*+,;=~")
    shown = redact(shown) + ("?..." if parts.query else "")
    return shown if len(shown) <= TARGET_LIMIT else shown[:TARGET_LIMIT] + "..."


def _wire(text: str) -> bytes:
    """The bytes a header value arrived as (http.client decodes headers as Latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _left(deadline: float) -> float:
    """Seconds left before ``deadline``; a timeout once none is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class _DeadlineReader(io.RawIOBase):
    """The socket file of one reply: each read waits at most until the deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_left(self._deadline))
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
            sock.settimeout(_left(deadline))
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
            sock.settimeout(_left(deadline))  # the TLS handshake gets what is left
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
    worker.join(_left(deadline))
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


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connection pools (direct or through a proxy) of ours."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
