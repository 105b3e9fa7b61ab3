"""Fast HTTP/1.1 transports for httpx clients.

:class:`AsyncTransport` (asyncio Protocols), :class:`TrioTransport` (trio's I/O
waits over non-blocking sockets; importing it imports trio) and
:class:`SyncTransport` (blocking sockets, thread-safe) implement
:class:`httpx.AsyncBaseTransport` and :class:`httpx.BaseTransport`.  They raise
httpx's own exception types.
"""

from typing import TYPE_CHECKING, Any

from ._async import AsyncTransport
from ._sync import SyncTransport

if TYPE_CHECKING:
    from ._trio import TrioTransport

__all__ = ["AsyncTransport", "SyncTransport", "TrioTransport"]


def __getattr__(name: str) -> Any:
    # trio is optional: import the trio transport (and trio) only when asked for.
    if name == "TrioTransport":
        from ._trio import TrioTransport

        return TrioTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
