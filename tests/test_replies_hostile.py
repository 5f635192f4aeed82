"""Hostile provider replies (issue 10: #2, #5, #9, #16, #18): what a reply means and what of it
may be stored. Real HTTP through the simulator's ``raw:`` step, real sweeps on PostgreSQL, a
real ``ordermon sweep -v`` process, and Hypothesis properties on the pure parsers."""

import json
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermon import config, db, providers
from ordermon.config import providers as provider_config
from ordermon.dev import simulator
from ordermon.providers import barakat, base, generic, http, internal, text, znet
from ordermon.sweep import sweep
from tests.conftest import (
    KOD,
    SIFRE,
    TOKEN,
    FakeClock,
    add_order,
    add_user,
    config_document,
    order_row,
    provider_doc,
    run_cli,
)

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


@pytest.fixture
def hostile() -> Any:
    with simulator.Simulator(token=TOKEN, kod=KOD, sifre=SIFRE) as server:
        yield server


def _cfg(db_url: str, sim: simulator.Simulator, *docs: dict[str, Any]) -> config.Config:
    return config.parse(config_document(db_url, sim.url, providers=list(docs)), {})


def _sweep(conn: db.Connection, cfg: config.Config) -> sweep.Report:
    return sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())


def _barakat_body(*items: dict[str, Any]) -> str:
    return json.dumps({"status": "OK", "data": list(items)})


def _serve(sim: simulator.Simulator, references: list[str], body: str) -> None:
    """Every request naming any of ``references`` gets ``body`` as sent (HTTP 200)."""
    for reference in references:
        sim.script(reference, "raw:" + body)


def _is_storable(value: str) -> bool:
    """No control character (NUL included), no lone surrogate, valid UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in value)


def _stored_text(conn: db.Connection) -> list[tuple[str, str]]:
    """Every row ordermon may have written, as PostgreSQL prints it."""
    tables = ("product_orders", "ordermon_attempts", "ordermon_enrolments", "ordermon_events")
    found: list[tuple[str, str]] = []
    for table in tables:
        rows = conn.execute(f"SELECT t::text AS row FROM {table} t".encode()).fetchall()
        found.extend((table, row["row"]) for row in rows)
    return found


def _assert_nothing_stored_is_dirty(conn: db.Connection, *forbidden: str) -> None:
    for table, row in _stored_text(conn):
        assert _is_storable(row), row
        if table != "ordermon_attempts":  # an excerpt of JSON may show JSON's own escapes
            # jsonb prints a control character as \u00XX: none may have got there either
            assert "\\u00" not in row.lower(), row
        for needle in forbidden:
            assert needle not in row, (needle, row)


def _attempts(conn: db.Connection, order: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT outcome, message, excerpt FROM ordermon_attempts WHERE order_id = %(id)s"
        " ORDER BY id",
        {"id": order},
    ).fetchall()


def _refunds(conn: db.Connection) -> int:
    row = conn.execute("SELECT count(*) AS n FROM wallet_transactions").fetchone()
    assert row is not None
    return int(row["n"])


# --- #2: text PostgreSQL cannot store never reaches a write ----------------------------------


def test_unstorable_text_in_a_batch_stays_with_its_order(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str
) -> None:
    """A batch item with a JSON-escaped NUL in its PIN is that order's error, one with a lone
    surrogate or control characters in its note is recorded with the note cleaned, and the
    rest of the batch is recorded."""
    user = add_user(conn)
    refs = ["1001", "1002", "1003", "1004", "1005"]
    orders = {ref: add_order(conn, user, ref, provider_id="barakat-id") for ref in refs}
    body = _barakat_body(
        {"order_id": "1001", "status": "accept", "pin": "AB\x00CD"},
        {"order_id": "1002", "status": "accept", "pin": "P-1002", "note": "\ud800 ok"},
        {"order_id": "1003", "status": "accept", "pin": "P-1003"},
        {"order_id": "1004", "status": "reject", "note": "no\x00pe \x1b[31m\x7f\x9b"},
        {"order_id": "1005", "status": "wait", "note": "x" * 5000},
    )
    assert "\\u0000" in body and "\\ud800" in body  # escaped, as a provider would send them
    _serve(hostile, refs, body)
    _sweep(conn, _cfg(db_url, hostile, provider_doc("barakat", hostile.url)))
    rows = {ref: order_row(conn, order) for ref, order in orders.items()}
    assert (rows["1001"]["status"], rows["1001"]["pinCode"]) == ("pending", None)
    assert [a["outcome"] for a in _attempts(conn, orders["1001"])] == ["error"]
    assert "PIN is not printable text" in _attempts(conn, orders["1001"])[0]["message"]
    assert (rows["1002"]["status"], rows["1002"]["pinCode"]) == ("approved", "P-1002")
    assert rows["1002"]["providerMessage"] == "\ufffd ok"
    assert (rows["1003"]["status"], rows["1003"]["pinCode"]) == ("approved", "P-1003")
    assert rows["1004"]["status"] == "rejected"
    assert rows["1004"]["providerMessage"] == "no\\x00pe \\x1b[31m\\x7f\\x9b"
    assert rows["1005"]["externalStatus"] == "processing"
    assert len(rows["1005"]["providerMessage"]) <= text.MESSAGE_CHARS
    assert _refunds(conn) == 1
    _assert_nothing_stored_is_dirty(conn)


def test_storable_cleans_every_kind_of_bad_text() -> None:
    """Control characters are escaped visibly, lone surrogates replaced, the result cut."""
    assert text.storable("a\x00b\x1bc\x07d\x7fe\x85f\ud800g") == (
        "a\\x00b\\x1bc\\x07d\\x7fe\\x85f\ufffdg"
    )
    assert text.storable("line\nnext\ttab\r") == "line\\nnext\\ttab\\r"
    assert text.storable("İşlem bekleniyor") == "İşlem bekleniyor"
    cut = text.storable("\x00" * 400, limit=10)
    assert len(cut) <= 10 and _is_storable(cut) and not cut.endswith("\\")
    assert len(text.storable("y" * 5000)) <= text.MESSAGE_CHARS
    assert text.storable(text.storable("a\x00\ud800" * 50)) == text.storable("a\x00\ud800" * 50)


# --- #16 and "a reply is parsed as sent" ------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["O\x00K|\x003| |x", "O\x00K|\x033| |x", "OK|3\x00| |x", "OK|\x1b3| |x", "OK\x00|3| |x"]
)
def test_znet_control_bytes_in_the_status_line_are_an_error(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str, body: str
) -> None:
    """A znet status line with NUL or control bytes is an error, never a refusal."""
    user = add_user(conn)
    order = add_order(conn, user, "5150", provider_id="znet-id")
    _serve(hostile, ["5150"], body)
    _sweep(conn, _cfg(db_url, hostile, provider_doc("znet", hostile.url)))
    row = order_row(conn, order)
    assert (row["status"], row["externalStatus"]) == ("pending", "sent")
    assert [a["outcome"] for a in _attempts(conn, order)] == ["error"]
    assert _refunds(conn) == 0
    _assert_nothing_stored_is_dirty(conn)


def test_nul_in_a_znet_pin_is_an_error_not_a_cleaned_pin() -> None:
    """A NUL inside a znet PIN is not deleted: the PIN is not printable text."""
    answer = znet.parse(200, b"OK|2|AB\x0012|ok")
    assert answer.outcome is base.Outcome.ERROR and answer.pin is None


def test_escaped_nul_in_a_status_word_is_an_unknown_word() -> None:
    """A JSON-escaped NUL in a status word makes it a word no rule knows: an error."""
    body = _barakat_body({"order_id": "1", "status": "acc\x00ept"}).encode()
    answer = barakat.parse(200, body, ["1"])["1"]
    assert answer.outcome is base.Outcome.ERROR
    assert answer.message is not None and _is_storable(answer.message)
    raw = b'{"status": "OK", "data": [{"order_id": "1", "status": "acc\x00ept"}]}'
    assert barakat.parse(200, raw, ["1"])["1"].outcome is base.Outcome.ERROR


WRONG_TYPES = [(1234.5, "float"), (["P"], "list"), ({"a": 1}, "dict"), (True, "bool")]


@pytest.mark.parametrize(("pin", "type_name"), WRONG_TYPES)
def test_a_pin_of_the_wrong_json_type_is_an_error(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str, pin: Any, type_name: str
) -> None:
    """A PIN sent as a float, list, object or boolean is an error, never an approval without
    its PIN."""
    user = add_user(conn)
    order = add_order(conn, user, "7001", provider_id="barakat-id")
    _serve(hostile, ["7001"], _barakat_body({"order_id": "7001", "status": "accept", "pin": pin}))
    _sweep(conn, _cfg(db_url, hostile, provider_doc("barakat", hostile.url)))
    row = order_row(conn, order)
    assert (row["status"], row["pinCode"]) == ("pending", None)
    [attempt] = _attempts(conn, order)
    assert attempt["outcome"] == "error"
    assert f"PIN field has the wrong type ({type_name})" in attempt["message"]


@pytest.mark.parametrize(("pin", "type_name"), WRONG_TYPES)
def test_every_kind_refuses_a_pin_of_the_wrong_type(pin: Any, type_name: str) -> None:
    """barakat (any PIN key, even before a good one), internal and the json kind alike."""
    for item in (
        {"order_id": "1", "status": "accept", "pin": pin},
        {"order_id": "1", "status": "accept", "code": pin},
        {"order_id": "1", "status": "accept", "pin": "", "serial": pin},
        {"order_id": "1", "status": "accept", "pin": pin, "code": "GOOD"},
    ):
        answer = barakat.parse(200, _barakat_body(item).encode(), ["1"])["1"]
        assert answer.outcome is base.Outcome.ERROR, item
        assert answer.message == f"PIN field has the wrong type ({type_name})"
    body = json.dumps([{"externalOrderId": "1", "status": "approved", "pin": pin}]).encode()
    assert internal.parse(200, body, ["1"])["1"].outcome is base.Outcome.ERROR
    body = json.dumps({"result": {"state": "DELIVERED", "code": pin}}).encode()
    assert generic.parse(SPEC, 200, body).outcome is base.Outcome.ERROR


def test_numeric_and_placeholder_pins_still_work() -> None:
    """A JSON integer is a PIN; a blank or ``-`` is no PIN; a refusal's PIN field is ignored."""
    one = _barakat_body({"order_id": "1", "status": "accept", "pin": 555})
    assert barakat.parse(200, one.encode(), ["1"])["1"].pin == "555"
    for placeholder in ("", " ", "-", " - ", None):
        item = {"order_id": "1", "status": "accept", "pin": placeholder}
        answer = barakat.parse(200, _barakat_body(item).encode(), ["1"])["1"]
        assert (answer.outcome, answer.pin) == (base.Outcome.COMPLETED, None)
    refused = _barakat_body({"order_id": "1", "status": "reject", "pin": ["x"]})
    assert barakat.parse(200, refused.encode(), ["1"])["1"].outcome is base.Outcome.FAILED


@pytest.mark.parametrize("kind", ["barakat", "znet", "internal", "json"])
def test_a_pin_with_terminal_escapes_is_an_error_and_never_stored(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str, kind: str
) -> None:
    """A PIN holding ESC]0;pwned BEL ESC[2J is an error in every kind and is stored nowhere."""
    user = add_user(conn)
    order = add_order(conn, user, "8001", provider_id=f"{kind}-id")
    reference = str(order) if kind == "internal" else "8001"
    body = {
        "barakat": _barakat_body({"order_id": "8001", "status": "accept", "pin": ESCAPES}),
        "znet": f"OK|2|{ESCAPES}|Teslim edildi",
        "internal": json.dumps(
            [{"externalOrderId": reference, "status": "approved", "pin": ESCAPES}]
        ),
        "json": json.dumps({"result": {"state": "DELIVERED", "code": ESCAPES}}),
    }[kind]
    _serve(hostile, [reference], body)
    _sweep(conn, _cfg(db_url, hostile, provider_doc(kind, hostile.url)))
    row = order_row(conn, order)
    assert (row["status"], row["pinCode"]) == ("pending", None)
    [attempt] = _attempts(conn, order)
    assert attempt["outcome"] == "error" and "PIN is not printable text" in attempt["message"]
    _assert_nothing_stored_is_dirty(conn, "pwned")


# --- #5: two items about one order ------------------------------------------------------------


@pytest.mark.parametrize(
    "first, second",
    [
        ({"status": "reject"}, {"status": "accept", "pin": "P-9"}),
        ({"status": "accept", "pin": "P-9"}, {"status": "reject"}),
        ({"status": "accept", "pin": "P-9"}, {"status": "accept", "pin": "P-10"}),
        ({"status": "accept", "pin": "P-9"}, {"status": "mystery"}),
    ],
)
def test_a_batch_naming_one_order_twice_differently_is_an_error(
    conn: db.Connection,
    hostile: simulator.Simulator,
    db_url: str,
    first: dict[str, Any],
    second: dict[str, Any],
) -> None:
    """Two items about one order that disagree are an error for that order: no refund, no
    approval; an order named twice alike is recorded once."""
    user = add_user(conn)
    twice, alike = (add_order(conn, user, ref, provider_id="barakat-id") for ref in ("91", "92"))
    body = _barakat_body(
        {"order_id": "91", **first},
        {"order_id": "92", "status": "accept", "pin": "SAME"},
        {"order_id": "91", **second},
        {"order_id": "92", "status": "accept", "pin": "SAME"},
    )
    _serve(hostile, ["91", "92"], body)
    _sweep(conn, _cfg(db_url, hostile, provider_doc("barakat", hostile.url)))
    assert order_row(conn, twice)["status"] == "pending"
    [attempt] = _attempts(conn, twice)
    assert attempt["outcome"] == "error"
    assert attempt["message"] == "the reply names this order twice, with different answers"
    assert (order_row(conn, alike)["status"], order_row(conn, alike)["pinCode"]) == (
        "approved",
        "SAME",
    )
    assert _refunds(conn) == 0


def test_internal_and_uuid_calls_refuse_contradictory_duplicates() -> None:
    """The internal kind (by externalOrderId) and barakat's uuid=1 calls apply the same rule."""
    ref = str(uuid.uuid4())
    body = json.dumps(
        [
            {"externalOrderId": ref, "status": "rejected"},
            {"externalOrderId": ref, "status": "approved", "pin": "X"},
        ]
    ).encode()
    assert internal.parse(200, body, [ref])[ref].outcome is base.Outcome.ERROR
    body = _barakat_body(
        {"order_id": "P1", "order_uuid": ref, "status": "reject"},
        {"order_id": "P2", "order_uuid": ref, "status": "accept"},
    ).encode()
    assert barakat.parse(200, body, [ref])[ref].outcome is base.Outcome.ERROR


# --- #9: excerpts ----------------------------------------------------------------------------


def test_a_batch_replys_excerpt_holds_no_pin(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str
) -> None:
    """The excerpt kept with each attempt of a batch holds none of the batch's PINs, whatever
    key or escaping carried them."""
    user = add_user(conn)
    refs = ["61", "62", "63", "64"]
    orders = [add_order(conn, user, ref, provider_id="barakat-id") for ref in refs]
    pins = ["PIN-A-6161", "PIN-B-6262", "PIN-C-6363", "PIN-D/6464"]
    body = (
        _barakat_body(
            {"order_id": "61", "status": "accept", "pin": pins[0], "note": f"your pin {pins[0]}"},
            {"order_id": "62", "status": "accept", "code": pins[1]},
            {"order_id": "63", "status": "accept", "voucher": pins[2]},
            {
                "order_id": "64",
                "status": "wait",
                "serial": pins[3],
                "nested": {"pin": "PIN-E-6565"},
            },
        )
        .replace("PIN-C", "\\u0050IN-C")
        .replace("PIN-D/", "PIN-D\\/")
    )
    _serve(hostile, refs, body)
    _sweep(conn, _cfg(db_url, hostile, provider_doc("barakat", hostile.url)))
    assert order_row(conn, orders[0])["pinCode"] == pins[0]
    assert order_row(conn, orders[0])["providerMessage"] == "your pin ***"
    excerpts = [a["excerpt"] for order in orders for a in _attempts(conn, order)]
    assert len(excerpts) == 4 and all('"***"' in e for e in excerpts)
    for excerpt in excerpts:
        assert len(excerpt.encode()) <= base.EXCERPT_BYTES
        for pin in [*pins, "PIN-E-6565", "6161", "6262", "6363", "6464", "6565"]:
            assert pin not in excerpt, excerpt


@pytest.mark.parametrize("kind", ["znet", "internal", "json"])
def test_single_and_other_kinds_excerpts_hold_no_pin(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str, kind: str
) -> None:
    """znet's third field, internal's pin and the json kind's pin_path are redacted too."""
    user = add_user(conn)
    order = add_order(conn, user, "4242", provider_id=f"{kind}-id")
    reference = str(order) if kind == "internal" else "4242"
    pin = "SECRETPIN-4242"
    body = {
        "znet": f"OK|2|{pin}|Teslim edildi {pin}",
        "internal": json.dumps([{"externalOrderId": reference, "status": "approved", "pin": pin}]),
        "json": json.dumps({"result": {"state": "DELIVERED", "code": pin}}),
    }[kind]
    _serve(hostile, [reference], body)
    _sweep(conn, _cfg(db_url, hostile, provider_doc(kind, hostile.url)))
    assert order_row(conn, order)["pinCode"] == pin
    [attempt] = _attempts(conn, order)
    assert "SECRETPIN" not in attempt["excerpt"] and "***" in attempt["excerpt"]
    assert "SECRETPIN" not in (attempt["message"] or "")


def test_a_secret_straddling_the_cut_or_json_escaped_is_redacted(
    conn: db.Connection, hostile: simulator.Simulator, db_url: str
) -> None:
    """Secrets are redacted before the excerpt is cut, and in their JSON-escaped forms."""
    user = add_user(conn)
    token = "ab/cd-t0ken-99"
    straddling = "x" * (base.EXCERPT_BYTES - 6) + token + " <html>"
    escaped = (
        _barakat_body(
            {"order_id": "32", "status": "wait", "note": "a"},
            {"order_id": "99", "status": "wait", "echo": "ab/cd-t0ken-99"},
        )
        .replace("ab/cd", "ab\\/cd")
        .replace("t0ken", "\\u0074\\u0030ken")
    )
    assert token not in escaped
    cases = {"31": straddling, "32": escaped}
    orders = {}
    with simulator.Simulator(token=token) as sim:
        for ref, body in cases.items():
            orders[ref] = add_order(conn, user, ref, provider_id="barakat-id")
            sim.script(ref, "raw:" + body)
        doc = provider_doc("barakat", sim.url, token=token, batch_size=1)
        _sweep(conn, _cfg(db_url, sim, doc))
    for order in orders.values():
        [attempt] = _attempts(conn, order)
        excerpt = attempt["excerpt"]
        assert "ab/cd" not in excerpt and "ab\\/cd" not in excerpt and "t0ken" not in excerpt
        assert "\\u0074" not in excerpt, excerpt
    assert orders and "***" in _attempts(conn, orders["32"])[0]["excerpt"]


def test_a_message_is_redacted_before_it_is_cut() -> None:
    """A token straddling the stored message's bound is redacted, not cut in half."""
    adapter = _adapter("barakat")
    for lead in (text.MESSAGE_CHARS - 5, text.MESSAGE_CHARS - len(TOKEN) // 2):
        body = _barakat_body({"order_id": "1", "status": "wait", "note": "n" * lead + TOKEN})
        answer = barakat.parse(200, body.encode(), ["1"])["1"]
        shown = adapter.shown(answer).message or ""
        assert len(shown) <= text.MESSAGE_CHARS and TOKEN[:5] not in shown


def test_redactor_knows_every_escaped_form() -> None:
    """Plain, URL-encoded (any case), JSON-escaped (``\\/``, ``\\uXXXX``) and mixed forms."""
    redact = base.Redactor(["ab/cd ef", "tok-1"])
    for form in (
        "ab/cd ef",
        "ab%2Fcd%20ef",
        "ab%2fcd+ef",
        "ab\\/cd ef",
        "\\u0061b\\/cd\\u0020ef",
        "\\u0061\\u0062\\u002F\\u0063\\u0064\\u0020\\u0065\\u0066",
        "tok\\u002d1",
        "%74ok-1",
    ):
        assert redact(f"<{form}>") == "<***>", form
    assert redact("nothing here") == "nothing here"


# --- #18: a provider's own words in logs -------------------------------------------------------


def test_an_echoed_token_never_reaches_stderr_or_attempts(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """An unknown status word that echoes the token is logged redacted, escaped and cut by
    ``ordermon sweep -v``, and stored redacted."""
    user = add_user(conn)
    refs = [str(5000 + n) for n in range(5)]
    orders = [add_order(conn, user, ref, provider_id="barakat-id") for ref in refs]
    word = f"bad token {TOKEN} \x1b[2J" + "z" * 300
    with simulator.Simulator(token=TOKEN) as sim:
        _serve(sim, refs, _barakat_body(*({"order_id": r, "status": word} for r in refs)))
        path = tmp_path / "ordermon.yaml"
        document = config_document(db_url, sim.url, providers=[provider_doc("barakat", sim.url)])
        path.write_text(yaml.safe_dump(document))
        result = run_cli("sweep", "-v", "--config", str(path))
    assert result.returncode == 0, result.stderr
    output = result.stderr + result.stdout
    assert TOKEN not in output and "\x1b" not in output
    logged = [line for line in result.stderr.splitlines() if "unknown status word" in line]
    assert logged and all("***" in line and len(line) < 300 for line in logged), logged
    for order in orders:
        [attempt] = _attempts(conn, order)
        assert attempt["outcome"] == "error"
        assert attempt["message"].startswith("unknown status 'bad token ***")
        assert len(attempt["message"]) <= text.MESSAGE_CHARS
        assert TOKEN not in attempt["message"] and TOKEN not in attempt["excerpt"]
    _assert_nothing_stored_is_dirty(conn, TOKEN)


# --- properties of the pure parsers ------------------------------------------------------------

SPEC = provider_config.JsonSpec(
    method="GET",
    url="http://x/{reference}",
    headers=(),
    status_path="result.state",
    pin_path="result.code",
    message_path="result.info",
    statuses=(("DELIVERED", "completed"), ("CANCELLED", "failed"), ("WAIT", "processing")),
)
REFS = ["1001", "1002"]
HOSTILE_CHARS = st.sampled_from(["\x00", "\x1b", "\x07", "\x7f", "\x85", "\ud800", "\udfff", "|"])
hostile_text = st.text(alphabet=HOSTILE_CHARS | st.characters(), max_size=30)
WORDS = st.sampled_from(["accept", "reject", "wait", "approved", "rejected", "DELIVERED"])
hostile_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text | st.just("-")
)
hostile_values = st.recursive(
    hostile_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6
)


def _item(id_key: str) -> Any:
    keys = ("pin", "code", "voucher", "serial", "note", "message", "replay_api")
    return st.fixed_dictionaries(
        {id_key: st.sampled_from(REFS), "status": WORDS | hostile_values},
        optional=dict.fromkeys(keys, hostile_values),
    )


def _hostile_bodies() -> Any:
    documents = (
        st.fixed_dictionaries({"status": st.just("OK"), "data": st.lists(_item("order_id"))})
        | st.lists(_item("externalOrderId"), max_size=4)
        | st.fixed_dictionaries(
            {
                "result": st.fixed_dictionaries(
                    {"state": WORDS | hostile_values, "code": hostile_values}
                )
            }
        )
    )
    as_json = documents.map(lambda d: json.dumps(d).encode())
    znet_fields = st.lists(hostile_text, min_size=3, max_size=5)
    znet_lines = st.tuples(st.sampled_from(["1", "2", "3"]), znet_fields).map(
        lambda t: "|".join(["OK", t[0], *t[1]]).encode("utf-8", "surrogatepass")
    )
    return st.binary(max_size=300) | as_json | znet_lines


def _assert_sane(answer: base.Answer) -> None:
    if answer.outcome is base.Outcome.COMPLETED and answer.pin is not None:
        assert isinstance(answer.pin, str) and answer.pin.isprintable()
        assert 0 < len(answer.pin) <= base.PIN_MAX_LENGTH
    else:
        assert answer.pin is None
    if answer.message is not None:
        assert _is_storable(answer.message) and len(answer.message) <= text.PARSED_CHARS


@settings(max_examples=300)
@given(_hostile_bodies(), st.sampled_from([200, 200, 404, 500]))
def test_every_kind_reads_any_reply_into_sane_answers(body: bytes, status: int) -> None:
    """For any bytes, no kind's parser raises; a PIN is printable and fits; every message is
    storable."""
    answers = [
        *barakat.parse(status, body, REFS).values(),
        *internal.parse(status, body, REFS).values(),
        generic.parse(SPEC, status, body),
        znet.parse(status, body),
    ]
    for answer in answers:
        _assert_sane(answer)


@given(_hostile_bodies(), st.sampled_from(["barakat", "internal", "json", "znet"]))
def test_any_excerpt_is_storable_bounded_and_secret_free(body: bytes, kind: str) -> None:
    """Whatever the reply, its excerpt is storable, within EXCERPT_BYTES, and holds no
    secret."""
    secret = SIFRE if kind == "znet" else TOKEN
    adapter = _adapter(kind)
    middle = len(body) // 2
    for candidate in (body, body[:middle] + secret.encode() + body[middle:]):
        excerpt = adapter.excerpt(candidate)
        assert _is_storable(excerpt) and len(excerpt.encode()) <= base.EXCERPT_BYTES
        assert secret not in excerpt


_ADAPTERS: dict[str, http.HttpAdapter] = {}


def _adapter(kind: str) -> http.HttpAdapter:
    """One adapter per kind for the whole module (it is only asked for excerpts)."""
    if kind not in _ADAPTERS:
        url = "http://127.0.0.1:9"
        document = config_document("postgresql://unused", url, providers=[provider_doc(kind, url)])
        built = providers.build(config.parse(document, {}).providers[0])
        assert isinstance(built, http.HttpAdapter)
        _ADAPTERS[kind] = built
    return _ADAPTERS[kind]
