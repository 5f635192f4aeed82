-- The outbox. Every final transition of a watched order (an enrolment leaving 'waiting' for
-- done, held, expired or superseded) writes its event in the same transaction, by trigger, so
-- no code path can change an order without its event, and no event outlives a rollback.

CREATE TABLE ordermon_events (
    id         uuid PRIMARY KEY,
    seq        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type       text NOT NULL,
    order_id   uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE INDEX ordermon_events_order ON ordermon_events (order_id, seq);

-- One row per event and webhook that wants it.
CREATE TABLE ordermon_deliveries (
    event_id        uuid NOT NULL REFERENCES ordermon_events (id) ON DELETE CASCADE,
    webhook         text NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (event_id, webhook)
);
CREATE INDEX ordermon_deliveries_due ON ordermon_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- How far each webhook has been given events (a new webhook starts from its first sweep).
CREATE TABLE ordermon_webhook_cursors (
    webhook  text PRIMARY KEY,
    last_seq bigint NOT NULL
);

-- One statement-level trigger: the events of a whole batch are written by one INSERT.
CREATE FUNCTION ordermon_enrolment_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel     text := coalesce(current_setting('ordermon.notify_channel', true), '');
    include_pin boolean := coalesce(current_setting('ordermon.include_pin', true), '') = 'on';
    notices     text[];
BEGIN
    WITH finished AS (
        SELECT n.id, n.order_id, n.provider_id, n.state, n.last_message
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.state = 'waiting' AND n.state <> 'waiting'
    ), described AS (
        SELECT gen_random_uuid() AS event_id, f.*, p.status, p."externalStatus" AS external,
               p."tenantId" AS tenant, p."pinCode" AS pin, r.amount AS refunded,
               CASE f.state
                   WHEN 'done' THEN CASE WHEN p.status = 'approved' THEN 'order.completed'
                                         ELSE 'order.failed' END
                   WHEN 'held' THEN 'order.failed'
                   WHEN 'expired' THEN 'order.expired'
                   ELSE 'order.superseded' END AS event_type
        FROM finished f
        LEFT JOIN product_orders p ON p.id = f.order_id
        LEFT JOIN ordermon_refunds r ON r.order_id = f.order_id AND r.enrolment_id = f.id
    ), made AS (
        INSERT INTO ordermon_events (id, type, order_id, payload)
        SELECT event_id, event_type, order_id,
               jsonb_build_object(
                   'id', event_id,
                   'type', event_type,
                   'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'order_id', order_id,
                   'tenant', tenant,
                   'provider', provider_id,
                   'status', status,
                   'externalStatus', external,
                   'pin_present', pin IS NOT NULL,
                   'refund_amount', refunded,
                   'message', last_message)
               || CASE WHEN include_pin THEN jsonb_build_object('pin', pin) ELSE '{}' END
        FROM described
        RETURNING id, type, seq
    )
    SELECT array_agg(jsonb_build_object('id', id, 'type', type)::text ORDER BY seq)
    INTO notices FROM made;
    IF channel <> '' AND notices IS NOT NULL THEN
        -- Delivered to listeners only if this transaction commits; small enough for NOTIFY.
        PERFORM pg_notify(channel, notice) FROM unnest(notices) AS notice;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ordermon_enrolment_events
    AFTER UPDATE ON ordermon_enrolments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION ordermon_enrolment_events();

-- Status reads the last hour and day by time; the per-provider index costs every insert.
DROP INDEX ordermon_attempts_provider;
