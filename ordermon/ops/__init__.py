"""What operators look at and do: status, show, requeue, check, providers, metrics, pings."""
