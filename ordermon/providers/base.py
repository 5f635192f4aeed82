"""What every provider adapter shares: the outcome type, the Protocol, redaction, and what
one HTTP request gives back (the request itself, bounded everywhere, is transport.py's)."""

import dataclasses
import email.utils
import enum
import re
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from ordermon.config import providers as provider_config
from ordermon.providers import redaction, text

EXCERPT_BYTES = redaction.EXCERPT_BYTES
PIN_MAX_LENGTH = 120  # product_orders."pinCode" is varchar(120): a cut PIN is a wrong PIN
_PIN_PLACEHOLDERS = ("", "-")  # a provider's way of saying "no PIN"
_PIN_PADDING = " \t\r\n"  # trimmed around a PIN; any other control character is an error


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    PROCESSING = "processing"
    ERROR = "error"

    @property
    def final(self) -> bool:
        return self in (Outcome.COMPLETED, Outcome.FAILED)


class Trouble(enum.StrEnum):
    """Why a request told nothing about the order: the provider's fault, not the order's.
    Such a check spends no attempt and never expires an order."""

    TRANSPORT = "transport"  # timeout, connection error, HTTP 5xx
    CREDENTIALS = "credentials"  # 401/403, UNAUTHORIZED, znet's empty reply: a config problem
    THROTTLED = "throttled"  # 429: slow down


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a provider's reply means for one order. A parser's message is storable text of
    at most text.PARSED_CHARS, not yet redacted: the adapter redacts it, then cuts it."""

    outcome: Outcome
    pin: str | None = None
    message: str | None = None
    # A status word no rule knows, as the provider sent it (cleaned, not yet redacted): the
    # adapter logs it, redacted and cut, where it knows the provider's secrets.
    unknown_word: str | None = dataclasses.field(default=None, compare=False)


def error(message: str) -> Answer:
    return Answer(Outcome.ERROR, message=text.storable(message, text.PARSED_CHARS))


def unknown_word(raw: Any, what: str = "unknown status", where: str = "") -> Answer:
    """An error for a status word no rule knows (a new word must be seen, never guessed)."""
    if raw is None:
        shown = "none"
    elif isinstance(raw, str | int | float):  # bool included
        shown = text.storable(str(raw)[: text.PARSED_CHARS], text.PARSED_CHARS)
    else:  # a list or an object: its type says enough, and its text could be any length
        shown = f"<{type(raw).__name__}>"
    message = f"{what} '{shown}'" + (f" at {where}" if where else "")
    return dataclasses.replace(error(message), unknown_word=shown)


@dataclasses.dataclass(frozen=True)
class Check:
    """One provider call about one order: the answer and what the operator needs to see."""

    answer: Answer
    latency_ms: int
    http_status: int | None = None
    excerpt: str | None = None
    retry_after: float | None = None
    trouble: Trouble | None = None
    sent: bool = True  # False: held back (provider paused or throttled), nothing was asked


class Provider(Protocol):
    config: provider_config.ProviderConfig

    def plan(self, references: Sequence[str]) -> list[list[str]]:
        """Split references into the groups that each make one request."""
        ...

    def check(self, references: Sequence[str]) -> dict[str, Check]:
        """One request about ``references``; an answer for each; never raises."""
        ...

    def probe(self) -> Check:
        """One harmless request that tells whether the network and credentials work."""
        ...

    def close(self) -> None: ...


Redactor = redaction.Redactor


def is_no_pin(value: Any) -> bool:
    """Nothing in a PIN field: absent, null, blank or the ``-`` placeholder."""
    return value is None or (
        isinstance(value, str) and value.strip(_PIN_PADDING) in _PIN_PLACEHOLDERS
    )


def read_pin(value: Any) -> tuple[str | None, str | None]:
    """(PIN, problem) from a PIN field as sent: a string, or a JSON integer (numeric PINs
    come as both), of printable characters that fit the column. Anything else is a problem,
    never a cleaned or a dropped PIN."""
    if is_no_pin(value):
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"PIN field has the wrong type ({type(value).__name__})"
    pin = str(value).strip(_PIN_PADDING)
    if not pin.isprintable():  # control and format characters, lone surrogates, unassigned
        return None, "PIN is not printable text"
    if len(pin) > PIN_MAX_LENGTH:
        return None, f"PIN of {len(pin)} characters does not fit (max {PIN_MAX_LENGTH})"
    return pin, None


def finished(outcome: Outcome, pin: Any, message: str | None) -> Answer:
    """An answer with its PIN checked (a completed answer with an unusable PIN is an error)
    and its message made storable, without the PIN should the provider echo it there."""
    stored = text.storable(message, text.PARSED_CHARS) if message else None
    if outcome is not Outcome.COMPLETED:
        return Answer(outcome, message=stored)
    found, problem = read_pin(pin)
    if problem is not None:
        return error(problem)
    if found is not None and stored is not None:
        stored = redaction.hide_pins(stored, [found])
    return Answer(outcome, pin=found, message=stored)


def http_trouble(status: int) -> Trouble | None:
    if 300 <= status < 400:
        return Trouble.TRANSPORT  # a redirect: base_url is wrong, not the order
    if status in (401, 403):
        return Trouble.CREDENTIALS
    if status == 429:
        return Trouble.THROTTLED
    if status >= 500:
        return Trouble.TRANSPORT
    return None


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    retry_after: float | None
    truncated: bool
    location: str | None = None  # a redirect's target, as sent (never followed)


class TransportError(Exception):
    """A request that produced no reply; the message holds no URL, hence no secret."""


RETRY_AFTER_MAX = 7 * 86400.0  # no provider holds ordermon off longer, whatever it asks
# ASCII only (str.isdigit() accepts "²" too); a long run of digits still means "a long time",
# so it is capped rather than ignored, but a header of thousands of digits is not a number.
_RETRY_SECONDS = re.compile(r"[0-9]{1,40}")
_HTTP_DATE_MAX = 64  # "Wednesday, 31-Dec-2025 23:59:59 GMT" and friends are shorter


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: ASCII digits or a timezone-aware HTTP date, at most
    `RETRY_AFTER_MAX`; anything else is None, never an exception."""
    if not value:
        return None
    value = value.strip()
    if _RETRY_SECONDS.fullmatch(value):
        return min(float(value), RETRY_AFTER_MAX)
    if len(value) > _HTTP_DATE_MAX or not value.isascii():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def excerpt(body: bytes, redact: Redactor, **pins: Any) -> str:
    """A few hundred bytes of the reply as storable text, redacted before they are cut (the
    adapters give their PIN fields: see redaction.excerpt)."""
    return redaction.excerpt(body, redact, **pins)


def connection_reason(exc: BaseException) -> str:
    """A fixed phrase for why a request failed ("timed out" for any timeout), found by the
    types of the exceptions it is made of: their text may quote the URL or the provider's
    bytes, so it is never shown."""
    import http.client
    import ssl

    import requests
    import urllib3.exceptions

    # requests' exceptions are OSErrors too: only the socket's own count as one here
    causes = [c for c in _causes(exc) if not isinstance(c, requests.RequestException)]
    if any(type(c) is http.client.HTTPException and "headers" in str(c) for c in causes):
        return "too many reply headers"  # http.client's own words, not the provider's
    for kind, reason in (
        (ConnectionRefusedError, "connection refused"),
        (socket.gaierror, "host name not found"),
        (urllib3.exceptions.NameResolutionError, "host name not found"),
        (ssl.SSLCertVerificationError, "TLS certificate not trusted"),
        (ssl.SSLError, "TLS error"),
        (urllib3.exceptions.ProxyError, "proxy refused the connection"),
        (http.client.RemoteDisconnected, "connection closed without a reply"),
        (ConnectionResetError, "connection reset"),
        (BrokenPipeError, "connection closed without a reply"),
        (http.client.LineTooLong, "reply status or header line too long"),
        (http.client.BadStatusLine, "reply is not HTTP"),
        (http.client.IncompleteRead, "reply cut short"),
        (urllib3.exceptions.DecodeError, "reply could not be decoded"),
        (TimeoutError, "timed out"),
        (OSError, "connection failed"),  # before urllib3's TimeoutError: NewConnectionError is one
        (urllib3.exceptions.TimeoutError, "timed out"),
        (urllib3.exceptions.ProtocolError, "connection failed"),
    ):
        if any(isinstance(cause, kind) for cause in causes):
            return reason
    return f"request failed ({type(exc).__name__})"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and those it wraps, outermost first (urllib3 and requests nest them in
    arguments, ``reason``, ``__cause__`` and ``__context__``)."""
    found: list[BaseException] = []
    pending = [exc]
    while pending and len(found) < 20:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        pending.extend(item for item in nested if isinstance(item, BaseException))
    return found
