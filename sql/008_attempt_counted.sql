-- Whether each attempt counted toward its order's schedule (spent one of the enrolment's
-- attempts), and the provider's trouble when it did not. A provider in trouble (no reply,
-- HTTP 5xx or 3xx, refused credentials, 429: transport, credentials, throttled) spends no
-- attempt; neither does an answer whose claim another run had taken over. Which checks
-- counted cannot be told afterwards from the other columns (znet's refusal of credentials is
-- an HTTP 200; a transport failure is the order's own when the provider answered others in
-- the same run), so the sweep records it. Rows written before this migration keep NULL:
-- `ordermon show` says it does not know whether they counted.
ALTER TABLE ordermon_attempts ADD COLUMN counted boolean;
ALTER TABLE ordermon_attempts ADD COLUMN trouble text;
