"""Enrolment reads only the orders written since its last look (sql/006_enrol_marks.sql), and
still misses nothing: not an order whose transaction commits after a look began, not the old
orders of a provider new to the config, not a change of reference rule."""

import datetime as dt
import time
from collections.abc import Sequence

import pytest

from ordermon import db
from ordermon.sweep import enrolment, store
from tests.conftest import PROVIDER_ID, add_order, add_user, enrolment_of

OTHER_ID = "9f0c1d2e-0000-4000-8000-0000000000bb"


def _rules(provider_id: str, rule: str = "provider_referans") -> store.ProviderRules:
    return store.ProviderRules(provider_id, rule, dt.timedelta(0), dt.timedelta(hours=24), None)


def _enrol(conn: db.Connection, rules: Sequence[store.ProviderRules]) -> int:
    with conn.transaction():
        enrolment.enrol_lock(conn)
        return enrolment.enrol(conn, rules)


def test_an_order_committed_after_a_look_began_is_enrolled_by_the_next(
    conn: db.Connection, db_url: str
) -> None:
    user = add_user(conn)
    add_order(conn, user, "first")
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    with db.connect(db_url) as shop:  # a shop transaction, open across the next look
        late = add_order(shop, user, "late")
        add_order(conn, user, "meanwhile")  # a later transaction, committed first
        assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1  # "late" is not visible yet
        shop.commit()
    # Its transaction began before that look's horizon was taken: it is looked at again.
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    assert enrolment_of(conn, late)["reference"] == "late"


def test_old_orders_are_not_compared_again_until_the_next_full_look(conn: db.Connection) -> None:
    """The marks do save the work; the periodic full look is the safety net."""
    order = add_order(conn, add_user(conn), "r1")
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    # Lost behind ordermon's back. The marks skip the row only once the cluster's oldest open
    # transaction is younger than it: any other session's open transaction (a test beside
    # this one, on a shared server) holds the horizon back, and the row is rightly compared
    # again. Wait for the horizon (bounded), then the mark must skip it.
    for _ in range(60):
        conn.execute("DELETE FROM ordermon_enrolments")
        if _enrol(conn, [_rules(PROVIDER_ID)]) == 0:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the marks never skipped the row: an open transaction held the horizon")
    conn.execute(
        "UPDATE ordermon_enrol_marks SET full_scan_at = full_scan_at - %(every)s",
        {"every": enrolment.FULL_LOOK_EVERY + dt.timedelta(seconds=1)},
    )
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    assert enrolment_of(conn, order)["state"] == "waiting"


def test_a_resent_order_is_looked_at_again(conn: db.Connection) -> None:
    order = add_order(conn, add_user(conn), "old-ref")
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    conn.execute(
        "UPDATE product_orders SET provider_referans = 'new-ref', \"sentAt\" = now() "
        "WHERE id = %(id)s",
        {"id": order},
    )
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    assert enrolment_of(conn, order)["reference"] == "new-ref"


def test_a_provider_new_to_the_config_gets_its_old_orders_enrolled(conn: db.Connection) -> None:
    user = add_user(conn)
    add_order(conn, user, "a1")
    old = add_order(conn, user, "b1", provider_id=OTHER_ID)
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 0
    assert _enrol(conn, [_rules(PROVIDER_ID), _rules(OTHER_ID)]) == 1
    assert enrolment_of(conn, old)["provider_id"] == OTHER_ID


def test_a_changed_reference_rule_looks_at_everything_again(conn: db.Connection) -> None:
    """A provider's kind changed in the config: orders it could not name before now have a
    reference, however old their rows are."""
    order = add_order(conn, add_user(conn), None, externalOrderId="ext-1")
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 0  # no provider_referans: nothing to ask
    assert _enrol(conn, [_rules(PROVIDER_ID, "provider_referans_or_external")]) == 1
    assert enrolment_of(conn, order)["reference"] == "ext-1"


def test_enrolling_one_order_leaves_the_marks_alone(conn: db.Connection) -> None:
    """`ordermon check` enrols the order it is asked about; that look says nothing of others."""
    user = add_user(conn)
    asked = add_order(conn, user, "asked")
    other = add_order(conn, user, "other")
    with conn.transaction():
        assert enrolment.enrol(conn, [_rules(PROVIDER_ID)], order_id=asked) == 1
    assert conn.execute("SELECT count(*) AS n FROM ordermon_enrol_marks").fetchone() == {"n": 0}
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    assert enrolment_of(conn, other)["reference"] == "other"


def test_a_mark_from_another_clusters_history_is_ignored(conn: db.Connection) -> None:
    """After a dump is restored into a new cluster, transaction ids start again lower than
    the marks say: such a mark is no mark, and everything is looked at."""
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 0
    conn.execute("UPDATE ordermon_enrol_marks SET horizon = '9000000000'::xid8")
    order = add_order(conn, add_user(conn), "after-restore")
    assert _enrol(conn, [_rules(PROVIDER_ID)]) == 1
    assert enrolment_of(conn, order)["reference"] == "after-restore"
