"""znet (Turkish reseller panels): one GET per order, a plain-text ``OK|DURUM|PIN|ACIKLAMA``
reply. See shared/providers.md; every reply that is not exactly understood is an ``error``."""

import re
import time

import requests

from ordermon import config
from ordermon.providers import base

_PLACEHOLDER_PIN = re.compile(r"^\s*-?\s*$")
_DURUM = {
    "2": base.Outcome.COMPLETED,
    "1": base.Outcome.PROCESSING,
    "3": base.Outcome.FAILED,
}


def parse(status: int, body: bytes, *, truncated: bool = False) -> base.Answer:
    """What a znet reply means. Pure; never raises."""
    if truncated:
        return base.Answer(base.Outcome.ERROR, message="reply too large; cut off unread")
    if status != 200:
        return base.Answer(base.Outcome.ERROR, message=f"HTTP {status}")
    try:
        text = body.replace(b"\x00", b"").decode("utf-8").strip()
    except UnicodeDecodeError:
        return base.Answer(base.Outcome.ERROR, message="reply is not valid UTF-8")
    if not text:
        return base.Answer(
            base.Outcome.ERROR,
            message="empty reply: unknown dealer code, API disabled, or this host's IP "
            "address is not on the provider's whitelist",
        )
    fields = text.split("|", 3)
    if fields[0] != "OK":
        if fields[0].strip().isdigit() and len(fields) > 1:
            return base.Answer(
                base.Outcome.ERROR, message=f"request refused: {text[:200]}".rstrip()
            )
        return base.Answer(base.Outcome.ERROR, message="unrecognised reply")
    if len(fields) < 4:
        return base.Answer(base.Outcome.ERROR, message="reply has fewer than four fields")
    durum, pin, description = fields[1].strip(), fields[2], fields[3].strip()
    outcome = _DURUM.get(durum)
    if outcome is None:
        return base.Answer(base.Outcome.ERROR, message=f"unknown status {durum[:20]!r}")
    message = description or None
    if outcome is not base.Outcome.COMPLETED:
        return base.Answer(outcome, message=message)
    if _PLACEHOLDER_PIN.match(pin):
        return base.Answer(outcome, pin=None, message=message)
    pin = pin.strip()
    if len(pin) > base.PIN_MAX_LENGTH:
        return base.Answer(
            base.Outcome.ERROR,
            message=f"PIN of {len(pin)} characters does not fit (max {base.PIN_MAX_LENGTH})",
        )
    return base.Answer(outcome, pin=pin, message=message)


class Znet:
    """A znet provider: ``kod`` and ``sifre`` travel as query parameters, so every URL and
    every error is redacted before anyone sees it."""

    def __init__(self, provider: config.ProviderConfig) -> None:
        self.config = provider
        self.redact = base.Redactor(provider.secrets)
        self.session = requests.Session()
        # No proxy or netrc look-ups on every call (measured: ~2x the requests per second);
        # an operator behind a proxy sets it explicitly.
        self.session.trust_env = False
        self.url = provider.base_url + provider.path

    def check(self, reference: str) -> base.Check:
        params = {
            "kod": self.config.kod or "",
            "sifre": self.config.sifre or "",
            "tahsilat_api_islem_id": reference,
        }
        started = time.monotonic()
        try:
            reply = base.fetch(
                self.session,
                self.url,
                params=params,
                timeout=self.config.timeout,
                max_bytes=self.config.max_reply_bytes,
            )
        except base.TransportError as exc:
            return base.Check(
                base.Answer(base.Outcome.ERROR, message=self.redact(str(exc))),
                latency_ms=_elapsed_ms(started),
            )
        answer = parse(reply.status, reply.body, truncated=reply.truncated)
        if answer.message:
            answer = base.Answer(answer.outcome, answer.pin, self.redact(answer.message))
        return base.Check(
            answer,
            latency_ms=_elapsed_ms(started),
            http_status=reply.status,
            excerpt=base.excerpt(reply.body, self.redact),
            retry_after=reply.retry_after,
        )

    def close(self) -> None:
        self.session.close()


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
