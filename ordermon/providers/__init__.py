"""Provider adapters: one module per provider kind, all speaking `base.Provider`."""

from ordermon import config
from ordermon.providers import base


def build(provider: config.ProviderConfig) -> base.Provider:
    """The adapter for a configured provider."""
    if provider.kind == "znet":
        from ordermon.providers import znet

        return znet.Znet(provider)
    raise ValueError(f"no adapter for provider kind {provider.kind!r}")


def reference_rule(kind: str) -> str:
    """How a kind finds the reference it is asked about (see ordermon_reference() in sql/)."""
    return {"znet": "provider_referans", "internal": "order_id"}.get(
        kind, "provider_referans_or_external"
    )
