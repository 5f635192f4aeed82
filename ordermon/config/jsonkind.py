"""The `json` kind's own keys: a request and its reply described entirely in the config."""

import dataclasses
from typing import Any

from ordermon.config import validate

OUTCOME_WORDS = ("completed", "failed", "processing")


@dataclasses.dataclass(frozen=True)
class JsonSpec:
    """The `json` kind: request and reply described entirely in the config."""

    method: str
    url: str = dataclasses.field(repr=False)
    headers: tuple[tuple[str, str], ...] = dataclasses.field(repr=False)
    status_path: str
    pin_path: str | None
    message_path: str | None
    statuses: tuple[tuple[str, str], ...]


def spec(
    doc: dict[str, Any], key: str, read: validate.Reader, problems: validate.Problems
) -> JsonSpec | None:
    """The `json` kind's own keys; None when its url cannot be used."""
    check = problems.check
    url = check(lambda: read.string(doc.get("url"), f"{key}.url"), None)
    if url is not None and "{reference}" not in url:
        problems.add(f"{key}.url: must contain {{reference}} where the id goes")
    headers_doc: dict[str, Any] = check(
        lambda: validate.mapping(doc.get("headers", {}), f"{key}.headers"), {}
    )

    def header(name: Any, value: Any) -> str:
        return check(lambda: read.string(value, f"{key}.headers.{validate.cut(name)}"), "")

    def outcome(word: Any, value: Any) -> str:
        where = f"{key}.statuses.{validate.cut(word)}"
        return check(lambda: validate.choice(value, where, OUTCOME_WORDS), "")

    headers = tuple((str(name), header(name, value)) for name, value in headers_doc.items())
    statuses_doc: dict[str, Any] | None = check(
        lambda: validate.mapping(doc.get("statuses"), f"{key}.statuses"), None
    )
    if statuses_doc == {}:
        problems.add(f"{key}.statuses: map at least one status word to an outcome")
    statuses = tuple(
        (str(word), outcome(word, value)) for word, value in (statuses_doc or {}).items()
    )
    spec = JsonSpec(
        method=check(
            lambda: validate.choice(doc.get("method", "GET"), f"{key}.method", ("GET", "POST")),
            "GET",
        ),
        url=url or "",
        headers=headers,
        status_path=check(lambda: read.string(doc.get("status_path"), f"{key}.status_path"), ""),
        pin_path=check(lambda: read.optional_string(doc.get("pin_path"), f"{key}.pin_path"), None),
        message_path=check(
            lambda: read.optional_string(doc.get("message_path"), f"{key}.message_path"), None
        ),
        statuses=statuses,
    )
    return spec if url is not None and "{reference}" in url else None
