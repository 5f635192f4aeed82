"""A provider simulator: a real HTTP server on 127.0.0.1 speaking the znet protocol byte for
byte (see shared/providers.md), with each order's fate scripted.

Used by the tests, the demo and the benchmarks, so all three exercise the production parsing
code over real sockets. A script is a list of steps, one per request about that reference; the
last step repeats. Steps:

    processing            OK|1| - |İşlem bekleniyor     (processing-blank: a blank PIN field)
    completed[:PIN]       OK|2|PIN|Teslim edildi        (no PIN: the '-' placeholder)
    failed                OK|3| |İptal edildi
    unknown               OK|7| |... (a status word ordermon does not know)
    request_error         3|Hatalı istek
    empty                 an empty body (what znet says to a wrong dealer code or IP)
    garbage               an HTML error page with status 200
    http500               HTTP 500
    429:N, 503:N          that status with Retry-After: N seconds
    hang:S                wait S seconds, then answer processing (for timeouts)
    slow:S:STEP           wait S seconds, then answer STEP
    raw:TEXT              exactly TEXT
    STEP*N                the step N times
"""

import collections
import dataclasses
import http.server
import socketserver
import threading
import time
import urllib.parse
from typing import Any

ZNET_PATH = "/servis/pin_kontrol.php"


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    reference: str | None
    kod: str | None
    at: float


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


def expand(steps: tuple[str, ...] | list[str]) -> list[str]:
    """``processing*3`` becomes three ``processing`` steps."""
    out: list[str] = []
    for step in steps:
        name, star, times = step.rpartition("*")
        if star and times.isdigit():
            out.extend([name] * int(times))
        else:
            out.append(step)
    return out


def znet_reply(step: str) -> Reply:
    """The bytes a znet panel sends for one scripted step."""
    name, _, argument = step.partition(":")
    text: str | None = {
        "processing": "OK|1| - |İşlem bekleniyor",
        "processing-blank": "OK|1| |İşlem bekleniyor",
        "failed": "OK|3| |İptal edildi",
        "unknown": "OK|7| |Bilinmeyen durum",
        "request_error": "3|Hatalı istek",
        "empty": "",
    }.get(name)
    if text is not None:
        return Reply(200, text.encode())
    if name == "completed":
        return Reply(200, f"OK|2|{argument or ' - '}|Teslim edildi".encode())
    if name == "garbage":
        return Reply(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    if name == "http500":
        return Reply(500, b"Internal Server Error")
    if name in ("429", "503"):
        return Reply(int(name), b"slow down", (("Retry-After", argument or "60"),))
    if name == "slow":
        seconds, _, rest = argument.partition(":")
        inner = znet_reply(rest)
        return dataclasses.replace(inner, delay=inner.delay + float(seconds))
    if name == "hang":
        return Reply(200, "OK|1| - |İşlem bekleniyor".encode(), delay=float(argument or 30))
    if name == "raw":
        return Reply(200, argument.encode())
    raise ValueError(f"unknown simulator step {step!r}")


class Simulator:
    """Start with ``with Simulator() as sim:``; ``sim.url`` is the provider's base_url."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        default: tuple[str, ...] = ("processing",),
        kod: str | None = None,
        sifre: str | None = None,
        port: int = 0,
    ) -> None:
        self.latency = latency
        self.default = expand(default)
        self.kod, self.sifre = kod, sifre
        self.requests: list[Request] = []
        self._scripts: dict[str, list[str]] = {}
        self._served: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.simulator = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> "Simulator":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, reference: str, *steps: str) -> None:
        """Script the replies about ``reference``, one step per request; the last repeats."""
        for step in expand(steps):
            znet_reply(step)  # fail early on a typo
        with self._lock:
            self._scripts[reference] = expand(steps)
            self._served[reference] = 0

    def count(self, reference: str) -> int:
        """How many requests asked about ``reference``."""
        with self._lock:
            return sum(1 for r in self.requests if r.reference == reference)

    def counts(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(r.reference for r in self.requests if r.reference)

    def next_step(self, reference: str) -> str:
        with self._lock:
            steps = self._scripts.get(reference, self.default)
            served = self._served[reference]
            self._served[reference] = served + 1
            return steps[min(served, len(steps) - 1)]

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        reference = query.get("tahsilat_api_islem_id")
        with self._lock:
            self.requests.append(Request(path, reference, query.get("kod"), time.time()))
        if path != ZNET_PATH:
            return Reply(404, b"not found")
        if (self.kod and query.get("kod") != self.kod) or (
            self.sifre and query.get("sifre") != self.sifre
        ):
            return Reply(200, b"")  # what a real panel says to a wrong dealer or password
        if not reference:
            return Reply(200, "3|Hatalı istek".encode())
        return znet_reply(self.next_step(reference))


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    simulator: Simulator


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real provider
    # Without TCP_NODELAY each keep-alive reply waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        simulator = self.server.simulator
        reply = simulator.answer(parsed.path, query)
        pause = simulator.latency + reply.delay
        if pause:
            time.sleep(pause)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass
