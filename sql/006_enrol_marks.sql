-- How far enrolment has looked, per provider. `horizon` is the oldest transaction still
-- running when the last look began: every row of product_orders written by an older
-- transaction was visible to that look, so the next one only compares rows written since
-- (by their xmin) with the enrolments, instead of every watched order on every sweep. A
-- transaction that was still open then (and commits later) is at or past the horizon, so its
-- rows are looked at again. Every few minutes, and for a provider new to the config or whose
-- reference rule changed, enrolment looks at everything anyway.
CREATE TABLE ordermon_enrol_marks (
    provider_id    varchar(255) PRIMARY KEY,
    reference_rule text NOT NULL,
    horizon        xid8 NOT NULL,
    full_scan_at   timestamptz NOT NULL
);
