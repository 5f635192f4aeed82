"""Development aids: the provider simulator, the embedded PostgreSQL, the demo."""
