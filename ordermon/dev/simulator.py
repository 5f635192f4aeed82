"""A provider simulator: a real HTTP server on 127.0.0.1 (threaded, keep-alive) speaking every
provider kind of shared/providers.md byte for byte, with each order's fate scripted.

Used by the tests, the demo and the benchmarks, so all three exercise the production parsing
code over real sockets. A script is a list of steps, one per request about that reference; the
last step repeats. Answers (each kind renders them in its own words):

    processing  completed[:PIN]  failed  unknown  word:WORD  missing (left out of the reply)
    processing-blank (znet: a blank PIN field)

Request-level faults (the whole reply, whatever else the request asked about):

    http500  401  429:N  503:N (Retry-After: N)  garbage (an HTML page)  empty  truncated
    badutf8  huge (10 MB)  endless (never finishes)  request_error (znet 3|...)  raw:TEXT
    hang:S (answer processing after S seconds)  slow:S:STEP (STEP after S seconds)
    STEP*N repeats a step N times.

Paths: ``/servis/pin_kontrol.php`` (znet), ``/client/api/check`` (barakat and apstore; internal
when ``X-Tenant-Host`` is sent), ``/json/orders/{reference}`` (the generic json kind).
"""

import collections
import dataclasses
import http.server
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from ordermon.dev import simulator_replies as replies

ZNET_PATH = "/servis/pin_kontrol.php"
CHECK_PATH = "/client/api/check"
JSON_PREFIX = "/json/orders/"


def json_provider_keys(base_url: str, token: str) -> dict[str, Any]:
    """The keys of a `json` provider that speaks this simulator's own JSON dialect."""
    return {
        "url": base_url + JSON_PREFIX + "{reference}",
        "headers": {"Authorization": f"Bearer {token}"},
        "status_path": "result.state",
        "pin_path": "result.code",
        "message_path": "result.info",
        "statuses": {"DELIVERED": "completed", "CANCELLED": "failed", "IN_PROGRESS": "processing"},
    }


@dataclasses.dataclass(frozen=True)
class Request:
    kind: str
    path: str
    references: tuple[str, ...]
    kod: str | None
    at: float

    @property
    def reference(self) -> str | None:
        return self.references[0] if self.references else None


# A script's length once expanded: `processing*99999999999` is a typo, not 100 GB of steps.
MAX_STEPS = 10_000


def expand(steps: tuple[str, ...] | list[str]) -> list[str]:
    """``processing*3`` becomes three ``processing`` steps; at most MAX_STEPS in all."""
    out: list[str] = []
    for step in steps:
        name, star, times = step.rpartition("*")
        count = int(times) if star and times.isascii() and times.isdigit() else None
        if count is not None and len(times) <= 6 and count <= MAX_STEPS - len(out):
            out.extend([name] * count)
        elif count is not None:
            raise ValueError(f"a script has at most {MAX_STEPS} steps, expanded")
        else:
            out.append(step)
        if len(out) > MAX_STEPS:
            raise ValueError(f"a script has at most {MAX_STEPS} steps, expanded")
    return out


# The step for an unscripted reference's request number N (0 for its first), and what is told
# of each request: the request, each reference's step, whether its credentials were refused.
Fate = Callable[[str, int], str]
OnRequest = Callable[[Request, dict[str, str], bool], None]


class Simulator:
    """Start with ``with Simulator() as sim:``; ``sim.url`` is the providers' base_url.

    An unscripted reference follows ``default``, or ``fate`` when given. ``record=False``
    keeps no list of requests (a simulator that runs for days)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        default: tuple[str, ...] = ("processing",),
        kod: str | None = None,
        sifre: str | None = None,
        token: str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        fate: Fate | None = None,
        on_request: OnRequest | None = None,
        record: bool = True,
    ) -> None:
        self.latency = latency
        self.default = expand(default)
        self.fate, self.on_request, self.record = fate, on_request, record
        self.kod, self.sifre, self.token = kod, sifre, token
        self.extra_items = False  # batch replies also carry an order nobody asked about
        self.requests: list[Request] = []
        self._scripts: dict[str, list[str]] = {}
        self._served: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
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
        expanded = expand(steps)
        replies.validate(expanded)
        with self._lock:
            self._scripts[reference] = expanded
            self._served[reference] = 0

    def count(self, reference: str) -> int:
        """How many requests asked about ``reference``."""
        with self._lock:
            return sum(1 for r in self.requests if reference in r.references)

    def counts(self) -> collections.Counter[str]:
        """Requests per reference."""
        with self._lock:
            return collections.Counter(ref for r in self.requests for ref in r.references)

    def count_kind(self, kind: str) -> int:
        """Requests received by one kind of provider."""
        with self._lock:
            return sum(1 for r in self.requests if r.kind == kind)

    def _next_step(self, reference: str) -> str:
        served = self._served[reference]
        self._served[reference] = served + 1
        steps = self._scripts.get(reference)
        if steps is None and self.fate is not None:
            return self.fate(reference, served)
        steps = steps or self.default
        return steps[min(served, len(steps) - 1)]

    def answer(self, path: str, query: dict[str, str], headers: Any) -> replies.Reply:
        kind, references = _identify(path, query, headers)
        request = Request(kind, path, tuple(references), query.get("kod"), time.time())
        with self._lock:
            if self.record:
                self.requests.append(request)
            steps = {ref: self._next_step(ref) for ref in references}
        refused = None if kind == "unknown" else self._refused(kind, query, headers)
        if self.on_request is not None:
            self.on_request(request, steps, refused is not None)
        if kind == "unknown":
            return replies.Reply(404, b"not found", content_type="text/plain")
        if refused is not None:
            return refused
        delay = 0.0
        for ref, step in list(steps.items()):
            name, argument = replies.split(step)
            if name == "hang":
                delay, steps[ref] = max(delay, float(argument or 30)), "processing"
            elif name == "slow" and not replies.is_fault(argument.partition(":")[2]):
                seconds, _, inner = argument.partition(":")
                delay, steps[ref] = max(delay, float(seconds)), inner
        reply = self._render(kind, steps, query)
        return dataclasses.replace(reply, delay=reply.delay + delay)

    def _refused(self, kind: str, query: dict[str, str], headers: Any) -> replies.Reply | None:
        if kind == "znet":
            if (self.kod and query.get("kod") != self.kod) or (
                self.sifre and query.get("sifre") != self.sifre
            ):
                return replies.Reply(200, b"")  # what a real panel says to a stranger
            return None
        if self.token and headers.get("api-token") != self.token and kind != "json":
            return replies.fault("401", kind)
        if kind == "json" and self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return replies.fault("401", kind)
        return None

    def _render(self, kind: str, steps: dict[str, str], query: dict[str, str]) -> replies.Reply:
        for step in steps.values():
            if replies.is_fault(step):
                return replies.fault(step, kind)
        if kind == "znet":
            if not steps:
                return replies.fault("request_error", kind)
            return replies.znet(next(iter(steps.values())))
        if kind == "internal":
            return replies.internal(steps, self.extra_items)
        if kind == "json":
            return replies.generic(next(iter(steps.values())))
        return replies.barakat(steps, query.get("uuid") == "1", self.extra_items)


def _identify(path: str, query: dict[str, str], headers: Any) -> tuple[str, list[str]]:
    if path == ZNET_PATH:
        reference = query.get("tahsilat_api_islem_id")
        return "znet", [reference] if reference else []
    if path == CHECK_PATH:
        raw = query.get("orders", "")
        if headers.get("X-Tenant-Host"):
            return "internal", [r for r in raw.split(",") if r]
        return "barakat", [r.strip() for r in raw.strip("[]").split(",") if r.strip()]
    if path.startswith(JSON_PREFIX):
        return "json", [urllib.parse.unquote(path[len(JSON_PREFIX) :])]
    return "unknown", []


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
        reply = simulator.answer(parsed.path, query, self.headers)
        pause = simulator.latency + reply.delay
        if pause:
            time.sleep(pause)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            length = 10**12 if reply.endless else len(reply.body)
            self.send_header("Content-Length", str(length))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
            if reply.endless:
                self._trickle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to tell it

    do_POST = do_GET

    def _trickle(self) -> None:
        """A reply that never ends: a byte now and then, for at most two minutes."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":  # not a command: say which one is
    import sys

    sys.exit("ordermon.dev.simulator is a library; to run the simulator use: ordermon simulate")
