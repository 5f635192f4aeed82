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

CREATE FUNCTION ordermon_enrolment_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o            record;
    event_type   text;
    event_id     uuid := gen_random_uuid();
    refunded     numeric;
    body         jsonb;
    channel      text := current_setting('ordermon.notify_channel', true);
BEGIN
    SELECT status, "externalStatus", "tenantId", "pinCode" INTO o
    FROM product_orders WHERE id = NEW.order_id;
    event_type := CASE NEW.state
        WHEN 'done' THEN CASE WHEN o.status = 'approved' THEN 'order.completed'
                              ELSE 'order.failed' END
        WHEN 'held' THEN 'order.failed'
        WHEN 'expired' THEN 'order.expired'
        ELSE 'order.superseded' END;
    SELECT amount INTO refunded FROM ordermon_refunds
    WHERE order_id = NEW.order_id AND enrolment_id = NEW.id;
    body := jsonb_build_object(
        'id', event_id,
        'type', event_type,
        'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'order_id', NEW.order_id,
        'tenant', o."tenantId",
        'provider', NEW.provider_id,
        'status', o.status,
        'externalStatus', o."externalStatus",
        'pin_present', o."pinCode" IS NOT NULL,
        'refund_amount', refunded,
        'message', NEW.last_message);
    IF current_setting('ordermon.include_pin', true) = 'on' THEN
        body := body || jsonb_build_object('pin', o."pinCode");
    END IF;
    INSERT INTO ordermon_events (id, type, order_id, payload)
    VALUES (event_id, event_type, NEW.order_id, body);
    IF channel IS NOT NULL AND channel <> '' THEN
        -- Delivered to listeners only if this transaction commits; small enough for NOTIFY.
        PERFORM pg_notify(channel, jsonb_build_object('id', event_id, 'type', event_type)::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ordermon_enrolment_event
    AFTER UPDATE OF state ON ordermon_enrolments
    FOR EACH ROW WHEN (OLD.state = 'waiting' AND NEW.state <> 'waiting')
    EXECUTE FUNCTION ordermon_enrolment_event();
