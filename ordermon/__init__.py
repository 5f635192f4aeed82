"""ordermon: watches orders sent to external providers and records their fate."""

__version__ = "0.1.0"
