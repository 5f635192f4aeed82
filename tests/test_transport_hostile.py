"""The HTTP transport against a hostile provider (tests/hostile.py): the timeout covers the
whole exchange, redirects are never followed, Retry-After is parsed strictly and capped, and
nothing a provider sends escapes the transport as anything but a transport error."""

import datetime as dt
import email.utils
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordermon import config, db, providers
from ordermon.config import providers as provider_config
from ordermon.providers import base
from tests import hostile
from tests.conftest import (
    SIFRE,
    TOKEN,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    order_row,
    provider_doc,
    run_cli,
)

E = base.Outcome.ERROR
ZNET_DONE = b"OK|2|PIN-1|done"
ZNET_WAITING = b"OK|1| |bekliyor"


def _provider(url: str, kind: str = "znet", **extra: Any) -> provider_config.ProviderConfig:
    document = config_document(
        "postgresql://unused", url, providers=[provider_doc(kind, url, **extra)]
    )
    return config.parse(document, {}).providers[0]


def _check(url: str, kind: str = "znet", reference: str = "42", **extra: Any) -> base.Check:
    adapter = providers.build(_provider(url, kind, **extra))
    try:
        return adapter.check([reference])[reference]
    finally:
        adapter.close()


def _timed_check(step: hostile.Step, **extra: Any) -> tuple[base.Check, float]:
    with hostile.Server(step) as server:
        started = time.monotonic()
        check = _check(server.url, **extra)
        return check, time.monotonic() - started


def _config_file(tmp_path: Path, db_url: str, url: str, **provider: Any) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_document(db_url, url, provider=provider)))
    return str(path)


# -- #7: the timeout covers the status line and the headers ----------------------------------


TRICKLED = hostile.head(200, {"Content-Length": str(len(ZNET_DONE)), "X-Pad": "a" * 30})


def test_trickled_headers_end_at_the_timeout() -> None:
    """A provider trickling its status line and headers one byte a second is abandoned at the
    2 s timeout as a transport error, not after the 40-odd seconds the headers take."""
    check, elapsed = _timed_check(hostile.trickle(TRICKLED + ZNET_DONE, 1), timeout="2s")
    assert check.answer.outcome is E
    assert check.trouble is base.Trouble.TRANSPORT
    assert check.answer.message == "timed out after 2s"
    assert 1.5 <= elapsed < 8


def test_trickled_headers_end_at_the_timeout_in_check(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """`ordermon check --dry-run` against a provider trickling headers at one byte a second
    ends, with a timed-out error, within a few seconds of its 2 s timeout."""
    order = add_order(conn, add_user(conn), "r1")
    with hostile.Server(hostile.trickle(TRICKLED + ZNET_DONE, 1)) as server:
        config_path = _config_file(tmp_path, db_url, server.url, timeout="2s")
        started = time.monotonic()
        result = run_cli("check", str(order), "--dry-run", "--json", "--config", config_path)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr  # an `error` answer: --dry-run exits 1
    data = json.loads(result.stdout)
    assert (data["outcome"], data["message"]) == ("error", "timed out after 2s")
    assert elapsed < 8


def test_trickled_body_ends_at_the_timeout() -> None:
    """Headers at once and a body one byte a second: still one deadline for the exchange."""
    check, elapsed = _timed_check(_slow_body(), timeout="2s")
    assert check.answer.outcome is E and check.trouble is base.Trouble.TRANSPORT
    assert elapsed < 8


def _slow_body() -> hostile.Step:
    def action(exchange: hostile.Exchange) -> None:
        exchange.send(hostile.head(200, {"Content-Length": "100000"}))
        while not exchange.wait(0.5):
            exchange.send(b"x")

    return hostile.Step(action)


def test_tls_handshake_gets_only_the_timeout() -> None:
    """An https provider that accepts the connection and never answers the TLS handshake is
    abandoned at the timeout."""
    with hostile.Server(hostile.hang()) as server:
        url = server.url.replace("http://", "https://")
        started = time.monotonic()
        check = _check(url, timeout="2s")
        elapsed = time.monotonic() - started
    assert (check.answer.message, check.trouble) == ("timed out after 2s", base.Trouble.TRANSPORT)
    assert elapsed < 8


# -- #6: redirects are never followed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "secret"), [("znet", SIFRE), ("internal", TOKEN), ("json", f"Bearer%20{TOKEN}")]
)
def test_redirect_is_not_followed(kind: str, secret: str) -> None:
    """A 302 to another server is an error naming the redacted target, and that server never
    gets a request (so never the provider's token, tenant host or custom headers)."""
    with hostile.Server(hostile.reply(200, ZNET_DONE)) as target:
        location = f"{target.url}/steal/{secret}?token={TOKEN}&sifre={SIFRE}#frag"
        with hostile.Server(hostile.redirect(location, 302)) as origin:
            check = _check(origin.url, kind, reference="00000000-0000-0000-0000-000000000042")
    assert target.connections == 0 and target.requests == []
    assert len(origin.requests) == 1
    assert check.answer.outcome is E
    assert check.trouble is base.Trouble.TRANSPORT
    assert check.http_status == 302
    assert check.answer.message == (
        f"redirected (HTTP 302) to {target.url}/steal/***?...; "
        "ordermon does not follow redirects: fix base_url"
    )


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("/login?next=x", "{origin}/login?..."),
        ("https://user:pa55word@other.example:8443/x", "https://other.example:8443/x"),
        ("http://other.example/\x00\x1b[2J\u202e", "http://other.example/%00%1B%5B2J%E2%80%AE"),
        ("http://[::1/x", "an unreadable location"),
        ("", "an unreadable location"),
        ("http://other.example/" + "a" * 5000, "http://other.example/" + "a" * 179 + "..."),
    ],
)
def test_redirect_target_is_shown_safely(location: str, shown: str) -> None:
    """The target a redirect names is shown resolved, without credentials, query or control
    characters, and cut to a bounded length."""
    headers = {"Location": location, "Content-Length": "0", "Connection": "close"}
    raw = hostile.head(301, {}).replace(b"\r\n\r\n", b"\r\n")
    raw += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
    with hostile.Server(hostile.send(raw)) as origin:
        check = _check(origin.url)
    assert check.trouble is base.Trouble.TRANSPORT and check.http_status == 301
    expected = shown.format(origin=origin.url)
    assert check.answer.message == (
        f"redirected (HTTP 301) to {expected}; ordermon does not follow redirects: fix base_url"
    )


# -- #3: Retry-After parsed strictly and capped ------------------------------------------------


_RETRY_AFTER_TEXT = st.one_of(
    st.text(),
    st.text(st.characters(categories=("Nd", "No", "Zs", "Pd")), max_size=30),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.datetimes(timezones=st.timezones()).map(email.utils.format_datetime),
    st.datetimes().map(lambda when: when.strftime("%a, %d %b %Y %H:%M:%S %z")),
)


@given(_RETRY_AFTER_TEXT)
def test_retry_after_never_raises(value: str) -> None:
    """Any header text gives None or a number of seconds between 0 and the absolute cap."""
    seconds = base.parse_retry_after(value, 1_700_000_000.0)
    assert seconds is None or 0 <= seconds <= base.RETRY_AFTER_MAX


@pytest.mark.parametrize(
    "value",
    [
        "²",
        "\u0663\u0660",  # Arabic-Indic digits: isdigit() says yes, HTTP says no
        "99999999999999999999",
        "12345678901",
        "-5",
        "+5",
        "1e9",
        "1.5",
        "inf",
        "nan",
        "0x10",
        "3 0",
        "9" * 100_000,
        "Fri, 31 Dec 9999 23:59:59 -2359",
        "Mon, 01 Jan 0001 00:00:00 +2359",
        "Fri, 31 Dec 9999 23:59:59 -0000",  # no zone: not an HTTP date
        "Fri, 31 Dec 2100 23:59:59",
        "Fri, 31 Dec 2100 23:59:59 GMT " + "x" * 10_000,
        "Thu, 99 Feb 2026 99:99:99 GMT",
    ],
)
def test_hostile_retry_after_is_ignored_or_capped(value: str) -> None:
    """Non-ASCII digits, signs, exponents, huge numbers and impossible dates are ignored (or
    capped), never an exception, never infinite."""
    seconds = base.parse_retry_after(value, 1_700_000_000.0)
    assert seconds is None or 0 <= seconds <= base.RETRY_AFTER_MAX


def test_retry_after_accepts_seconds_and_dates() -> None:
    """Plain ASCII seconds and timezone-aware HTTP dates are read; a past date is 0."""
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()
    assert base.parse_retry_after(" 120 ", now) == 120.0
    assert base.parse_retry_after("0", now) == 0.0
    assert base.parse_retry_after("9999999999", now) == base.RETRY_AFTER_MAX
    assert base.parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert base.parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert base.parse_retry_after("Sun, 01 Jan 2040 00:00:00 GMT", now) == base.RETRY_AFTER_MAX


def test_retry_after_is_capped_at_max_cooldown() -> None:
    """A provider asking to be left alone for ten years is held at most pause.max_cooldown."""
    step = hostile.reply(429, b"slow down", {"Retry-After": "315360000"})
    check, _ = _timed_check(step, pause={"cooldown": "1m", "max_cooldown": "10m"})
    assert check.trouble is base.Trouble.THROTTLED
    assert check.retry_after == 600.0


HOSTILE_RETRY_AFTER = [b"99999999999999999999", b"\xb2", "²".encode(), b"-5", b"1e999"]


@pytest.mark.parametrize("status", [429, 503, 200])
@pytest.mark.parametrize("value", HOSTILE_RETRY_AFTER)
def test_hostile_retry_after_in_an_adapter(status: int, value: bytes) -> None:
    """Whatever a Retry-After holds, the adapter answers (never raises) with a bounded wait."""
    body = ZNET_WAITING if status == 200 else b"busy"
    raw = hostile.head(status, {"Content-Length": str(len(body)), "Connection": "close"})
    raw = raw[:-2] + b"Retry-After: " + value + b"\r\n\r\n" + body
    check, _ = _timed_check(hostile.send(raw))
    assert check.http_status == status
    assert check.retry_after is None or 0 <= check.retry_after <= 1800


@pytest.mark.parametrize(
    ("status", "value", "dry_run"),
    [
        (429, "99999999999999999999", True),
        (429, "²", True),
        (200, "²", True),
        (429, "99999999999999999999", False),
        (200, "99999999999999999999", False),
        (503, "99999999999999999999", False),
    ],
)
def test_hostile_retry_after_through_check(
    conn: db.Connection, db_url: str, tmp_path: Path, status: int, value: str, dry_run: bool
) -> None:
    """`ordermon check` (dry or recording) survives a huge or non-ASCII Retry-After on a 429,
    a 503 or a 200: no traceback, exit 0 (or, for a dry run answered with an error, exit 1
    and the answer shown), and a recorded wait within max_cooldown."""
    order = add_order(conn, add_user(conn), "r1")
    body = ZNET_WAITING if status == 200 else b"busy"
    step = hostile.reply(status, body, {"Retry-After": value})
    with hostile.Server(step) as server:
        config_path = _config_file(tmp_path, db_url, server.url)
        args = ["check", str(order), "--json", "--config", config_path]
        result = run_cli(*args, *(["--dry-run"] if dry_run else []))
    assert "Traceback" not in result.stderr
    answer = json.loads(result.stdout)
    refused = dry_run and answer["outcome"] == "error"
    assert result.returncode == (1 if refused else 0), result.stderr
    assert refused == (dry_run and status != 200)
    if not dry_run:
        next_check = enrolment_of(conn, order)["next_check_at"]
        assert next_check <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)
        assert order_row(conn, order)["status"] == "pending"


# -- #4: a 503 with Retry-After means "slow down" ---------------------------------------------


@pytest.mark.parametrize("kind", ["znet", "barakat"])
def test_503_with_retry_after_is_throttled(kind: str) -> None:
    """503 with Retry-After: 30 is THROTTLED with a 30 s wait; a bare 503 stays TRANSPORT."""
    with hostile.Server(
        hostile.reply(503, b"busy", {"Retry-After": "30"}), hostile.reply(503, b"busy")
    ) as server:
        slow_down = _check(server.url, kind)
        down = _check(server.url, kind)
    assert (slow_down.trouble, slow_down.retry_after) == (base.Trouble.THROTTLED, 30.0)
    assert slow_down.answer.outcome is E
    assert (down.trouble, down.retry_after) == (base.Trouble.TRANSPORT, None)


# -- bounds: headers, bodies, and nothing but TransportError out of fetch -------------------


def _endless_headers() -> hostile.Step:
    def action(exchange: hostile.Exchange) -> None:
        exchange.send(b"HTTP/1.1 200 OK\r\n")
        while not exchange.stopping.is_set():
            exchange.send(b"X-More: yes\r\n" * 100)

    return hostile.Step(action)


def _many_headers(count: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * count + b"\r\n" + ZNET_DONE


@pytest.mark.parametrize(
    ("step", "says"),
    [
        (hostile.send(hostile.head(200, {"X-Big": "a" * 200_000}) + ZNET_DONE), "header"),
        (hostile.send(_many_headers(5000)), "headers"),
        (_endless_headers(), "headers"),
        (hostile.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 10_000_000), "header"),
        (hostile.send(b"HELLO\r\n\r\n"), "not HTTP"),
        (hostile.send(b"HTTP/1.1 2000 OK\r\n\r\n"), "not HTTP"),
        (hostile.send(b"\x00\xff" * 100), "not HTTP"),
        (hostile.reset(), "connection reset"),
        (hostile.reset(before_request=True), "connection"),
        (hostile.close(), "connection closed without a reply"),
        (hostile.close(before_request=True), "connection"),
        (
            hostile.send(hostile.head(200, {"Transfer-Encoding": "chunked"}) + b"zz\r\nab"),
            "reply cut short",
        ),
        (
            hostile.send(hostile.head(200, {"Content-Length": "100"}) + ZNET_DONE),
            "reply cut short",
        ),
        (
            hostile.send(hostile.head(200, {"Content-Encoding": "gzip"}) + b"not gzip at all"),
            "reply could not be decoded",
        ),
    ],
)
def test_hostile_replies_are_transport_errors(step: hostile.Step, says: str) -> None:
    """Enormous or endless headers, non-HTTP bytes, resets, early closes, broken chunking and
    bad compression: each a transport error within the timeout, naming no URL."""
    check, elapsed = _timed_check(step, timeout="3s")
    assert check.answer.outcome is E
    assert check.trouble is base.Trouble.TRANSPORT
    message = check.answer.message or ""
    assert says in message
    assert "127.0.0.1" not in message and SIFRE not in message
    assert elapsed < 8


def test_ten_megabyte_body_is_cut_at_max_reply_bytes() -> None:
    """A 10 MB body is read only up to max_reply_bytes: an error, quickly, excerpt bounded."""
    check, elapsed = _timed_check(hostile.huge(), max_reply_bytes=65536)
    assert check.answer.outcome is E
    assert "too large" in (check.answer.message or "")
    assert len(check.excerpt or "") <= 300
    assert elapsed < 8


def test_malformed_header_logs_no_secret(conn: db.Connection, db_url: str, tmp_path: Path) -> None:
    """A header line urllib3 cannot parse makes it warn quoting the request URL: that warning
    (kod and sifre in its query) never reaches stderr, in `sweep` or in `check`."""
    order = add_order(conn, add_user(conn), "r1")
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nA: b\r\nnot a header\r\n\r\n" + ZNET_DONE
    with hostile.Server(hostile.send(raw)) as server:
        config_path = _config_file(tmp_path, db_url, server.url)
        checked = run_cli("check", str(order), "--dry-run", "--json", "--config", config_path)
        swept = run_cli("sweep", "--config", config_path)
    for result in (checked, swept):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert SIFRE not in result.stderr + result.stdout
    assert json.loads(checked.stdout)["outcome"] == "completed"
    assert len(server.requests) == 2


_REPLY_PREFIXES = [
    b"",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n",
    b"HTTP/1.1 302 Found\r\n",
    b"HTTP/1.1 429 Slow\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n",
]
_HEADER_LINES = st.sampled_from(
    [
        b"Location: ",
        b"Retry-After: ",
        b"Content-Length: ",
        b"Transfer-Encoding: ",
        b"Content-Encoding: ",
        b"Connection: ",
        b"X-",
    ]
)


@st.composite
def _hostile_replies(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from(_REPLY_PREFIXES))
    lines = draw(
        st.lists(st.tuples(_HEADER_LINES, st.binary(max_size=40)), max_size=4).map(
            lambda pairs: b"".join(name + value + b"\r\n" for name, value in pairs)
        )
    )
    tail = draw(st.binary(max_size=200))
    return prefix + lines + draw(st.sampled_from([b"", b"\r\n"])) + tail


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile_replies())
def test_any_reply_is_an_answer_or_a_transport_error(raw: bytes) -> None:
    """Whatever bytes a provider sends, a check gives an answer for the order, never raises,
    and ends within the timeout."""
    with hostile.Server(hostile.send(raw)) as server:
        started = time.monotonic()
        check = _check(server.url, timeout="2s")
        elapsed = time.monotonic() - started
    assert isinstance(check.answer.outcome, base.Outcome)
    assert check.retry_after is None or 0 <= check.retry_after <= 1800
    if check.http_status is not None and 300 <= check.http_status < 400:
        assert check.trouble is base.Trouble.TRANSPORT
    assert elapsed < 6
