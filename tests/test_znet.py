"""The znet protocol: every reply variant of providers.md, and the adapter over real HTTP."""

import dataclasses
import datetime as dt
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermon.dev import simulator
from ordermon.providers import base, znet
from tests.conftest import KOD, SIFRE, make_config

C, F, P, E = (
    base.Outcome.COMPLETED,
    base.Outcome.FAILED,
    base.Outcome.PROCESSING,
    base.Outcome.ERROR,
)


@pytest.mark.parametrize(
    ("body", "outcome", "pin", "message"),
    [
        ("OK|2|AB12-CD34-EF56-GH78|Teslim edildi", C, "AB12-CD34-EF56-GH78", "Teslim edildi"),
        ("OK|2|  AB12  |Teslim edildi\n", C, "AB12", "Teslim edildi"),
        ("OK|2| - |Teslim edildi", C, None, "Teslim edildi"),
        ("OK|2|-|Teslim edildi", C, None, "Teslim edildi"),
        ("OK|2||Teslim edildi", C, None, "Teslim edildi"),
        ("OK|2| |Teslim edildi", C, None, "Teslim edildi"),
        ("OK|1| |İşlem bekleniyor", P, None, "İşlem bekleniyor"),
        ("OK|1| - |İşlem bekleniyor", P, None, "İşlem bekleniyor"),
        ("OK|3| |İptal edildi", F, None, "İptal edildi"),
        ("OK|2|PIN|a|b|c", C, "PIN", "a|b|c"),
        ("OK|3| |", F, None, None),
    ],
)
def test_reply_variants(body: str, outcome: base.Outcome, pin: str | None, message: str) -> None:
    """Each documented reply maps to its outcome, PIN (placeholders are no PIN) and message."""
    answer = znet.parse(200, body.encode())
    assert answer == base.Answer(outcome, pin, message)


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (200, "3|Hatalı istek", "request refused: 3|Hatalı istek"),
        (200, "", "empty reply"),
        (200, "   \n", "empty reply"),
        (200, "OK|9| |?", "unknown status '9'"),
        (200, "OK|| |?", "unknown status ''"),
        (200, "OK|2|PIN", "fewer than four fields"),
        (200, "<html>502</html>", "unrecognised reply"),
        (200, "ok|2|PIN|x", "unrecognised reply"),
        (500, "OK|2|PIN|x", "HTTP 500"),
        (200, "OK|2|" + "X" * 121 + "|x", "PIN of 121 characters does not fit"),
        (200, "OK|2|AB\x0012|ok", "PIN is not printable text"),
        (200, "O\x00K|\x003| |x", "unrecognised reply"),
        (200, "OK|3\x00| |x", "unknown status '3\\x00'"),
    ],
)
def test_errors_never_fail_an_order(status: int, body: str, says: str) -> None:
    """Request errors, empty bodies, unknown words and HTTP errors are `error`, never `failed`."""
    answer = znet.parse(status, body.encode())
    assert answer.outcome is E
    assert says in (answer.message or "")


def test_invalid_utf8_and_truncation_are_errors() -> None:
    """Undecodable or oversized replies are errors."""
    assert znet.parse(200, b"OK|2|PIN|\xff\xfe").outcome is E
    assert znet.parse(200, b"OK|2|PIN|x", truncated=True).outcome is E


def _oracle(body: bytes) -> tuple[base.Outcome, str | None] | None:
    """An independent reading of providers.md: the final outcome a well-formed reply states.
    Read as sent: only spaces and line ends around the reply and its fields are trimmed."""
    try:
        text = body.decode("utf-8").strip(" \t\r\n")
    except UnicodeDecodeError:
        return None
    parts = text.split("|")
    if len(parts) < 4 or parts[0] != "OK":
        return None
    message = "|".join(parts[3:])
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in message):
        return None  # a second line or a control byte: the reply contradicts itself
    durum, pin = parts[1].strip(" "), parts[2].strip(" \t\r\n")
    if durum == "3":
        return (F, None)
    if durum == "2":
        real = pin if pin not in ("", "-") else None
        if real is not None and (len(real) > 120 or not real.isprintable()):
            return None
        return (C, real)
    return None


@given(st.binary(max_size=300))
def test_arbitrary_bytes_finalise_only_well_formed_replies(body: bytes) -> None:
    """No input raises, and only a reply the oracle reads as final is final."""
    answer = znet.parse(200, body)
    expected = _oracle(body)
    if answer.outcome.final:
        assert expected == (answer.outcome, answer.pin)
    elif expected is not None:
        raise AssertionError(f"{body!r} is final by the protocol but parsed as {answer}")


@given(
    st.sampled_from(["1", "2", "3", "4", " 2 ", "x"]),
    st.text(max_size=20).filter(lambda s: "|" not in s),
    st.text(max_size=40),
)
def test_structured_replies_agree_with_the_oracle(durum: str, pin: str, message: str) -> None:
    """Replies shaped like znet's agree with the oracle on final outcomes."""
    body = f"OK|{durum}|{pin}|{message}".encode()
    answer = znet.parse(200, body)
    expected = _oracle(body)
    assert (answer.outcome, answer.pin) == expected if expected else not answer.outcome.final


@pytest.fixture
def adapter(sim: simulator.Simulator) -> znet.Znet:
    cfg = make_config("postgresql://unused", sim.url)
    provider = dataclasses.replace(cfg.providers[0], timeout=1.0)
    return znet.Znet(provider)


@pytest.mark.parametrize(
    ("steps", "outcome", "pin", "http_status"),
    [
        (("completed:PIN-1",), C, "PIN-1", 200),
        (("completed",), C, None, 200),
        (("processing",), P, None, 200),
        (("processing-blank",), P, None, 200),
        (("failed",), F, None, 200),
        (("unknown",), E, None, 200),
        (("request_error",), E, None, 200),
        (("empty",), E, None, 200),
        (("garbage",), E, None, 200),
        (("http500",), E, None, 500),
        (("raw:OK|2|ÇĞ-PİN|Açıklama|with|pipes",), C, "ÇĞ-PİN", 200),
    ],
)
def test_simulator_replies_through_the_adapter(
    sim: simulator.Simulator,
    adapter: znet.Znet,
    steps: tuple[str, ...],
    outcome: base.Outcome,
    pin: str | None,
    http_status: int,
) -> None:
    """Each simulator reply reaches the adapter over HTTP and maps to the right outcome."""
    sim.script("1760885915220128", *steps)
    check = adapter.check(["1760885915220128"])["1760885915220128"]
    assert (check.answer.outcome, check.answer.pin, check.http_status) == (
        outcome,
        pin,
        http_status,
    )
    assert sim.count("1760885915220128") == 1
    assert SIFRE not in (check.excerpt or "") + (check.answer.message or "")


def test_request_carries_kod_sifre_and_reference(
    sim: simulator.Simulator, adapter: znet.Znet
) -> None:
    """The request is GET /servis/pin_kontrol.php with kod, sifre and tahsilat_api_islem_id."""
    sim.script("42", "completed:X")
    adapter.check(["42"])["42"]
    request = sim.requests[-1]
    assert (request.path, request.reference, request.kod) == (simulator.ZNET_PATH, "42", KOD)


def test_wrong_password_gets_the_empty_reply(sim: simulator.Simulator) -> None:
    """A wrong sifre gets znet's empty body: an error that says what it usually means."""
    cfg = make_config("postgresql://unused", sim.url)
    provider = dataclasses.replace(cfg.providers[0], sifre="wrong")
    check = znet.Znet(provider).check(["42"])["42"]
    assert check.answer.outcome is E
    assert "whitelist" in (check.answer.message or "")


def test_retry_after_is_read(sim: simulator.Simulator, adapter: znet.Znet) -> None:
    """429 and 503 carry Retry-After seconds back to the scheduler."""
    sim.script("a", "429:120")
    sim.script("b", "503:7")
    first, second = adapter.check(["a"])["a"], adapter.check(["b"])["b"]
    assert (first.answer.outcome, first.http_status, first.retry_after) == (E, 429, 120.0)
    assert (second.http_status, second.retry_after) == (503, 7.0)


def test_retry_after_http_date() -> None:
    """Retry-After may be an HTTP date."""
    when = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()
    value = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert base.parse_retry_after(value, now) == 30.0
    assert base.parse_retry_after("soon") is None


def test_timeout_is_an_error(sim: simulator.Simulator, adapter: znet.Znet) -> None:
    """A provider slower than the timeout is an error, well before it answers."""
    sim.script("slow", "hang:5")
    check = adapter.check(["slow"])["slow"]
    assert check.answer.outcome is E
    assert "timed out" in (check.answer.message or "")
    assert check.latency_ms < 4000


def test_connection_refused_is_redacted() -> None:
    """A refused connection is an error whose message carries no URL and no secret."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = make_config("postgresql://unused", f"http://127.0.0.1:{port}")
    check = znet.Znet(cfg.providers[0]).check(["42"])["42"]
    assert check.answer == base.Answer(E, None, "connection refused")


def test_oversized_reply_is_cut(sim: simulator.Simulator) -> None:
    """A reply larger than max_reply_bytes is an error, not read to the end."""
    cfg = make_config("postgresql://unused", sim.url)
    provider = dataclasses.replace(cfg.providers[0], max_reply_bytes=256)
    sim.script("big", "raw:OK|2|PIN|" + "x" * 5000)
    check = znet.Znet(provider).check(["big"])["big"]
    assert check.answer.outcome is E
    assert "too large" in (check.answer.message or "")


def test_redactor_hides_plain_and_encoded_secrets() -> None:
    """Both the plain and the URL-encoded secret are replaced."""
    redact = base.Redactor(["p@ss word"])
    assert redact("a p@ss word b p%40ss%20word c p%40ss+word") == "a *** b *** c ***"
