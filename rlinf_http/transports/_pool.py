"""Connection-pool bookkeeping, free of I/O.

The pool tracks *slots* (one per open or opening connection, capped globally),
idle keep-alive connections per origin, and a FIFO queue of waiters.  Every
operation is O(1) amortised: idle connections live in insertion-ordered dicts
(a per-origin one used as a LIFO stack, and a global one ordered by release
time used to evict the oldest idle connection when the cap is reached), and
waiters sit in a deque from which cancelled ones are dropped lazily.

The sync and async transports share this class; the async one calls it from
the event loop thread only, the sync one holds a lock around each call.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

__all__ = ["SLOT", "ConnectionPool", "Origin", "PoolConnection", "Slot", "Waiter"]

#: ``(scheme, host, port)``: ``("http" | "https", ASCII host without brackets, port)``.
Origin = tuple[str, str, int]


class Slot:
    """The right to open one new connection (counted against the global cap)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SLOT"


#: The one :class:`Slot` instance.
SLOT = Slot()


class PoolConnection(Protocol):
    """What the pool needs from a connection."""

    @property
    def origin(self) -> Origin: ...

    @property
    def expires_at(self) -> float: ...

    def is_usable(self) -> bool:
        """Open, idle, nothing unexpected received: may be handed out again."""
        ...

    def close(self) -> None: ...


C = TypeVar("C", bound=PoolConnection)
C_contra = TypeVar("C_contra", bound=PoolConnection, contravariant=True)


class Waiter(Protocol[C_contra]):
    """A queued request.  ``deliver`` returns False when the waiter is gone."""

    @property
    def origin(self) -> Origin: ...

    def deliver(self, item: C_contra | Slot) -> bool: ...

    def fail(self, exc: BaseException) -> None: ...


class ConnectionPool(Generic[C]):
    """Origin-keyed idle stacks, a global slot count and fair FIFO waiters."""

    __slots__ = ("_closed", "_global_idle", "_idle", "_max", "_total", "_waiters")

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self._max = max_connections
        self._total = 0
        self._idle: dict[Origin, dict[C, None]] = {}
        self._global_idle: dict[C, None] = {}
        self._waiters: deque[Waiter[C]] = deque()
        self._closed = False

    # -- introspection (tests, metrics) ------------------------------------------------
    @property
    def max_connections(self) -> int:
        return self._max

    @property
    def total(self) -> int:
        """Slots in use: open connections (idle or busy) plus connections being opened."""
        return self._total

    @property
    def idle_count(self) -> int:
        return len(self._global_idle)

    @property
    def waiter_count(self) -> int:
        """Queued waiters, including cancelled ones not yet dropped."""
        return len(self._waiters)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- operations ----------------------------------------------------------------------
    def acquire(self, origin: Origin, now: float) -> C | Slot | None:
        """An idle connection, a :data:`SLOT` to open one, or None (then :meth:`wait`)."""
        stack = self._idle.get(origin)
        while stack:
            conn, _ = stack.popitem()  # LIFO: the most recently used one
            del self._global_idle[conn]
            if conn.is_usable() and conn.expires_at > now:
                return conn
            conn.close()
            self._total -= 1
        if self._closed:
            raise RuntimeError("The connection pool is closed.")
        if self._total < self._max:
            self._total += 1
            return SLOT
        if self._global_idle:
            # At the cap, but some other origin holds idle connections: evict the oldest.
            victim = next(iter(self._global_idle))
            self._remove_idle(victim)
            victim.close()
            return SLOT
        return None

    def wait(self, waiter: Waiter[C]) -> None:
        """Queue a waiter; it is served in FIFO order by :meth:`release`/:meth:`discard`."""
        self._waiters.append(waiter)

    def release(self, conn: C) -> None:
        """A connection finished a response and may be reused."""
        if self._closed or not conn.is_usable():
            conn.close()
            self.discard()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.origin == conn.origin:
                if waiter.deliver(conn):
                    return
            elif waiter.deliver(SLOT):
                # The first waiter wants another origin: trade this connection for its slot.
                conn.close()
                return
        stack = self._idle.get(conn.origin)
        if stack is None:
            stack = self._idle[conn.origin] = {}
        stack[conn] = None
        self._global_idle[conn] = None

    def discard(self) -> None:
        """A slot was freed (connection closed, or a connect attempt failed)."""
        waiters = self._waiters
        while waiters:
            if waiters.popleft().deliver(SLOT):
                return
        self._total -= 1

    def remove_idle(self, conn: C) -> bool:
        """Drop an idle connection that died (peer closed it); frees its slot."""
        if conn not in self._global_idle:
            return False
        self._remove_idle(conn)
        self.discard()
        return True

    def close(self, exc: BaseException) -> list[C]:
        """Mark the pool closed and fail the waiters with ``exc``.

        Returns the idle connections; the caller closes them.
        """
        self._closed = True
        waiters = self._waiters
        while waiters:
            waiters.popleft().fail(exc)
        conns = list(self._global_idle)
        self._global_idle.clear()
        self._idle.clear()
        self._total -= len(conns)
        return conns

    def _remove_idle(self, conn: C) -> None:
        del self._global_idle[conn]
        stack = self._idle[conn.origin]
        del stack[conn]
        if not stack:
            del self._idle[conn.origin]
