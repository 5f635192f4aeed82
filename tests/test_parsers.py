"""Hypothesis fuzzing of every reply parser: any bytes and any JSON are read without an
exception, and an order is final only when an independent oracle, written from
shared/providers.md, reads the reply as a well-formed answer saying so."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ordermon.config import providers as provider_config
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
    return str(value).strip(" \t\r\n") or None


def _word(raw: Any) -> str | None:
    """Spaces trimmed, ASCII case ignored, nothing else forgiven."""
    if not isinstance(raw, str):
        return None
    word = raw.strip(" ")
    return word.lower() if word.isascii() else word


Reading = tuple[base.Outcome, str | None]
ERROR: Reading = (base.Outcome.ERROR, None)


def _completed(item: dict[str, Any], keys: tuple[str, ...]) -> Reading:
    """A completed answer with its PIN: the first key holding anything but null or blank text
    (a placeholder is no PIN); a PIN of the wrong type, not printable or too long is an error."""
    given = [item[k] for k in keys if item.get(k) is not None]
    given = [v for v in given if not (isinstance(v, str) and not v.strip(" \t\r\n"))]
    if not given:
        return base.Outcome.COMPLETED, None
    value = given[0]
    if isinstance(value, bool) or not isinstance(value, int | str):
        return ERROR
    pin = str(value).strip(" \t\r\n")
    if pin in ("", "-"):
        return base.Outcome.COMPLETED, None
    if not pin.isprintable() or len(pin) > 120:
        return ERROR
    return base.Outcome.COMPLETED, pin


def _agreeing(readings: list[Reading]) -> Reading | None:
    """Several items about one order must agree; the final reading, or None."""
    if not readings or any(r != readings[0] for r in readings):
        return None
    return readings[0] if readings[0][0].final else None


def barakat_oracle(document: Any, ref: str) -> Reading | None:
    if not isinstance(document, dict) or document.get("status") != "OK":
        return None
    data = document.get("data")
    if not isinstance(data, list):
        return None
    readings: list[Reading] = []
    for item in data:
        if not isinstance(item, dict) or _text(item.get("order_id")) != ref:
            continue
        raw = next(
            (item[k] for k in ("status", "state", "orderStatus") if item.get(k) is not None),
            None,
        )
        word = _word(raw)
        if word in FAILED_WORDS:
            readings.append((base.Outcome.FAILED, None))
        elif word in COMPLETED_WORDS:
            readings.append(_completed(item, ("pin", "code", "voucher", "serial")))
        elif word in ("wait", "pending", "processing", "inprogress", "queued", "queue"):
            readings.append((base.Outcome.PROCESSING, None))
        else:
            readings.append(ERROR)
    return _agreeing(readings)


def internal_oracle(document: Any, ref: str) -> Reading | None:
    if not isinstance(document, list):
        return None
    readings: list[Reading] = []
    for item in document:
        if not isinstance(item, dict) or _text(item.get("externalOrderId")) != ref:
            continue
        word = _word(item.get("status"))
        if word == "rejected":
            readings.append((base.Outcome.FAILED, None))
        elif word == "approved":
            readings.append(_completed(item, ("pin",)))
        elif word in ("pending", "sent"):
            readings.append((base.Outcome.PROCESSING, None))
        else:
            readings.append(ERROR)
    return _agreeing(readings)


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
        document: Any = json.loads(body.decode("utf-8"))
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
        document: Any = json.loads(body.decode("utf-8"))
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
    word = state.strip(" ") if isinstance(state, str) else None
    if answer.outcome.final:
        assert (word, answer.outcome) in (
            ("DELIVERED", base.Outcome.COMPLETED),
            ("CANCELLED", base.Outcome.FAILED),
        )
    else:
        # a DELIVERED with a PIN that is no PIN: of the wrong type, not printable, too long
        reading = _completed(document["result"], ("code",)) if word == "DELIVERED" else None
        assert word != "CANCELLED" and (word != "DELIVERED" or reading == ERROR)
    if answer.outcome is base.Outcome.COMPLETED:
        assert (answer.outcome, answer.pin) == _completed(document["result"], ("code",))


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
