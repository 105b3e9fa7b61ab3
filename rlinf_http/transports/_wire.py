"""What a transport tells the retry policy about a failed request, and read deadlines.

Whether a failed request may be sent again depends on one fact only the transport
knows: did any byte of the response arrive? Once one has, the server has the
request (and may be generating), so it is never resent. Every transport of this
package (and the httpcore backend wrapper in :mod:`._httpcore`) marks its
failures here, on the exception, for the retry policy to read:

* ``response_started = True``: at least one response byte had arrived.
* ``stale_connection = True``: no response byte arrived, and the request went out
  on a reused keep-alive connection that turned out to be dead (the server closed
  it as we wrote). Retrying it is cheap, but it still counts as a send.

A transport only resends by itself when it saw a pooled connection closed
*before* writing the request: nothing reached the wire, so nothing is counted.

A write that fails after the server already answered (a ``413`` sent before the
whole body was read, then a reset) is not a failure: :func:`read_early_answer`
takes the answer that arrived, and it is the response.

:func:`read_deadline` bounds every blocking read of the current thread (or task)
until the block ends; the sync stream uses it to drain what follows
``data: [DONE]`` without waiting on a server that never ends the body.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from contextvars import ContextVar

import httpx

from ._http11 import ResponseParser

__all__ = [
    "READ_DEADLINE_EXTENSION",
    "RESPONSE_STARTED",
    "STALE_CONNECTION",
    "ArrivalWatch",
    "mark_failure",
    "read_early_answer",
    "read_deadline",
    "read_timeout_within_deadline",
    "response_started",
    "watch_arrival",
]

#: Attribute set on an exception when response bytes had arrived before it.
RESPONSE_STARTED = "response_started"
#: Attribute set on an exception when a reused connection died before any response byte.
STALE_CONNECTION = "stale_connection"
#: Response extension set by transports whose blocking reads honour :func:`read_deadline`.
READ_DEADLINE_EXTENSION = "rlinf_http.read_deadline"

_deadline: ContextVar[float | None] = ContextVar("rlinf_http_read_deadline", default=None)


def mark_failure(exc: BaseException, started: bool, reused: bool) -> None:
    """Record on ``exc`` what the retry policy must know (see the module docstring)."""
    if started:
        setattr(exc, RESPONSE_STARTED, True)
    elif reused and not isinstance(exc, httpx.TimeoutException):
        # (A timeout means the server had the request and was slow: not stale.)
        setattr(exc, STALE_CONNECTION, True)


#: Read without waiting (0 where the platform lacks it: then only non-blocking sockets).
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)


def read_early_answer(sock: socket.socket, parser: ResponseParser) -> bool:
    """After a write failed: feed ``parser`` what the server already sent, without
    waiting. True when that is a complete response (the request's answer; the
    caller must not reuse the connection). Plain sockets only (not under TLS)."""
    if isinstance(sock, ssl.SSLSocket) or (not _DONTWAIT and sock.gettimeout() != 0.0):
        return False
    try:
        while not parser.complete:
            data = sock.recv(65536, _DONTWAIT)
            if not data:
                parser.feed_eof()
                break
            parser.feed(data)
    except (OSError, httpx.RemoteProtocolError):
        pass  # nothing (more) to read, or not an answer: the write failure stands
    return parser.complete


def response_started(exc: BaseException) -> bool:
    """Whether response bytes had arrived before ``exc`` (never resend then)."""
    return bool(getattr(exc, RESPONSE_STARTED, False))


@contextlib.contextmanager
def read_deadline(seconds: float) -> Iterator[None]:
    """Within the block, blocking reads give up ``seconds`` from now (``ReadTimeout``)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def read_timeout_within_deadline(timeout: float | None) -> float | None:
    """``timeout`` shortened to the current :func:`read_deadline`, if any.

    Returns ``0.0`` or less when the deadline has passed (the caller raises its
    read timeout).
    """
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    return remaining if timeout is None or remaining < timeout else timeout


class ArrivalWatch:
    """Set while a request is in flight; a read that returns bytes sets ``arrived``."""

    __slots__ = ("arrived",)

    def __init__(self) -> None:
        self.arrived = False


_watch: ContextVar[ArrivalWatch | None] = ContextVar("rlinf_http_arrival_watch", default=None)


@contextlib.contextmanager
def watch_arrival() -> Iterator[ArrivalWatch]:
    """Watch the reads of the current thread (or task) for response bytes."""
    watch = ArrivalWatch()
    token = _watch.set(watch)
    try:
        yield watch
    finally:
        _watch.reset(token)


def note_arrival() -> None:
    """A read returned bytes (called by the httpcore backend wrapper)."""
    watch = _watch.get()
    if watch is not None:
        watch.arrived = True
