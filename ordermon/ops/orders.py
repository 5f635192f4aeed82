"""Which order an operator means: its id (a UUID) or its number (``"orderNo"``), with the
tenant when several tenants use that number. Every command that takes an order goes through
`parse` (before any config or database is touched) and `resolve`."""

import re
import uuid

from ordermon import db, errors
from ordermon.config import validate
from ordermon.sweep import shop

# "orderNo" is a PostgreSQL integer.
MAX_ORDER_NO = 2**31 - 1
_DIGITS = re.compile(r"[0-9]+")
# A UUID as PostgreSQL prints it (any case): uuid.UUID also takes braces, "urn:uuid:", no
# hyphens (32 digits would be read as a UUID, not refused as a number) and non-ASCII digits.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

Given = uuid.UUID | int


def parse(value: str, what: str = "ORDER") -> Given:
    """An order id (a UUID) or an order number in "orderNo"'s range; anything else is a
    usage error echoing the value cut and escaped."""
    if _UUID.fullmatch(value):
        return uuid.UUID(value)
    if not _DIGITS.fullmatch(value):
        raise errors.UsageError(
            f"{what}: {validate.quoted(value)} is not an order id (a UUID) or an order number"
        )
    if len(value.lstrip("0")) > len(str(MAX_ORDER_NO)) or int(value) > MAX_ORDER_NO:
        raise errors.UsageError(
            f'{what}: {validate.cut(value)} is out of range: an order number ("orderNo") is '
            f"at most {MAX_ORDER_NO}"
        )
    return int(value)


def parse_tenant(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    if not _UUID.fullmatch(value):
        raise errors.UsageError(
            f"--tenant: {validate.quoted(value)} is not a tenant id (a UUID, product_orders."
            '"tenantId")'
        )
    return uuid.UUID(value)


def resolve(conn: db.Connection, given: Given, tenant_id: uuid.UUID | None) -> str:
    """The order's id. A number must name exactly one order (in ``tenant_id`` when given);
    an unknown or ambiguous one is a usage error that lists what it matched. A UUID is
    returned as given (the command says if no such order exists)."""
    if isinstance(given, uuid.UUID):
        return str(given)
    rows = shop.orders_numbered(conn, given, tenant_id)
    where = f" in tenant {tenant_id}" if tenant_id is not None else ""
    if not rows:
        raise errors.UsageError(f'no order is numbered {given}{where} (product_orders."orderNo")')
    if len(rows) == 1:
        return str(rows[0]["id"])
    more = ", and more" if len(rows) > shop.NUMBERED_SHOWN else ""
    rows = rows[: shop.NUMBERED_SHOWN]
    tenants = {row["tenant_id"] for row in rows}
    if len(tenants) == 1:
        [only] = tenants
        ids = ", ".join(str(row["id"]) for row in rows)
        raise errors.UsageError(
            f"order number {given} is used by several orders "
            f"{f'of tenant {only}' if only else 'without a tenant'}: {ids}{more}; give the "
            "order's id (a UUID) instead"
        )
    listed = ", ".join(f"{_tenant(row['tenant_id'])} (order {row['id']})" for row in rows)
    # An order without a tenant cannot be picked with --tenant: its id can.
    untenanted = " (or the order's id)" if None in tenants else ""
    raise errors.UsageError(
        f"order number {given} is used in several tenants: {listed}{more}; say which with "
        f"--tenant TENANT_ID{untenanted}"
    )


def _tenant(tenant_id: uuid.UUID | None) -> str:
    return f"tenant {tenant_id}" if tenant_id is not None else "no tenant"
