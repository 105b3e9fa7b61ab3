"""Which failures a wait cannot outlast (no I/O): one rule for every bounded wait.

A readiness wait (``wait_until_ready``, the bench's wait for its target) polls
through errors that time can fix: a refused connection (the server is starting),
a 503 (the router has no worker yet), a timeout. Others will be the same at the
deadline: a host name that does not resolve, an invalid URL, a TLS certificate
that does not verify, an https URL pointing at a plain-http port, a 4xx such as
401/403 (credentials) or a 404 from something that is not an sglang router or
server. :func:`waiting_cannot_fix` says which, and why, from the exception alone;
:func:`wait_reason` is the short "why are we still waiting" text of the others.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import httpx

from .._errors import APIStatusError

__all__ = ["LAST", "last_reason", "wait_reason", "waiting_cannot_fix"]

#: how a wait's timeout message introduces the last probe's failure
LAST = "; last: "

#: getaddrinfo errors that mean "this name does not exist" (EAI_AGAIN, a temporary
#: resolver failure, and EAI_FAIL are left to the wait)
_NO_SUCH_NAME = frozenset(
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
        getattr(socket, "EAI_ADDRFAMILY", None),
        getattr(socket, "EAI_SERVICE", None),
    )
    if code is not None
)
#: the same, as resolvers word it (for errors re-raised without their cause)
_NO_SUCH_NAME_TEXT = (
    "Name or service not known",
    "nodename nor servname provided",
    "No address associated with hostname",
)
_TLS_TEXT = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "certificate verify failed")
#: 4xx statuses that may pass with time (timeout, too early, rate limited)
_TRANSIENT_4XX = frozenset({408, 425, 429})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def waiting_cannot_fix(exc: BaseException) -> str | None:
    """Why waiting longer cannot make ``exc`` go away, or None when it may.

    ``exc`` is what one readiness probe raised (an ``APIConnectionError`` with
    the transport's error as its cause, or an ``APIStatusError``). The reason is
    one short phrase, e.g. ``"the host name does not resolve"``.
    """
    if isinstance(exc, APIStatusError):
        code = exc.status_code
        if 400 <= code < 500 and code not in _TRANSIENT_4XX:
            what = {
                401: "the target asks for credentials (give an API key / --header)",
                403: "the target refuses these credentials",
                404: "not an sglang router or server at this URL (404)",
            }.get(code, f"the target rejects the probe with HTTP {code}")
            return what
        return None
    for e in _chain(exc):
        if isinstance(e, socket.gaierror) and e.errno in _NO_SUCH_NAME:
            return "the host name does not resolve"
        if isinstance(e, ssl.SSLCertVerificationError):
            return "the TLS certificate does not verify"
        if isinstance(e, ssl.SSLError) and getattr(e, "reason", None) == "WRONG_VERSION_NUMBER":
            return "TLS to a port that does not speak TLS (http:// instead of https://?)"
        if isinstance(e, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return "the URL is invalid"
        text = str(e)
        if any(t in text for t in _NO_SUCH_NAME_TEXT):
            return "the host name does not resolve"
        if any(t in text for t in _TLS_TEXT):
            return "the TLS handshake fails (certificate or protocol)"
    return None


def wait_reason(exc: BaseException) -> str:
    """Why a probe failed, in a few words: ``connection refused``, ``HTTP 503 ...``."""
    if isinstance(exc, APIStatusError):
        detail = exc.message or ""
        return f"HTTP {exc.status_code}" + (f" {detail}" if detail else "")
    for e in _chain(exc):
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e):
            return "connection refused"
        if isinstance(e, (TimeoutError, httpx.TimeoutException)):
            return "no answer in time"
    return str(exc) or type(exc).__name__


def last_reason(exc: BaseException) -> str:
    """The last probe's failure named by a wait's timeout error (its whole text if none)."""
    text = str(exc)
    return text.partition(LAST)[2] or text
