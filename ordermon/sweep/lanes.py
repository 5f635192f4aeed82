"""A lane: one provider's share of a sweep. Its own workers (its concurrency), its rate limit,
its hold after a 429 or a pause, and how many claimed orders it may have outstanding.

The workers are daemon threads of the lane's own, not a ThreadPoolExecutor: at the time limit
the calls in flight are abandoned, and an interpreter exit must not join them (an executor's
threads are joined at exit, however long their calls still take)."""

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Sequence

from ordermon import config, providers
from ordermon.config import providers as provider_config
from ordermon.providers import base
from ordermon.sweep import pacing, store

log = logging.getLogger("ordermon.lanes")
Result = dict[str, base.Check]
Claims = dict[str, list[store.Claim]]


def longest_hold(provider: provider_config.ProviderConfig) -> dt.timedelta:
    """The longest any wait (Retry-After, a pause) holds a provider or pushes its orders back:
    pause.max_cooldown, and never past give_up_after. A fresh request follows."""
    return min(provider.pause.max_cooldown, provider.policy.give_up_after)


def asks_to_wait(check: base.Check) -> bool:
    """A reply that asks for a pause: a 429, or any provider trouble with a Retry-After
    (a 503 says it that way)."""
    if not check.sent or check.trouble is None:
        return False
    asked = check.retry_after is not None and check.retry_after > 0  # NaN is not asking
    return check.trouble is base.Trouble.THROTTLED or (
        check.trouble is base.Trouble.TRANSPORT and asked
    )


def asked_wait(check: base.Check) -> float:
    """How long (seconds) a reply asking for a pause wants: its Retry-After, else a minute.
    Unbounded here: every hold caps it at `longest_hold`."""
    seconds = check.retry_after
    return seconds if seconds is not None and seconds > 0 else 60.0


@dataclasses.dataclass(frozen=True)
class _Job:
    group: list[str]
    lease_end: float  # monotonic seconds: when the claims of this group stop being ours
    future: "concurrent.futures.Future[Result]"


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
        self.timezone = cfg.timezone  # how its messages show times
        self.concurrency = cfg.concurrency_of(provider)
        self._adapter: base.Provider | None = None
        self.limiter = pacing.RateLimiter(provider.rate_limit)
        self.longest_hold = longest_hold(provider)
        self.hold = pacing.Hold(self.longest_hold.total_seconds())
        self._slots = slots
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._closed = threading.Event()
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
        # Whether a transport failure is the order's or the provider's: the provider answered
        # another order well in this run, and has not failed many times in a row since.
        self.answered_well = False
        self.failures_in_row = 0
        self.deferred: list[tuple[Claims, Result]] = []  # failures waiting for that verdict
        # Unexpected exceptions (type names) and answers that could not be recorded, for the
        # problem lines.
        self.internal_errors: list[str] = []
        self.unrecorded: list[tuple[str, bool]] = []

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
        self, references: Sequence[str], lease_end: float
    ) -> list[tuple[list[str], "concurrent.futures.Future[Result]"]]:
        """Queue the requests about ``references``, whose claims are ours until ``lease_end``
        (monotonic seconds)."""
        groups = self.adapter.plan(references)
        if not self._workers:
            for number in range(self.concurrency):
                worker = threading.Thread(
                    target=self._work, name=f"ordermon-{self.provider.name}-{number}", daemon=True
                )
                worker.start()
                self._workers.append(worker)
        submitted = []
        for group in groups:
            future: concurrent.futures.Future[Result] = concurrent.futures.Future()
            self._jobs.put(_Job(group, lease_end, future))
            submitted.append((group, future))
        return submitted

    def _work(self) -> None:
        """A worker thread: one request at a time until the lane closes."""
        while True:
            job = self._jobs.get()
            if job is None or self._closed.is_set():
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(self._send(job.group, job.lease_end))
            except Exception as exc:  # the sweep turns it into this group's failure
                job.future.set_exception(exc)

    def _send(self, group: list[str], lease_end: float) -> Result:
        """Runs in a worker thread. The rate limit counts at send time."""
        started = time.monotonic()
        try:
            held = self._held(group)
            if held is not None:
                return held
            with self._slots:
                self.limiter.wait()
                checks = (
                    self._held(group)
                    or self._too_late(group, lease_end)
                    or self.adapter.check(group)
                )
            self._slow_down_if_asked(checks)
            return checks
        except Exception as exc:  # adapters never raise; a bug must not lose the sweep
            log.debug("provider adapter failed", exc_info=True)
            self.internal_errors.append(type(exc).__name__)
            failure = base.Check(
                base.error(f"internal error ({type(exc).__name__})"),
                latency_ms=int((time.monotonic() - started) * 1000),
            )
            return dict.fromkeys(group, failure)

    def _too_late(self, group: list[str], lease_end: float) -> Result | None:
        """No request may outlive its claim's lease (another sweep may ask then), nor start
        once the sweep is stopping: such a group comes back unsent."""
        if self._closed.is_set():
            reason = "not sent: the sweep stopped"
        elif lease_end - time.monotonic() < self.provider.timeout:
            reason = "not sent: too little of the claim's lease left for the provider's timeout"
        else:
            return None
        return dict.fromkeys(group, base.Check(base.error(reason), latency_ms=0, sent=False))

    def _slow_down_if_asked(self, checks: Result) -> None:
        """A 429 (or a 503 with Retry-After) holds this provider at once, in the worker that
        saw it, before the other workers send more."""
        throttled = next((c for c in checks.values() if asks_to_wait(c)), None)
        if throttled is not None:
            self.hold.hold(asked_wait(throttled), "the provider asked to slow down")
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
        """Stop the workers. With ``wait`` (nothing left in flight) join them and close the
        HTTP session; without, abandon the calls still running (the process may exit under
        them: they are daemon threads)."""
        self._closed.set()
        for _ in self._workers:
            self._jobs.put(None)
        if not wait:
            return
        for worker in self._workers:
            worker.join()
        if self._adapter is not None:
            self._adapter.close()


Finished = tuple[Lane, Claims, Result]  # a request's claims and the checks it came back with
