"""How ordermon writes for a person: times in the configured zone, always in one format, and
counts with their noun in the right number. (JSON keeps ISO-8601 times with their offset:
`iso`.)"""

import datetime as dt
import functools
import zoneinfo


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def moment(when: dt.datetime | str, zone: str | None = None) -> str:
    """The one way a time is shown to a person: ``2026-12-02 12:24:18 +03:00``, in ``zone``
    (the config's ``timezone``). Without ``zone`` the time keeps its own offset: an ISO-8601
    string from ordermon's JSON is already in the configured zone."""
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when)
    if zone is not None:
        when = when.astimezone(_zone(zone))
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{when:%Y-%m-%d %H:%M:%S} {sign}{hours:02d}:{minutes:02d}"


def iso(when: dt.datetime, zone: str) -> str:
    """A time for JSON: ISO-8601 in the configured zone, with its offset, to the second."""
    return when.astimezone(_zone(zone)).isoformat(timespec="seconds")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 attempt``, ``2 attempts``, ``0 attempts``; ``nouns`` when the plural is not
    ``noun`` + "s" (``1 delivery``, ``3 deliveries``)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
