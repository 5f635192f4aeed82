"""A hostile provider for the property test: what it may say (Hypothesis strategies for
statuses, headers, bodies and failures to answer, for znet and barakat), and the handler that
says it on a raw socket while writing down what each reply meant for each order."""

import collections
import dataclasses
import json
import threading
from typing import Any

from hypothesis import strategies as st

from tests import chaos_support
from tests.conftest import SIFRE, TOKEN
from tests.reply_oracle import (
    BAD_UTF8,
    BARAKAT_WORDS,
    ERROR,
    MARKERS,
    RAW_NUL,
    Item,
    Meaning,
    barakat_meaning,
    znet_meaning,
)

STRAY_PIN = "PIN-FROM-ELSEWHERE"
MAX_REPLY_BYTES = 65536  # the providers' max_reply_bytes: a longer reply is an error, unread


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The request-level part of a reply: status, headers, a failure to answer, and (barakat)
    a raw body or the top-level shape around the items."""

    status: int = 200
    headers: tuple[tuple[str, bytes], ...] = ()
    drop: str | None = None
    raw: bytes | None = None
    top: Any = "OK"
    data: str = "list"
    ascii: bool = True


@dataclasses.dataclass(frozen=True)
class Step:
    envelope: Envelope | None
    body: bytes = b""  # znet
    items: tuple[Item, ...] = ()  # barakat


@dataclasses.dataclass(frozen=True)
class Order:
    kind: str
    reference: str
    amount: str
    user: int
    steps: tuple[Step, ...]


@dataclasses.dataclass(frozen=True)
class Scenario:
    orders: tuple[Order, ...]
    on_failed: str
    batch_size: int


RETRY_AFTER = (
    b"5",
    b"60",
    b"0",
    b"99999999999999999999",
    b"\xb2",  # '²' in latin-1: str.isdigit() says yes, int() says no
    b"-5",
    b"1.5",
    b"315360000",
    b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"Thu, 01 Jan 1970 00:00:00 GMT",
    b"soon",
    b" 7 ",
    b"5\x00",
    b"\xd9\xa1\xd9\xa2",
)
STATUSES = (200,) * 8 + (204, 301, 302, 307, 308, 400, 401, 403, 404, 418, 429, 500, 502, 503)
LOCATIONS = (b"{trap}/steal", b"/redirected", b"{trap}/client/api/check?orders=[1]")
HOSTILE_BITS = (
    "\x00", "\x1b]0;pwned\x07\x1b[2J", "\ud800", "\udfff", "\x7f", "\x1f", "\t", "\n", "\r",
    "\u200b", "\xa0", "\u2028", "\ufeff", "\x85", RAW_NUL, BAD_UTF8,
)  # fmt: skip
MESSAGES = (
    "Teslim edildi", "İşlem bekleniyor", "[/bold] teslim", "[red]x[/red]",
    "\x1b]0;pwned\x07\x1b[2J", "a\x00b", "\ud800", "x\udfffy", "x" * 5000, "a|b|c",
    RAW_NUL, BAD_UTF8, "",
)  # fmt: skip
WORDS = (*BARAKAT_WORDS,) * 3 + (
    "ACCEPT", "Reject", " wait ", "delivered", "", " ", "accept\x00", "\x00accept",
    "\x1faccept", "\x0breject", "acc\u0435pt", "reject\u200b", f"bad token {TOKEN}", "x" * 500,
)  # fmt: skip
WRONG_WORDS = (1, 0, True, None, ["accept"], {"v": "reject"}, 2.5)

clean_pins = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ23456789-", min_size=6, max_size=24).map(
    "PIN".__add__
)
pin_texts = st.one_of(
    clean_pins,
    clean_pins,
    st.text("ŞĞÜİÇÖşğüıçöابتث٠١٢€/", min_size=4, max_size=10).map("PİN".__add__),
    st.sampled_from(["", " ", "-", " - ", "   "]),
    st.tuples(clean_pins, st.sampled_from(HOSTILE_BITS), st.integers(0, 30)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    ),
    st.sampled_from(["P" * 121, "Q" * 120, "R" * 5000]),
    clean_pins.map(lambda p: f"  {p} "),
)
json_pins = st.one_of(
    pin_texts,
    pin_texts,
    st.integers(0, 10**15),
    st.sampled_from([True, False, None, ["PIN-LIST"], {"v": "PIN-DICT"}, 1234.5, -0.0]),
)


def messages(secret: str) -> st.SearchStrategy[str]:
    """What a provider may say, including its own secret echoed back."""
    return st.one_of(
        st.sampled_from((*MESSAGES, f"bad credentials {secret} given")),
        st.text(max_size=30).filter(lambda t: "@@" not in t),
    )


@st.composite
def envelopes(draw: st.DrawFn, kind: str) -> Envelope:
    status = draw(st.sampled_from(STATUSES))
    headers: list[tuple[str, bytes]] = []
    if draw(st.booleans()):
        headers.append(("Retry-After", draw(st.sampled_from(RETRY_AFTER))))
    if 300 <= status < 400:
        headers.append(("Location", draw(st.sampled_from(LOCATIONS))))
    drop = draw(st.sampled_from((None,) * 12 + ("close", "reset", "partial")))
    if kind == "znet":
        return Envelope(status, tuple(headers), drop)
    raw = draw(
        st.one_of(
            st.none(),
            st.none(),
            st.sampled_from(
                [
                    b"",
                    b"<html>502</html>",
                    b"null",
                    b"[]",
                    b'{"status": "OK"}',
                    b'{"status": "OK", "data": []}',
                    b'{"error": "UNAUTHORIZED"}',
                    b'{"status": "OK", "data": [',
                    b"\xff\xfe",
                ]
            ),
            st.binary(max_size=40),
        )
    )
    top = draw(st.sampled_from(["OK"] * 5 + ["ok", "ERROR", None, 1]))
    data = draw(st.sampled_from(["list"] * 5 + ["dict", "null", "missing"]))
    return Envelope(status, tuple(headers), drop, raw, top, data, draw(st.booleans()))


@st.composite
def znet_steps(draw: st.DrawFn) -> Step:
    envelope = draw(envelopes("znet"))
    if draw(st.integers(0, 9)) == 0:
        odd = [b"", b"\n", "3|Hatalı istek".encode(), b"OK", b"OK|2", b"OK|2|PIN-SHORT"]
        return Step(envelope, draw(st.one_of(st.binary(max_size=30), st.sampled_from(odd))))
    head = draw(st.sampled_from(["OK"] * 8 + ["O\x00K", "ok", " OK", "\x1fOK", "OK\x00", "3"]))
    durum = draw(
        st.sampled_from(
            list("1223") * 4 + ["7", " 2 ", "\x003", "3\x00", "\x0b3", "\x1f2", "٢", "+2", "02", ""]
        )
    )
    pin = draw(pin_texts.filter(lambda p: "|" not in p))
    message = draw(messages(SIFRE))
    end = draw(st.sampled_from(["", "\n", "\r\n", "\x00"]))
    body = f"{head}|{durum}|{pin}|{message}{end}".encode("utf-8", "surrogatepass")
    for marker, raw in MARKERS.items():
        body = body.replace(marker, raw)
    return Step(envelope, body)


@st.composite
def barakat_items(draw: st.DrawFn, about: str, form: str) -> Item:
    doc: list[tuple[str, Any]] = []
    word = draw(
        st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WRONG_WORDS))
    )
    if draw(st.integers(0, 19)):
        doc.append((draw(st.sampled_from(["status", "status", "state", "orderStatus"])), word))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["pin", "pin", "code", "voucher", "serial"]))
        if key != "pin" and draw(st.booleans()):
            doc.append(("pin", draw(st.sampled_from(["", None]))))
        doc.append((key, draw(json_pins)))
    if draw(st.booleans()):
        doc.append(
            (draw(st.sampled_from(["note", "message", "desc", "text"])), draw(messages(TOKEN)))
        )
    if draw(st.integers(0, 3)) == 0:
        doc.append(
            ("replay_api", draw(st.lists(st.one_of(messages(TOKEN), st.just(1)), max_size=3)))
        )
    return Item(about, form, tuple(doc))


@st.composite
def barakat_steps(draw: st.DrawFn, reference: str, others: list[str]) -> Step:
    envelope = draw(st.one_of(st.none(), st.none(), st.none(), envelopes("barakat")))
    form = draw(st.sampled_from(["exact"] * 8 + ["int", "spaced"]))
    shape = draw(st.sampled_from(["one"] * 6 + ["none", "two", "other", "unasked"]))
    items = [] if shape == "none" else [draw(barakat_items(reference, form))]
    if shape == "two":
        items.append(draw(barakat_items(reference, "exact")))
    elif shape in ("other", "unasked"):
        other = draw(st.sampled_from(others))
        items.append(draw(barakat_items(other, "exact" if shape == "other" else "unasked")))
    return Step(envelope, items=tuple(items))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    orders = []
    znet_refs = [f"17608859152201{i:02d}" for i in range(draw(st.integers(1, 3)))]
    barakat_refs = [str(67890 + i) for i in range(draw(st.integers(1, 5)))]
    for kind, refs in (("znet", znet_refs), ("barakat", barakat_refs)):
        for ref in refs:
            step = znet_steps() if kind == "znet" else barakat_steps(ref, barakat_refs)
            orders.append(
                Order(
                    kind,
                    ref,
                    draw(st.sampled_from(["12.50", "0.01", "999.99", "0.00"])),
                    draw(st.integers(0, 1)),
                    tuple(draw(st.lists(step, min_size=1, max_size=3))),
                )
            )
    on_failed = draw(st.sampled_from(["refund", "refund", "reject", "hold"]))
    return Scenario(tuple(orders), on_failed, draw(st.integers(1, 4)))


class HostileProvider:
    """Answers each request with the next scripted step of the orders it names, and writes
    down what every reply said about every order (the oracle's meaning) and every PIN field."""

    def __init__(self, scenario: Scenario, trap_url: str) -> None:
        self.steps = {o.reference: o.steps for o in scenario.orders}
        self.trap = trap_url.encode()
        self.served: collections.Counter[str] = collections.Counter()
        self.said: dict[str, list[frozenset[Meaning]]] = collections.defaultdict(list)
        self.pin_fields: set[str] = set()
        self.stray: list[chaos_support.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: chaos_support.Request) -> chaos_support.Response:
        if request.path == "/servis/pin_kontrol.php":
            references = [request.query.get("tahsilat_api_islem_id", "")]
        elif request.path == "/client/api/check":
            references = [r for r in request.query.get("orders", "").strip("[]").split(",") if r]
        else:
            with self.lock:
                self.stray.append(request)
            return chaos_support.Response(body=f"OK|2|{STRAY_PIN}|x".encode())
        with self.lock:
            steps = [self._next(r) for r in references]
            if request.path == "/servis/pin_kontrol.php":
                return self._znet(references[0], steps[0])
            return self._barakat(references, steps)

    def _next(self, reference: str) -> Step:
        steps = self.steps.get(reference) or (Step(Envelope(404)),)
        step = steps[min(self.served[reference], len(steps) - 1)]
        self.served[reference] += 1
        return step

    def _response(self, envelope: Envelope, body: bytes) -> chaos_support.Response:
        headers = tuple((n, v.replace(b"{trap}", self.trap)) for n, v in envelope.headers)
        return chaos_support.Response(envelope.status, headers, body, envelope.drop)

    def _znet(self, reference: str, step: Step) -> chaos_support.Response:
        envelope = step.envelope or Envelope()
        meaning = znet_meaning(envelope.status, step.body)
        if envelope.drop or len(step.body) > MAX_REPLY_BYTES:
            meaning = frozenset({ERROR})
        self.said[reference].append(meaning)
        fields = step.body.split(b"|", 3)
        if len(fields) == 4 and fields[0] == b"OK":
            self.pin_fields.add(fields[2].decode("utf-8", "replace").strip())
        return self._response(envelope, step.body)

    def _barakat(self, references: list[str], steps: list[Step]) -> chaos_support.Response:
        envelope = next((s.envelope for s in steps if s.envelope), Envelope())
        items = [item for step in steps for item in step.items]
        document: dict[str, Any] = {} if envelope.top is None else {"status": envelope.top}
        data = [item.render() for item in items]
        shaped = {"list": data, "dict": dict(enumerate(data)), "null": None}
        if envelope.data in shaped:
            document["data"] = shaped[envelope.data]
        try:
            body = json.dumps(document, ensure_ascii=envelope.ascii).encode()
        except UnicodeEncodeError:  # a lone surrogate: only its escaped form can be sent
            body = json.dumps(document).encode()
        for marker, raw in MARKERS.items():
            body = body.replace(marker, raw)
        well_formed = envelope.top == "OK" and envelope.data == "list"
        if envelope.raw is not None:
            body, well_formed = envelope.raw, False
        poisoned = any(item.poisons for item in items)
        for reference in references:
            meaning = barakat_meaning(items, reference) if well_formed else frozenset({ERROR})
            if envelope.status != 200 or envelope.drop or len(body) > MAX_REPLY_BYTES:
                meaning = frozenset({ERROR})
            self.said[reference].append(meaning | ({ERROR} if poisoned else set()))
        # PIN fields that a redactor can find: those of a body that is JSON and read whole.
        if envelope.raw is None and not poisoned and len(body) <= MAX_REPLY_BYTES:
            for item in items:
                for key, value in item.doc:
                    if key in ("pin", "code", "voucher", "serial") and isinstance(value, str):
                        self.pin_fields.add(value.strip())
        return self._response(envelope, body)
