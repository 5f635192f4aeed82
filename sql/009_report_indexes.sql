-- `ordermon report` reads a period of history through these, not by scanning every row ever
-- written (benchmarks/RESULTS.md, scenario 8). Built in the migration's transaction like
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

-- The checks of each enrolment, counted in one ordered pass (an index-only scan) between the
-- period's lowest and highest enrolment id. It costs every check one more index entry (the
-- attempts had three: the key, by order, by time); repeated keys are deduplicated, about 15
-- bytes per attempt. It also serves the attempts' foreign key (ON DELETE CASCADE).
CREATE INDEX ordermon_attempts_enrolment ON ordermon_attempts (enrolment_id, order_id);
