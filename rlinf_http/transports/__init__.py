"""Fast HTTP/1.1 transports for httpx clients.

:class:`AsyncTransport` (asyncio Protocols) and :class:`SyncTransport` (blocking
sockets, thread-safe) implement :class:`httpx.AsyncBaseTransport` and
:class:`httpx.BaseTransport`.  They raise httpx's own exception types.
"""

from ._async import AsyncTransport
from ._sync import SyncTransport

__all__ = ["AsyncTransport", "SyncTransport"]
