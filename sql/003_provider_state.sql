-- The circuit breaker of each provider, shared by every sweep on every host.
CREATE TABLE ordermon_provider_state (
    provider_id     varchar(255) PRIMARY KEY,
    -- transport or credential failures in a row since the last good answer
    failures        integer NOT NULL DEFAULT 0,
    -- pauses in a row: the cool-down doubles with each
    pauses          integer NOT NULL DEFAULT 0,
    paused_until    timestamptz,
    -- why: transport | credentials | throttled
    reason          text,
    -- a sweep sending the one probe that decides whether the provider is back
    probe_until     timestamptz,
    last_trouble    text,
    last_trouble_at timestamptz,
    last_success_at timestamptz
);
