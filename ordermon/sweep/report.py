"""What a sweep takes and gives: its options, its clock, the progress it reports and the
report it returns. Below both `sweep` and `sweeper`, so neither imports the other for them."""

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ordermon.events import outbox
from ordermon.sweep import store

if TYPE_CHECKING:
    from ordermon.providers import base

Clock = Callable[[], dt.datetime]
# Told each order's result: its check, or None for an order superseded before it was asked.
OnResult = Callable[[store.Claim, "base.Check | None", str], None]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Options:
    limit: int | None = None
    provider_names: tuple[str, ...] = ()


class Progress(Protocol):
    """Told how much work a sweep found and how it advances (a progress bar on a terminal)."""

    def start(self, total: int) -> None: ...

    def advance(self, done: int) -> None: ...


@dataclasses.dataclass
class Report:
    run_id: int
    counts: dict[str, int]
    stopped_by: str | None
    seconds: float
    problems: list[str] = dataclasses.field(default_factory=list)
    pruned: int = 0
    # Webhook deliveries after the provider work.
    delivery: dict[str, int] = dataclasses.field(
        default_factory=lambda: outbox.DeliveryReport().as_dict()
    )

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
            "stopped_by": self.stopped_by,
            **self.counts,
            "pruned": self.pruned,
            "webhooks": self.delivery,
            "problems": self.problems,
        }
