-- Webhook cursors by transaction, not by seq. A transaction takes its events' seq when it
-- writes them and may commit after a later seq is visible: a cursor at max(seq) skipped such
-- an event forever. Now each event carries the id of the transaction that wrote it, and a
-- cursor keeps the snapshot of its last look: the next look takes the events whose
-- transaction that snapshot did not see (from its xmin on, by index), and only those without
-- a delivery for the webhook yet.
ALTER TABLE ordermon_events ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX ordermon_events_xact ON ordermon_events (xact);

-- NULL until the first look after this migration, which goes by last_seq one last time;
-- last_seq stays up to date for a snapshot from another cluster's history (a restored dump).
ALTER TABLE ordermon_webhook_cursors ADD COLUMN seen pg_snapshot;
