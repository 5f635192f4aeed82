-- Pruning deletes old attempts in bounded chunks, oldest first.
CREATE INDEX ordermon_attempts_checked_at ON ordermon_attempts (checked_at);
