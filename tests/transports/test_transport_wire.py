"""Failure marks and read deadlines shared by the transports (issue 9)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import pytest

from rlinf_http.transports import SyncTransport
from rlinf_http.transports._wire import (
    mark_failure,
    read_deadline,
    read_timeout_within_deadline,
    response_started,
)

from .conftest import Server, ServerConn


def test_mark_failure() -> None:
    started = httpx.ReadError("x")
    mark_failure(started, started=True, reused=True)
    assert response_started(started) and not getattr(started, "stale_connection", False)

    stale = httpx.ReadError("x")
    mark_failure(stale, started=False, reused=True)
    assert getattr(stale, "stale_connection", False) and not response_started(stale)

    slow = httpx.ReadTimeout("x")  # the server had the request and was slow: not stale
    mark_failure(slow, started=False, reused=True)
    assert not getattr(slow, "stale_connection", False)

    fresh = httpx.ReadError("x")
    mark_failure(fresh, started=False, reused=False)
    assert not response_started(fresh) and not getattr(fresh, "stale_connection", False)


def test_read_timeout_within_deadline() -> None:
    assert read_timeout_within_deadline(None) is None
    assert read_timeout_within_deadline(3.0) == 3.0
    with read_deadline(1.0):
        bounded = read_timeout_within_deadline(None)
        assert bounded is not None and 0 < bounded <= 1.0
        assert read_timeout_within_deadline(0.25) == 0.25
    assert read_timeout_within_deadline(None) is None


def test_sync_transport_reads_honour_read_deadline(serve: Callable[..., Server]) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
        # Does not end the body: waits for the client to go away (10 s at most).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(conn.reader.read(), 10)

    server = serve(handler)
    with httpx.Client(transport=SyncTransport(), timeout=None) as client:
        with client.stream("GET", server.url) as response:
            chunks = response.iter_raw()
            assert next(chunks) == b"hi"
            # Without the deadline this read waits for the server's 10 s sleep, then
            # fails with a RemoteProtocolError (body cut short), not a ReadTimeout.
            with pytest.raises(httpx.ReadTimeout), read_deadline(0.2):
                next(chunks)
