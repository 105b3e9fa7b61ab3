"""What the rlinf-http transports share: wire types, constants, the raw-request protocol.

The asyncio (:mod:`._async`), trio (:mod:`._trio`) and blocking-socket
(:mod:`._sync`) transports take the same timeouts tuple, return the same raw
response and keep idle connections for the same time; they are defined here once.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, cast

if TYPE_CHECKING:
    from ._pool import Origin

__all__ = [
    "CLOSED_MESSAGE",
    "KEEPALIVE_EXPIRY",
    "TCP_QUICKACK",
    "RawResponse",
    "RawTimeouts",
    "RawTransport",
    "SocketOption",
    "raw_transport",
]

#: ``(level, option, value)`` for ``socket.setsockopt``, applied to every connection.
SocketOption = tuple[int, int, "int | bytes"]

#: ``(connect, read, write, pool)`` timeouts of ``raw_request`` (``None``: no bound).
RawTimeouts = tuple["float | None", "float | None", "float | None", "float | None"]

#: ``(status, [(name, value), ...], body)`` as returned by ``raw_request``.
RawResponse = tuple[int, list[tuple[bytes, bytes]], bytes]

#: Below the 5 s after which uvicorn (sglang's server) closes idle connections, so
#: that a connection is rarely reused just as the server closes it.
KEEPALIVE_EXPIRY = 4.0

#: Linux's TCP_QUICKACK (None elsewhere).
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

CLOSED_MESSAGE = "Cannot send a request, as the transport has been closed."


class RawTransport(Protocol):
    """An async transport that takes a complete request (head bytes + body) at once.

    The client's fast path hands such a transport the request it already encoded,
    skipping httpx's request and response objects. A transport says it is one
    with the class attribute ``raw_requests = True`` (checked by
    :func:`raw_transport`: a plain attribute read, cheaper than a protocol
    ``isinstance`` on every request).
    """

    raw_requests: ClassVar[Literal[True]]

    async def raw_request(
        self, origin: Origin, head: bytes, body: bytes, timeouts: RawTimeouts
    ) -> RawResponse: ...


def raw_transport(transport: object) -> RawTransport | None:
    """``transport`` if it takes raw requests (see :class:`RawTransport`), else ``None``."""
    if getattr(transport, "raw_requests", False) is True:
        return cast("RawTransport", transport)
    return None
