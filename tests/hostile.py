"""A hostile HTTP provider for tests: a raw-socket TCP server on 127.0.0.1 that serves, for
each connection it accepts, one scripted behaviour byte for byte, however wrong.

Usage::

    from tests import hostile

    with hostile.Server(hostile.trickle(hostile.head(200) + b"OK|2|P|x", per_second=1)) as server:
        ...  # point a provider's base_url at server.url
    assert server.requests[0].startswith(b"GET /")

``Server(*steps, default=...)`` gives the first connection the first step, the second the
second, and every later connection ``default`` (the last step if no default is given). A step
is a ``Step``; the helpers below build the usual ones:

- ``send(data)``: exact bytes (status line, headers, body: anything), then close.
- ``reply(status, body, headers=...)``: a well-formed reply with Content-Length and
  ``Connection: close``; ``head(status, headers)`` gives just its status line and headers.
- ``trickle(data, per_second)``: the bytes one at a time at that rate (status line and headers
  included when ``data`` starts with them).
- ``reset()``: an RST instead of a reply (SO_LINGER 0, then close).
- ``close()``: close without sending a byte.
- ``huge(size)``: a 200 whose body is ``size`` bytes (10 MB by default), sent as fast as the
  client reads.
- ``redirect(location, status)``: a 3xx with that Location.
- ``hang(seconds)``: read the request, then send nothing for that long (or until the server
  stops).
- ``respond(function)``: ``function(request_bytes) -> bytes`` decides the reply.

``reset`` and ``close`` take ``before_request=True`` to act as soon as the connection is
accepted, before the client's request is read. Every step runs in its own thread; a client
that goes away mid-step is not an error.

``server.requests`` holds the raw bytes of every request received (head and whatever body
came with it), in arrival order; ``server.connections`` counts accepted connections. Both let
a test assert what a client sent, or that it sent nothing (a redirect target must get no
request, hence none of a provider's headers).
"""

import contextlib
import dataclasses
import functools
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

REQUEST_HEAD_LIMIT = 65536
TEN_MB = 10 * 1024 * 1024


@dataclasses.dataclass
class Exchange:
    """One accepted connection, as a step sees it."""

    sock: socket.socket
    request: bytes
    stopping: threading.Event

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the server is stopping meanwhile."""
        return self.stopping.wait(seconds)


@dataclasses.dataclass(frozen=True)
class Step:
    """What the server does with one connection."""

    action: Callable[[Exchange], None]
    read_request: bool = True


def head(status: int = 200, headers: dict[str, str] | None = None, reason: str = "X") -> bytes:
    """A status line and headers, up to and including the empty line."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send(data: bytes) -> Step:
    return Step(lambda exchange: exchange.send(data))


def reply(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Step:
    fields = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    return send(head(status, fields) + body)


def respond(function: Callable[[bytes], bytes]) -> Step:
    return Step(lambda exchange: exchange.send(function(exchange.request)))


def trickle(data: bytes, per_second: float = 1.0) -> Step:
    def action(exchange: Exchange) -> None:
        for index in range(len(data)):
            exchange.send(data[index : index + 1])
            if exchange.wait(1.0 / per_second):
                return

    return Step(action)


def reset(before_request: bool = False) -> Step:
    def action(exchange: Exchange) -> None:
        # Linger on, for zero seconds: close() sends an RST instead of a FIN.
        exchange.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return Step(action, read_request=not before_request)


def close(before_request: bool = False) -> Step:
    return Step(lambda exchange: None, read_request=not before_request)


def huge(size: int = TEN_MB, status: int = 200) -> Step:
    def action(exchange: Exchange) -> None:
        exchange.send(head(status, {"Content-Length": str(size), "Connection": "close"}))
        block = b"x" * 65536
        for start in range(0, size, len(block)):
            if exchange.stopping.is_set():
                return
            exchange.send(block[: size - start])

    return Step(action)


def redirect(location: str, status: int = 302) -> Step:
    return reply(status, b"moved", {"Location": location})


def hang(seconds: float = 60.0) -> Step:
    def action(exchange: Exchange) -> None:
        exchange.wait(seconds)

    return Step(action)


class Server:
    """The hostile provider; a context manager that serves on 127.0.0.1, port chosen by the OS."""

    def __init__(self, *steps: Step, default: Step | None = None) -> None:
        if not steps and default is None:
            raise ValueError("a hostile server needs at least one step")
        self._steps = list(steps)
        self._default = default or steps[-1]
        self.requests: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # close() does not wake a blocked accept() on Linux
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self._start(self._accept_loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        for thread in self._threads[:1]:
            thread.join(timeout=5)  # the accept loop: no new connection after this
        self._listener.close()
        with self._lock:
            for sock in self._open:
                _quietly(functools.partial(sock.shutdown, socket.SHUT_RDWR))
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name="hostile-server")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed: the server stops
            with self._lock:
                index = self.connections
                step = self._steps[index] if index < len(self._steps) else self._default
                self.connections += 1
                self._open.add(sock)
            self._start(functools.partial(self._serve, sock, step))

    def _serve(self, sock: socket.socket, step: Step) -> None:
        try:
            request = _read_request(sock) if step.read_request else b""
            if step.read_request:
                with self._lock:
                    self.requests.append(request)
            step.action(Exchange(sock, request, self._stopping))
        except OSError:
            pass  # the client gave up (reset, timeout): exactly what hostile tests provoke
        finally:
            with self._lock:
                self._open.discard(sock)
            _quietly(sock.close)


def _read_request(sock: socket.socket) -> bytes:
    """The request head and the body its Content-Length announces (bounded)."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < REQUEST_HEAD_LIMIT:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head_part.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = min(int(value.strip()), REQUEST_HEAD_LIMIT)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    sock.settimeout(None)
    return data if not length else head_part + b"\r\n\r\n" + body


def header_names(request: bytes) -> Iterator[str]:
    """The header names of a recorded request, lower-cased."""
    for line in request.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        yield line.partition(b":")[0].decode("latin-1").strip().lower()


def _quietly(function: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):
        function()
