"""ConnectionPool bookkeeping, without sockets."""

from __future__ import annotations

import pytest

from rlinf_http.transports._pool import SLOT, ConnectionPool, Origin, Slot

A: Origin = ("http", "a", 80)
B: Origin = ("http", "b", 80)


class FakeConn:
    def __init__(self, origin: Origin, expires_at: float = 1e9) -> None:
        self.origin = origin
        self.expires_at = expires_at
        self.usable = True
        self.closed = False

    def is_usable(self) -> bool:
        return self.usable and not self.closed

    def close(self) -> None:
        self.closed = True


class FakeWaiter:
    def __init__(self, origin: Origin, name: str, log: list[tuple[str, object]]) -> None:
        self.origin = origin
        self.name = name
        self.log = log
        self.cancelled = False
        self.error: BaseException | None = None

    def deliver(self, item: FakeConn | Slot) -> bool:
        if self.cancelled:
            return False
        self.log.append((self.name, item))
        return True

    def fail(self, exc: BaseException) -> None:
        self.error = exc


def test_slots_then_wait() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(2)
    assert pool.acquire(A, 0) is SLOT
    assert pool.acquire(A, 0) is SLOT
    assert pool.acquire(A, 0) is None
    assert pool.total == 2


def test_release_reuses_lifo() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(4)
    c1, c2 = FakeConn(A), FakeConn(A)
    pool.acquire(A, 0)
    pool.acquire(A, 0)
    pool.release(c1)
    pool.release(c2)
    assert pool.idle_count == 2
    assert pool.acquire(A, 0) is c2
    assert pool.acquire(A, 0) is c1
    assert pool.acquire(B, 0) is SLOT
    assert pool.total == 3


def test_expired_and_dead_idle_connections_are_skipped() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(4)
    old, dead = FakeConn(A, expires_at=5), FakeConn(A)
    pool.acquire(A, 0)
    pool.acquire(A, 0)
    pool.release(old)
    pool.release(dead)
    dead.usable = False
    assert pool.acquire(A, 10) is SLOT
    assert old.closed and dead.closed
    assert pool.total == 1
    assert pool.idle_count == 0


def test_fifo_waiters_and_cancelled_are_skipped() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(1)
    log: list[tuple[str, object]] = []
    assert pool.acquire(A, 0) is SLOT
    waiters = [FakeWaiter(A, f"w{i}", log) for i in range(4)]
    for waiter in waiters:
        assert pool.acquire(A, 0) is None
        pool.wait(waiter)
    waiters[1].cancelled = True
    conn = FakeConn(A)
    for _ in range(3):
        pool.release(conn)
    assert [name for name, _ in log] == ["w0", "w2", "w3"]
    assert all(item is conn for _, item in log)
    pool.release(conn)
    assert pool.idle_count == 1
    assert pool.total == 1


def test_release_to_waiter_of_other_origin_trades_for_slot() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(1)
    log: list[tuple[str, object]] = []
    pool.acquire(A, 0)
    pool.wait(FakeWaiter(B, "b", log))
    conn = FakeConn(A)
    pool.release(conn)
    assert conn.closed
    assert log == [("b", SLOT)]
    assert pool.total == 1


def test_discard_hands_slot_to_first_live_waiter() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(1)
    log: list[tuple[str, object]] = []
    pool.acquire(A, 0)
    dead = FakeWaiter(A, "dead", log)
    dead.cancelled = True
    pool.wait(dead)
    pool.wait(FakeWaiter(A, "live", log))
    pool.discard()
    assert log == [("live", SLOT)]
    assert pool.total == 1
    pool.discard()
    assert pool.total == 0
    assert pool.waiter_count == 0


def test_evicts_oldest_idle_of_other_origin_at_cap() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(2)
    a1, a2 = FakeConn(A), FakeConn(A)
    pool.acquire(A, 0)
    pool.acquire(A, 0)
    pool.release(a1)
    pool.release(a2)
    assert pool.acquire(B, 0) is SLOT
    assert a1.closed and not a2.closed
    assert pool.total == 2
    assert pool.acquire(A, 0) is a2


def test_remove_idle_frees_slot() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(1)
    conn = FakeConn(A)
    pool.acquire(A, 0)
    pool.release(conn)
    assert pool.remove_idle(conn)
    assert not pool.remove_idle(conn)
    assert pool.total == 0
    assert pool.acquire(A, 0) is SLOT


def test_close_fails_waiters_and_returns_idle() -> None:
    pool: ConnectionPool[FakeConn] = ConnectionPool(2)
    log: list[tuple[str, object]] = []
    conn = FakeConn(A)
    pool.acquire(A, 0)
    pool.acquire(A, 0)
    pool.release(conn)
    waiter = FakeWaiter(B, "w", log)
    pool.wait(waiter)
    error = RuntimeError("closed")
    assert pool.close(error) == [conn]
    assert waiter.error is error
    with pytest.raises(RuntimeError):
        pool.acquire(A, 0)
    other = FakeConn(A)
    pool.release(other)  # a busy connection finishing after close
    assert other.closed
    assert pool.total == 0


def test_rejects_zero_cap() -> None:
    with pytest.raises(ValueError):
        ConnectionPool(0)
