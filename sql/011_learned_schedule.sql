-- The learned schedule (schedule.mode: learned): one cached summary per provider of how long
-- it takes to give its final answer, recomputed by a sweep with work at most every
-- schedule.refresh_every (under an advisory lock, so concurrent sweeps do not all recompute),
-- never scanned from history on every sweep. The summary is a quantile table: quantiles[k]
-- is the time in seconds after "sentAt" by which a share k/100 of orders were answered, for
-- k up to covered * 100; the rest answered later than anything seen (or never: expired).
CREATE TABLE ordermon_schedule_models (
    provider_id varchar(255) PRIMARY KEY,
    computed_at timestamptz NOT NULL,
    samples     integer NOT NULL,
    covered     float8 NOT NULL,
    quantiles   float8[] NOT NULL,
    p50         float8,
    p90         float8
);

-- The refresh reads a provider's latest finished orders (at most window_orders of them);
-- 009's ordermon_enrolments_finished serves periods over every provider, this one a provider.
CREATE INDEX ordermon_enrolments_finished_by_provider ON ordermon_enrolments (provider_id, finished_at)
    WHERE state IN ('done', 'held', 'expired');

-- Why the next check is when it is (the schedule's own words), for `ordermon show`.
ALTER TABLE ordermon_enrolments ADD COLUMN next_check_why text;
