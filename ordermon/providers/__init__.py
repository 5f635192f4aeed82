"""Provider adapters: one module per provider kind, all speaking `base.Provider`."""

from typing import TYPE_CHECKING

from ordermon.config import providers as provider_config

if TYPE_CHECKING:  # reference_rule() is asked by every run; an adapter only when work is due
    from ordermon.providers import base


def build(provider: provider_config.ProviderConfig, pool_size: int = 10) -> "base.Provider":
    """The adapter for a configured provider (imported on demand: an idle run needs none)."""
    if provider.kind == "znet":
        from ordermon.providers import znet

        return znet.Znet(provider, pool_size)
    if provider.kind in ("barakat", "apstore"):
        from ordermon.providers import barakat

        return barakat.Barakat(provider, pool_size)
    if provider.kind == "internal":
        from ordermon.providers import internal

        return internal.Internal(provider, pool_size)
    if provider.kind == "json":
        from ordermon.providers import generic

        return generic.Generic(provider, pool_size)
    raise ValueError(f"no adapter for provider kind {provider.kind!r}")


def reference_rule(kind: str) -> str:
    """How a kind finds the reference it is asked about (see ordermon_reference() in sql/)."""
    return {"znet": "provider_referans", "internal": "order_id"}.get(
        kind, "provider_referans_or_external"
    )
