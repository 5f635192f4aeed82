-- ordermon's own tables. Runs in one transaction together with its row in ordermon_migrations.

-- The reference a provider knows an order by, by the provider kind's rule; used both when
-- enrolling and in every compare-and-set, so the two can never disagree.
CREATE FUNCTION ordermon_reference(rule text, provider_referans text, external_order_id text, order_id uuid)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE rule
        WHEN 'provider_referans' THEN NULLIF(provider_referans, '')
        WHEN 'provider_referans_or_external' THEN COALESCE(NULLIF(provider_referans, ''), NULLIF(external_order_id, ''))
        WHEN 'order_id' THEN order_id::text
    END
$$;

-- One row per dispatch of an order that ordermon watches (order, provider, reference, "sentAt").
CREATE TABLE ordermon_enrolments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        uuid NOT NULL,
    provider_id     varchar(255) NOT NULL,
    reference       varchar(255) NOT NULL,
    sent_at         timestamptz NOT NULL,
    -- waiting: checks go on; done: a final answer was applied; held: the hold policy left it to
    -- a person; expired: ordermon gave up; superseded: decided or re-sent elsewhere
    state           text NOT NULL DEFAULT 'waiting'
                    CHECK (state IN ('waiting', 'done', 'held', 'expired', 'superseded')),
    attempts        integer NOT NULL DEFAULT 0,
    next_check_at   timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    -- set while a sweep holds the order; next_check_at is moved to the lease's end at claim,
    -- so an abandoned claim becomes due again by itself
    claim_token     uuid,
    claimed_until   timestamptz,
    last_checked_at timestamptz,
    last_outcome    text,
    last_message    text,
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT ordermon_enrolments_dispatch UNIQUE (order_id, provider_id, reference, sent_at)
);

-- At most one live enrolment per order.
CREATE UNIQUE INDEX ordermon_enrolments_one_waiting ON ordermon_enrolments (order_id)
    WHERE state = 'waiting';
-- The claim: due waiting orders, oldest first.
CREATE INDEX ordermon_enrolments_due ON ordermon_enrolments (next_check_at)
    WHERE state = 'waiting';

-- Every provider call (and every decision taken without one), for `show` and `status`.
CREATE TABLE ordermon_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enrolment_id  bigint NOT NULL REFERENCES ordermon_enrolments (id) ON DELETE CASCADE,
    order_id      uuid NOT NULL,
    provider_id   varchar(255) NOT NULL,
    run_id        bigint,
    checked_at    timestamptz NOT NULL,
    latency_ms    integer,
    http_status   integer,
    -- completed | failed | processing | error | superseded
    outcome       text NOT NULL,
    applied       text,
    message       text,
    excerpt       text
);
CREATE INDEX ordermon_attempts_order ON ordermon_attempts (order_id, checked_at);
CREATE INDEX ordermon_attempts_provider ON ordermon_attempts (provider_id, checked_at);

-- At most one refund per order, enforced by the primary key in the refund's own transaction.
CREATE TABLE ordermon_refunds (
    order_id              uuid PRIMARY KEY,
    user_id               uuid NOT NULL,
    amount                numeric(12, 2) NOT NULL,
    wallet_transaction_id uuid NOT NULL,
    enrolment_id          bigint,
    refunded_at           timestamptz NOT NULL
);

-- One row per `ordermon sweep` or `ordermon check`.
CREATE TABLE ordermon_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command     text NOT NULL,
    host        text,
    pid         integer,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    enrolled    integer NOT NULL DEFAULT 0,
    claimed     integer NOT NULL DEFAULT 0,
    completed   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    processing  integer NOT NULL DEFAULT 0,
    errors      integer NOT NULL DEFAULT 0,
    superseded  integer NOT NULL DEFAULT 0,
    expired     integer NOT NULL DEFAULT 0,
    stopped_by  text,
    exit_code   integer
);
CREATE INDEX ordermon_runs_started ON ordermon_runs (started_at);
