"""The part of every adapter that is HTTP: one session per provider (keep-alive, a pool as
large as its concurrency), the request, request-level failures, redaction and timing. A kind
only says how to build its request and how to read its reply."""

import dataclasses
import logging
import time
from collections.abc import Sequence

from ordermon.config import human
from ordermon.config import providers as provider_config
from ordermon.providers import base, text, transport

log = logging.getLogger("ordermon.providers")


@dataclasses.dataclass(frozen=True)
class Request:
    url: str
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    method: str = "GET"


class HttpAdapter:
    """Subclasses implement ``request`` and ``parse`` (and may refine ``trouble``)."""

    #: JSON keys that hold a PIN anywhere in a reply, and dotted paths to one: masked in
    #: excerpts (a batch reply holds other customers' PINs)
    pin_keys: tuple[str, ...] = ()
    pin_paths: tuple[str, ...] = ()

    #: a reference that no real order has, for `ordermon providers --probe`
    probe_reference = "0"

    def __init__(self, provider: provider_config.ProviderConfig, pool_size: int = 10) -> None:
        self.config = provider
        self.redact = base.Redactor(provider.secrets)
        self.session = transport.session(pool_size, provider.proxy)

    def plan(self, references: Sequence[str]) -> list[list[str]]:
        size = self.config.batch_size
        return [list(references[i : i + size]) for i in range(0, len(references), size)]

    def request(self, references: Sequence[str]) -> Request:
        raise NotImplementedError

    def parse(
        self, status: int, body: bytes, truncated: bool, references: Sequence[str]
    ) -> dict[str, base.Answer]:
        raise NotImplementedError

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        return base.http_trouble(status)

    def check(self, references: Sequence[str]) -> dict[str, base.Check]:
        request = self.request(references)
        started = time.monotonic()
        try:
            reply = transport.fetch(
                self.session,
                request.method,
                request.url,
                params=request.params,
                headers=request.headers,
                timeout=self.config.timeout,
                max_bytes=self.config.max_reply_bytes,
            )
        except base.TransportError as exc:
            failed = base.Check(
                base.error(self.redact(str(exc))),
                latency_ms=_elapsed_ms(started),
                trouble=base.Trouble.TRANSPORT,
            )
            return dict.fromkeys(references, failed)
        latency = _elapsed_ms(started)
        reply = dataclasses.replace(reply, retry_after=self._retry_after(reply))
        if 300 <= reply.status < 400:
            message = transport.redirect_message(
                reply.status, reply.location, request.url, self.redact
            )
            answers = dict.fromkeys(references, base.error(message))
            trouble: base.Trouble | None = base.Trouble.TRANSPORT  # base_url is wrong
        else:
            answers = self.parse(reply.status, reply.body, reply.truncated, references)
            trouble = self._trouble(reply)
        excerpt = self.excerpt(reply.body)
        checks = {}
        unknown: dict[str, int] = {}
        for reference in references:
            answer = answers.get(reference) or base.error("no answer about this order")
            if answer.unknown_word is not None:
                unknown[answer.unknown_word] = unknown.get(answer.unknown_word, 0) + 1
            checks[reference] = base.Check(
                self.shown(answer),
                latency_ms=latency,
                http_status=reply.status,
                excerpt=excerpt,
                retry_after=reply.retry_after,
                trouble=trouble,
            )
        self._log_unknown_words(unknown)
        return checks

    def excerpt(self, body: bytes) -> str:
        """What of a reply is kept with each attempt: its PIN fields and secrets masked, then
        cut (a kind names its PIN fields with ``pin_keys`` and ``pin_paths``)."""
        return base.excerpt(body, self.redact, pin_keys=self.pin_keys, pin_paths=self.pin_paths)

    def shown(self, answer: base.Answer) -> base.Answer:
        """An answer as it may be stored and shown: its message redacted, then cut."""
        if not answer.message:
            return answer
        message = text.storable(self.redact(answer.message), text.MESSAGE_CHARS)
        return dataclasses.replace(answer, message=message)

    def _log_unknown_words(self, counts: dict[str, int]) -> None:
        """Each new word once per reply (a new word must be seen, not guessed): redacted,
        escaped and cut, since a provider may echo anything there, its token included."""
        for word, orders in counts.items():
            log.warning(
                "unknown status word '%s' from provider %s (%s)",
                text.storable(self.redact(word), text.LOG_CHARS),
                self.config.name,
                human.plural(orders, "order"),
            )

    def _retry_after(self, reply: base.Reply) -> float | None:
        """The provider's Retry-After, never longer than a pause may last without a probe."""
        if reply.retry_after is None:
            return None
        return min(reply.retry_after, self.config.pause.max_cooldown.total_seconds())

    def _trouble(self, reply: base.Reply) -> base.Trouble | None:
        """The kind's verdict, except that a 503 saying when to come back is a 429."""
        trouble = self.trouble(reply.status, reply.body)
        slow_down = reply.status == 503 and reply.retry_after is not None
        return (
            base.Trouble.THROTTLED if slow_down and trouble is base.Trouble.TRANSPORT else trouble
        )

    def probe(self) -> base.Check:
        return self.check([self.probe_reference])[self.probe_reference]

    def close(self) -> None:
        self.session.close()


def request_failure(status: int, truncated: bool) -> base.Answer | None:
    """The request-level errors every kind reads the same way."""
    if truncated:
        return base.error("reply too large; cut off unread")
    if status != 200:
        return base.error(f"HTTP {status}")
    return None


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
