"""One provider request from socket to `base.Reply`, bounded everywhere: one deadline for
the whole exchange (deadline.py: name lookup, connect, TLS, status line, headers, body), no
redirect ever followed, the body cut at ``max_bytes``, and every failure a
`base.TransportError` whose message holds no URL."""

import logging
import time
import urllib.parse
from collections.abc import Callable

import requests

from ordermon.providers import base, deadline

TARGET_LIMIT = 200  # characters of a redirect's target shown in its error


def session(pool_size: int, proxy: str | None) -> requests.Session:
    """A session whose connections keep the deadline of `fetch` (keep-alive, one pool)."""
    # urllib3 quotes the request URL in its warnings (a reply header it cannot parse), and
    # znet's kod and sifre ride in the query: none of its chatter may reach a log.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    client = requests.Session()
    # No proxy or netrc look-ups from the environment on every call (measured: about twice
    # the requests per second); a proxy is an explicit per-provider setting.
    client.trust_env = False
    if proxy:
        client.proxies = {"http": proxy, "https": proxy}
    pool = deadline.Adapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
    client.mount("http://", pool)
    client.mount("https://", pool)
    return client


def fetch(
    client: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> base.Reply:
    """One request, never redirected; the exchange ends ``timeout`` seconds after it starts,
    whatever the provider trickles. Raises only `base.TransportError`."""
    ends = time.monotonic() + timeout
    try:
        with deadline.within(ends):
            return _exchange(client, method, url, ends, max_bytes, params, headers, data)
    except Exception as exc:  # whatever the reply provoked, it is this request's failure
        reason = base.connection_reason(exc)
        if reason == "timed out" or time.monotonic() >= ends:
            reason = f"timed out after {timeout:g}s"
        raise base.TransportError(reason) from None


def _exchange(
    client: requests.Session,
    method: str,
    url: str,
    ends: float,
    max_bytes: int,
    params: dict[str, str] | None,
    headers: dict[str, str] | None,
    data: bytes | None = None,
) -> base.Reply:
    request = requests.Request(method, url, params=params, headers=headers, data=data)
    prepared = client.prepare_request(request)
    # Straight to the adapter: Session.send would resolve a redirect's target even when not
    # following it (and fail on one it cannot parse); a redirect is ours to describe.
    adapter = client.get_adapter(prepared.url or url)
    left = deadline.left(ends)
    with adapter.send(
        prepared, stream=True, timeout=(left, left), verify=True, proxies=client.proxies
    ) as response:
        body = bytearray()
        truncated = False
        while True:
            # read1 returns whatever has arrived (read() would wait for a full buffer); each
            # socket read below it waits at most until the deadline.
            chunk = response.raw.read1(16384, decode_content=True)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                truncated = True
                break
            deadline.left(ends)
        return base.Reply(
            response.status_code,
            bytes(body[:max_bytes]),
            base.parse_retry_after(response.headers.get("Retry-After")),
            truncated,
            location=response.headers.get("Location"),
        )


def redirect_message(
    status: int, location: str | None, origin: str, redact: Callable[[str], str]
) -> str:
    """The error for a 3xx: where it pointed (redacted), and what to do about it."""
    target = shown_target(location, origin, redact)
    return (
        f"redirected (HTTP {status}) to {target}; ordermon does not follow redirects: fix base_url"
    )


def shown_target(location: str | None, origin: str, redact: Callable[[str], str]) -> str:
    """A redirect target fit to show: resolved against the request's URL, without user
    information, query or fragment, secrets replaced, control and non-ASCII bytes
    percent-encoded, cut to `TARGET_LIMIT` characters."""
    if not location or not location.strip():
        return "an unreadable location"
    try:
        base_url = urllib.parse.urlsplit(origin)._replace(query="", fragment="").geturl()
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(base_url, redact(location.strip())))
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable location"
    if not host or parts.scheme not in ("http", "https"):
        return "an unreadable location"
    host = urllib.parse.quote(_wire(host), safe=".-:")
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    shown += urllib.parse.quote(_wire(parts.path), safe="/%:@!$&'()*+,;=~")
    shown = redact(shown) + ("?..." if parts.query else "")
    return shown if len(shown) <= TARGET_LIMIT else shown[:TARGET_LIMIT] + "..."


def _wire(text: str) -> bytes:
    """The bytes a header value arrived as (http.client decodes headers as Latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")
