"""Hypothesis fuzzing of every reply parser: any bytes and any JSON are read without an
exception, and an order is final only when an independent oracle, written from
shared/providers.md, reads the reply as a well-formed answer saying so."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ordermon import provider_config
from ordermon.providers import barakat, base, generic, internal

REFS = ["1001", "1002", "1003"]
COMPLETED_WORDS = ["accept", "success", "ok", "done", "complete", "completed"]
FAILED_WORDS = ["reject", "rejected", "failed", "fail", "cancelled", "canceled"]
OTHER_WORDS = ["wait", "pending", "queued", "approved", "sent", "mystery", "", "OK", "Accept"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
words = st.sampled_from(COMPLETED_WORDS + FAILED_WORDS + OTHER_WORDS)
scalars = st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=130) | words


def _item(id_key: str) -> Any:
    optional = {
        "status": scalars,
        "state": scalars,
        "orderStatus": scalars,
        "pin": scalars,
        "code": scalars,
        "note": scalars,
        "order_id": st.sampled_from([*REFS, None]),
    }
    optional.pop(id_key, None)
    return st.fixed_dictionaries(
        {id_key: st.sampled_from([*REFS, "9999", 1001, None])}, optional=optional
    )


barakat_docs = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["OK", "ERROR", None]),
        "data": st.lists(_item("order_id") | json_values, max_size=5) | json_values,
    }
)
internal_docs = st.lists(_item("externalOrderId") | json_values, max_size=5) | json_values


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return str(value).strip() or None


def _completed(
    item: dict[str, Any], keys: tuple[str, ...]
) -> tuple[base.Outcome, str | None] | None:
    """A completed answer with its PIN (placeholders are none), or None if the PIN won't fit."""
    pin = next((_text(item.get(k)) for k in keys if _text(item.get(k))), None)
    if pin is not None and pin.strip("- ") == "":
        pin = None
    if pin is not None and len(pin) > 120:
        return None
    return base.Outcome.COMPLETED, pin


def barakat_oracle(document: Any, ref: str) -> tuple[base.Outcome, str | None] | None:
    if not isinstance(document, dict) or document.get("status") != "OK":
        return None
    data = document.get("data")
    if not isinstance(data, list):
        return None
    item = next((i for i in data if isinstance(i, dict) and _text(i.get("order_id")) == ref), None)
    if item is None:
        return None
    raw = next(
        (item[k] for k in ("status", "state", "orderStatus") if k in item and item[k] is not None),
        None,
    )
    word = raw.strip().lower() if isinstance(raw, str) else None
    if word in FAILED_WORDS:
        return base.Outcome.FAILED, None
    if word in COMPLETED_WORDS:
        return _completed(item, ("pin", "code", "voucher", "serial"))
    return None


def internal_oracle(document: Any, ref: str) -> tuple[base.Outcome, str | None] | None:
    if not isinstance(document, list):
        return None
    item = next(
        (i for i in document if isinstance(i, dict) and _text(i.get("externalOrderId")) == ref),
        None,
    )
    if item is None:
        return None
    raw = item.get("status")
    word = raw.strip().lower() if isinstance(raw, str) else None
    if word == "rejected":
        return base.Outcome.FAILED, None
    if word == "approved":
        return _completed(item, ("pin",))
    return None


def _agree(answers: dict[str, base.Answer], oracle: Any, document: Any) -> None:
    assert set(answers) == set(REFS)
    for ref, answer in answers.items():
        expected = oracle(document, ref)
        if answer.outcome.final:
            assert expected == (answer.outcome, answer.pin), (ref, answer, document)
        else:
            assert expected is None, (ref, answer, document)


@given(st.binary(max_size=400))
def test_barakat_any_bytes(body: bytes) -> None:
    """Arbitrary bytes never raise and finalise only what the oracle finalises."""
    try:
        document: Any = json.loads(body.replace(b"\x00", b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    _agree(barakat.parse(200, body, REFS), barakat_oracle, document)


@given(barakat_docs)
def test_barakat_any_json(document: Any) -> None:
    """Reply-shaped and arbitrary JSON agree with the oracle."""
    body = json.dumps(document).encode()
    _agree(barakat.parse(200, body, REFS), barakat_oracle, document)


@given(internal_docs)
def test_internal_any_json(document: Any) -> None:
    """The internal parser agrees with its oracle on any JSON."""
    body = json.dumps(document).encode()
    _agree(internal.parse(200, body, REFS), internal_oracle, document)


@given(st.binary(max_size=300))
def test_internal_any_bytes(body: bytes) -> None:
    """Arbitrary bytes are never read as a final answer unless they are one."""
    try:
        document: Any = json.loads(body.replace(b"\x00", b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    _agree(internal.parse(200, body, REFS), internal_oracle, document)


SPEC = provider_config.JsonSpec(
    method="GET",
    url="http://x/{reference}",
    headers=(),
    status_path="result.state",
    pin_path="result.code",
    message_path="result.info",
    statuses=(("DELIVERED", "completed"), ("CANCELLED", "failed"), ("WAIT", "processing")),
)


@given(
    st.fixed_dictionaries(
        {
            "result": st.fixed_dictionaries(
                {},
                optional={
                    "state": scalars | st.sampled_from(["DELIVERED", "CANCELLED", "WAIT"]),
                    "code": scalars,
                    "info": scalars,
                },
            )
        }
    )
    | json_values
)
def test_generic_any_json(document: Any) -> None:
    """The json kind finalises exactly the mapped words at the configured path."""
    answer = generic.parse(SPEC, 200, json.dumps(document).encode())
    state = (
        document.get("result", {}).get("state")
        if isinstance(document, dict) and isinstance(document.get("result"), dict)
        else None
    )
    word = state.strip() if isinstance(state, str) else None
    if answer.outcome.final:
        assert (word, answer.outcome) in (
            ("DELIVERED", base.Outcome.COMPLETED),
            ("CANCELLED", base.Outcome.FAILED),
        )
    else:
        code = _text(document["result"].get("code")) if word == "DELIVERED" else None
        assert word not in ("DELIVERED", "CANCELLED") or (code is not None and len(code) > 120)


@given(st.binary(max_size=300), st.integers(100, 599))
def test_generic_any_bytes(body: bytes, status: int) -> None:
    """Any bytes with any HTTP status: never an exception, final only on HTTP 200."""
    answer = generic.parse(SPEC, status, body)
    assert not answer.outcome.final or status == 200


def test_lookup_paths() -> None:
    """Dotted paths walk objects and list indices; anything else is None."""
    document = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert generic.lookup(document, "a.b.1.c") == 2
    assert generic.lookup(document, "a.b.-1.c") == 2
    assert generic.lookup(document, "a.b.5.c") is None
    assert generic.lookup(document, "a.x.c") is None
    assert generic.lookup([1], "0") == 1
