"""Health pings with healthchecks.io's conventions: ``{url}/start`` when a sweep begins,
``{url}/{exit code}`` when it ends, with a one-line summary as the body. A ping never fails a
sweep and never costs it more than its timeout."""

import logging

log = logging.getLogger("ordermon.pings")


def ping(url: str | None, suffix: str, body: str, timeout: float) -> bool:
    """POST to ``url/suffix``; False (and a warning without the URL) when it did not work."""
    if not url:
        return False
    import urllib.error  # only a configured ping pays for the HTTP client
    import urllib.request

    from ordermon import db

    # The body quotes errors, which db has redacted already; a ping leaves the machine, so it
    # is redacted once more on its way out, whatever produced it.
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked at config load
        f"{url}/{suffix}",
        data=db.redact(body).encode()[:10_000],
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "ordermon"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            code: int = response.status
            return 200 <= code < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # The URL is a credential of its own (anyone holding it can ping): never logged.
        log.warning("health ping %s failed (%s)", suffix, type(exc).__name__)
        return False
