-- The event trigger's settings from ordermon's own table, not from session settings.
--
-- sql/005_events.sql read the NOTIFY channel and include_pin with current_setting(), set by
-- each sweep once per connection (set_config(..., false)). Behind a transaction pooler
-- (PgBouncer's pool_mode = transaction, a managed database's pooler) a session setting
-- belongs to whichever server connection ran it: another client's transaction inherited the
-- channel, and ordermon's own transactions ran on server connections without it (no NOTIFY,
-- silently). A transaction-local set_config(..., true) in every writing transaction would
-- work too, but every statement that moves an enrolment would have to remember it (a single
-- autocommit UPDATE would need a transaction of its own), and a setting another client left
-- in the server session would still be read whenever one was forgotten. A row is read the
-- same by every transaction on every connection: nothing to forget, nothing to inherit.
--
-- The row is the config of the latest ordermon command that changes orders (a sweep, a
-- `check`); it writes the row only when it differs, so concurrent sweeps take no lock on it.
-- Who else moves an enrolment (a DBA's hand-written UPDATE) now gets the same events and the
-- same NOTIFY as a sweep; before, such a writer's NOTIFY depended on its session's settings.
-- The shop's own edits of product_orders fire nothing here: the trigger is on ordermon's
-- enrolments, and the sweep that notices an edited order writes its event (superseded).
CREATE TABLE ordermon_settings (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),  -- one row at most
    notify_channel text NOT NULL DEFAULT '',
    include_pin    boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION ordermon_enrolment_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel     text := coalesce((SELECT notify_channel FROM ordermon_settings), '');
    include_pin boolean := coalesce((SELECT s.include_pin FROM ordermon_settings s), false);
    notices     text[];
BEGIN
    -- Planned at each call (EXECUTE), not once per session: a plan cached from a first call
    -- of one row per transition table joins them by a nested loop, which for a statement
    -- that moves 20,000 enrolments is 400 million comparisons (seen: 58 s for one INSERT of
    -- attempts, whose checks trigger updates their enrolments). The statement's own row
    -- counts give a hash join.
    EXECUTE $q$
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
               || CASE WHEN $1 THEN jsonb_build_object('pin', pin) ELSE '{}' END
        FROM described
        RETURNING id, type, seq
    )
    SELECT array_agg(jsonb_build_object('id', id, 'type', type)::text ORDER BY seq)
    FROM made
    $q$ INTO notices USING include_pin;
    IF channel <> '' AND notices IS NOT NULL THEN
        -- Delivered to listeners only if this transaction commits; small enough for NOTIFY.
        PERFORM pg_notify(channel, notice) FROM unnest(notices) AS notice;
    END IF;
    RETURN NULL;
END
$$;
