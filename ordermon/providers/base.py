"""What every provider adapter shares: the outcome type, the Protocol, redaction, and one
HTTP request with a timeout on the whole exchange and a cap on the reply's size."""

import dataclasses
import email.utils
import enum
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ordermon import provider_config
from ordermon.providers import redaction, text

if TYPE_CHECKING:
    import requests

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


class TransportError(Exception):
    """A request that produced no reply; the message holds no URL, hence no secret."""


def fetch(
    session: "requests.Session",
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; the whole exchange, not just each read, ends after ``timeout`` seconds."""
    import requests
    import urllib3.exceptions

    started = time.monotonic()
    try:
        with session.request(
            method, url, params=params, headers=headers, timeout=timeout, stream=True
        ) as response:
            body = bytearray()
            truncated = False
            while True:
                # read1 returns whatever has arrived, so a reply that trickles in forever is
                # caught by the deadline below (read() would wait for a full buffer first).
                chunk = response.raw.read1(16384, decode_content=True)
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    truncated = True
                    break
                if time.monotonic() - started > timeout:
                    raise TransportError(f"no complete reply within {timeout:g}s")
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return Reply(response.status_code, bytes(body[:max_bytes]), retry_after, truncated)
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise TransportError(f"timed out after {timeout:g}s") from None
    except requests.ConnectionError as exc:
        raise TransportError(_connection_reason(exc)) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise TransportError(f"request failed ({type(exc).__name__})") from None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def excerpt(body: bytes, redact: Redactor, **pins: Any) -> str:
    """A few hundred bytes of the reply as storable text, redacted before they are cut (the
    adapters give their PIN fields: see redaction.excerpt)."""
    return redaction.excerpt(body, redact, **pins)


def _connection_reason(exc: Exception) -> str:
    text = repr(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("NameResolutionError", "host name not found"),
        ("Temporary failure in name resolution", "host name not found"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
        ("SSLError", "TLS error"),
        ("RemoteDisconnected", "connection closed without a reply"),
        ("Connection reset", "connection reset"),
        ("Read timed out", "timed out waiting for the reply"),
        ("timed out", "connect timed out"),
        ("ProxyError", "proxy refused the connection"),
    ):
        if needle in text:
            return reason
    return "connection failed"
