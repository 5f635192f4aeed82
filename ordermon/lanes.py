"""A lane: one provider's share of a sweep. Its own workers (its concurrency), its rate limit,
its hold after a 429 or a pause, and how many claimed orders it may have outstanding."""

import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence

from ordermon import config, pacing, provider_config, providers, store
from ordermon.providers import base

log = logging.getLogger("ordermon.lanes")
Result = dict[str, base.Check]


class Lane:
    def __init__(
        self,
        provider: provider_config.ProviderConfig,
        cfg: config.Config,
        rules: store.ProviderRules,
        slots: threading.BoundedSemaphore,
    ) -> None:
        self.provider = provider
        self.rules = rules
        self.concurrency = cfg.concurrency_of(provider)
        self._adapter: base.Provider | None = None
        self.limiter = pacing.RateLimiter(provider.rate_limit)
        self.hold = pacing.Hold()
        self._slots = slots
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Claim no more than this lane can finish within the lease, even if every request
        # takes its full timeout and waits for the rate limit.
        lease = cfg.sweep.lease.total_seconds()
        requests = self.concurrency * lease / provider.timeout
        if provider.rate_limit is not None:
            requests = min(requests, provider.rate_limit * lease * 0.8)
        self.capacity = max(int(requests) * provider.batch_size, 1)
        self.outstanding = 0  # claimed orders whose answers are not recorded yet
        self.open = True  # may claim more in this sweep
        self.probing = False  # sending the one probe that decides whether it is back
        self.healthy_reported = False
        self.credential_failures = 0
        self.credential_message = ""
        self.paused_note: str | None = None

    def wants(self, batch_size: int) -> int:
        """How many more orders to claim now: enough to keep every worker busy, no more."""
        if not self.open:
            return 0
        if self.probing:
            return 1 if self.outstanding == 0 else 0
        # Keep a second round queued behind the one in flight, so no worker waits for the
        # next claim.
        if self.outstanding >= 2 * self.concurrency * self.provider.batch_size:
            return 0
        return max(min(batch_size, self.capacity - self.outstanding), 0)

    @property
    def adapter(self) -> base.Provider:
        """Built at the first claim: an idle run imports no HTTP client at all."""
        if self._adapter is None:
            self._adapter = providers.build(self.provider, self.concurrency)
        return self._adapter

    def submit(
        self, references: Sequence[str]
    ) -> list[tuple[list[str], "concurrent.futures.Future[Result]"]]:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, f"ordermon-{self.provider.name}"
            )
        executor = self._executor
        return [
            (group, executor.submit(self._send, group)) for group in self.adapter.plan(references)
        ]

    def _send(self, group: list[str]) -> Result:
        """Runs in a worker thread. The rate limit counts at send time."""
        started = time.monotonic()
        try:
            held = self._held(group)
            if held is not None:
                return held
            with self._slots:
                self.limiter.wait()
                checks = self._held(group) or self.adapter.check(group)
            self._slow_down_if_asked(checks)
            return checks
        except Exception as exc:  # adapters never raise; a bug must not lose the sweep
            log.exception("provider adapter failed")
            failure = base.Check(
                base.error(f"internal error ({type(exc).__name__})"),
                latency_ms=int((time.monotonic() - started) * 1000),
            )
            return dict.fromkeys(group, failure)

    def _slow_down_if_asked(self, checks: Result) -> None:
        """A 429 holds this provider at once, in the worker that saw it, before the other
        workers send more."""
        throttled = next(
            (c for c in checks.values() if c.sent and c.trouble is base.Trouble.THROTTLED), None
        )
        if throttled is not None:
            self.hold.hold(throttled.retry_after or 60.0, "the provider asked to slow down")
            self.limiter.slow_down()

    def _held(self, group: list[str]) -> Result | None:
        wait = self.hold.remaining()
        if wait <= 0:
            return None
        deferred = base.Check(
            base.error(f"not sent: {self.hold.reason}"),
            latency_ms=0,
            retry_after=wait,
            trouble=base.Trouble.THROTTLED,
            sent=False,
        )
        return dict.fromkeys(group, deferred)

    def close(self, wait: bool) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
        if self._adapter is not None:
            self._adapter.close()
