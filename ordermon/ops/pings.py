"""Health pings with healthchecks.io's conventions: ``{url}/start`` when a sweep begins,
``{url}/{exit code}`` when it ends, with a one-line summary as the body. A ping never fails a
sweep and never costs it more than its timeout."""

import logging
from urllib.parse import urlsplit

log = logging.getLogger("ordermon.pings")
# What is read of a receiver's reply: its status is all a ping needs.
_REPLY_BYTES = 4096


def ping(url: str | None, suffix: str, body: str, timeout: float) -> bool:
    """POST to ``url/suffix``; False when it did not work, with a warning saying why and to
    which host (never the URL's path, query or user info). The exchange is bounded as a
    whole by ``timeout`` and never redirected: the transport providers use."""
    if not url:
        return False
    from ordermon import db  # only a configured ping pays for the HTTP client
    from ordermon.providers import base, transport

    client = transport.session(1, None)
    try:
        # The body quotes errors, which db has redacted already; a ping leaves the machine,
        # so it is redacted once more on its way out, whatever produced it.
        reply = transport.fetch(
            client,
            "POST",
            f"{url}/{suffix}",
            timeout=timeout,
            max_bytes=_REPLY_BYTES,
            headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "ordermon"},
            data=db.redact(body).encode()[:10_000],
        )
    except base.TransportError as exc:
        why = str(exc)
    else:
        if 200 <= reply.status < 300:
            return True
        why = f"HTTP {reply.status}"
        if 300 <= reply.status < 400:
            why += " (a redirect, not followed: fix healthcheck.ping_url)"
    finally:
        client.close()
    # The URL is a credential of its own (anyone holding it can ping): only its origin shows.
    log.warning("health ping %s to %s failed: %s", suffix, shown_url(url), why)
    return False


def shown_url(url: str) -> str:
    """The ping URL as a log may show it: scheme, host and port; its user info, path and query
    (where healthchecks.io's UUID lives) replaced by ``…``."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "(the configured healthcheck.ping_url)"
    origin = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}"
    if port is not None:
        origin += f":{port}"
    return origin + ("/…" if parts.path.strip("/") or parts.query or parts.fragment else "")
