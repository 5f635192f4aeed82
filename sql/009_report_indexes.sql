-- `ordermon report` reads a period of history through these, not by scanning every row ever
-- written (benchmarks/RESULTS.md, scenario 10). Built in the migration's transaction like
-- 004: that holds off the sweeps' writes to each table while its index is built (measured
-- 0.8 s for 1,000,000 attempts, 0.3 s for 400,000 enrolments on two shared cores).

-- The enrolments that reached a final state, by when. Partial: a waiting enrolment has no
-- entry, so the claims and releases of every check never write to it; an enrolment gets its
-- one entry at its final transition, an update that rewrites every index already (state is
-- in the other partial indexes' predicates, so it is never HOT).
CREATE INDEX ordermon_enrolments_finished ON ordermon_enrolments (finished_at)
    WHERE state IN ('done', 'held', 'expired');

-- Refunds by time: one entry per refund (a tenth of the orders or so).
CREATE INDEX ordermon_refunds_refunded_at ON ordermon_refunds (refunded_at);

-- The checks of each enrolment: its attempts (those of its own order, as the report has
-- always counted them), kept by the database on every insert, delete, update and truncate
-- of ordermon_attempts whoever writes them, so that the report reads one number per
-- finished enrolment instead of counting a month of attempts. Not `attempts`: that counts
-- only the checks that spent an attempt, and `ordermon requeue` resets it.
ALTER TABLE ordermon_enrolments ADD COLUMN checks integer NOT NULL DEFAULT 0;

UPDATE ordermon_enrolments e SET checks = c.n
FROM (SELECT enrolment_id, order_id, count(*) AS n FROM ordermon_attempts GROUP BY 1, 2) AS c
WHERE e.id = c.enrolment_id AND e.order_id = c.order_id;

-- Statement-level: one UPDATE per statement of attempts (a sweep's batch is one INSERT),
-- grouped by enrolment. The enrolments a sweep inserts attempts for are the ones it has
-- just released in the same transaction (already locked by it). A deleted enrolment's
-- cascaded attempts find no row to update.
CREATE FUNCTION ordermon_attempt_checks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE ordermon_enrolments SET checks = 0 WHERE checks <> 0;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE ordermon_enrolments e SET checks = e.checks - c.n
        FROM (SELECT enrolment_id, order_id, count(*) AS n FROM old_rows GROUP BY 1, 2) AS c
        WHERE e.id = c.enrolment_id AND e.order_id = c.order_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE ordermon_enrolments e SET checks = e.checks + c.n
        FROM (SELECT enrolment_id, order_id, count(*) AS n FROM new_rows GROUP BY 1, 2) AS c
        WHERE e.id = c.enrolment_id AND e.order_id = c.order_id;
    END IF;
    RETURN NULL;
END
$$;

-- One trigger per event: a trigger with transition tables may have one event only.
CREATE TRIGGER ordermon_attempt_checks_insert AFTER INSERT ON ordermon_attempts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ordermon_attempt_checks();
CREATE TRIGGER ordermon_attempt_checks_delete AFTER DELETE ON ordermon_attempts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ordermon_attempt_checks();
CREATE TRIGGER ordermon_attempt_checks_update AFTER UPDATE ON ordermon_attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ordermon_attempt_checks();
CREATE TRIGGER ordermon_attempt_checks_truncate AFTER TRUNCATE ON ordermon_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION ordermon_attempt_checks();
