"""Politeness within one sweep process: a rate limit counted at send time, and a hold that
stops sends to a provider that asked us to wait."""

import math
import threading
import time


class RateLimiter:
    """At most ``per_second`` sends per second, spaced evenly (no bursts), across threads.

    ``None`` means no limit. Limits hold per sweep process: several sweeps at once each get
    their own."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this send may go; reserve its slot."""
        if self.per_second is None:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.per_second
        if slot > now:
            time.sleep(slot - now)

    def slow_down(self) -> None:
        """Halve the rate (a provider said 429); an unlimited provider gets 1 per second."""
        with self._lock:
            self.per_second = 1.0 if self.per_second is None else max(self.per_second / 2, 0.1)


class Hold:
    """Until when (monotonic seconds) no request may be sent to a provider, and why. No hold
    lasts longer than ``longest`` seconds, whatever it is asked (a fresh request follows)."""

    def __init__(self, longest: float) -> None:
        self.longest = longest
        self._until = 0.0
        self.reason = ""
        self._lock = threading.Lock()

    def hold(self, seconds: float, reason: str) -> None:
        if math.isnan(seconds) or seconds <= 0:
            return
        with self._lock:
            until = time.monotonic() + min(seconds, self.longest)
            if until > self._until:
                self._until, self.reason = until, reason

    def remaining(self) -> float:
        return max(self._until - time.monotonic(), 0.0)
