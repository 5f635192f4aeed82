"""Health pings with healthchecks.io's conventions: ``{url}/start`` when a sweep begins,
``{url}/{exit code}`` when it ends, with a one-line summary as the body. A ping never fails a
sweep and never costs it more than its timeout."""

import errno
import logging
import socket
import ssl
from urllib.parse import urlsplit

log = logging.getLogger("ordermon.pings")


def ping(url: str | None, suffix: str, body: str, timeout: float) -> bool:
    """POST to ``url/suffix``; False when it did not work, with a warning saying why and to
    which host (never the URL's path, query or user info)."""
    if not url:
        return False
    import http.client  # only a configured ping pays for the HTTP client
    import urllib.error
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
            if 200 <= code < 300:
                return True
            why = f"HTTP {code}"
    except urllib.error.HTTPError as exc:
        why = f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        why = reason(exc.reason, timeout)
    except (OSError, ValueError) as exc:
        why = reason(exc, timeout)
    except http.client.HTTPException:  # a bad status line or headers: urllib passes it on
        why = "the reply is not HTTP"
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


def reason(exc: object, timeout: float) -> str:
    """Why a ping failed, in a few words from the error's kind alone (its text may quote the
    URL)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, socket.gaierror):
        return "host not found (DNS)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate not trusted"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"error {exc.errno}")
    if isinstance(exc, ValueError):
        return "the URL is not usable"
    return type(exc).__name__
