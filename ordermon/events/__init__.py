"""Order events: the outbox the trigger writes, and its delivery to webhooks."""
