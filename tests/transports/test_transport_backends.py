"""The client's transport per event loop: ours on asyncio, uvloop and trio; httpx's on request.

Also the wire rules on the trio transport end to end: a written request is resent
only by the retry policy (at most ``max_retries + 1`` times), and idle keep-alive
connections expire before uvicorn's 5 s.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
import trio

from rlinf_http import APIConnectionError, InferenceHTTPClient, RetryPolicy
from rlinf_http.transports import AsyncTransport, TrioTransport
from rlinf_http.transports._common import KEEPALIVE_EXPIRY

from .conftest import Server, ServerConn

Serve = Callable[..., Server]

GENERATE = json.dumps(
    {
        "text": "ok",
        "output_ids": [1, 2],
        "meta_info": {"id": "r", "finish_reason": {"type": "length", "length": 2}},
    }
).encode()
FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.02, jitter=0.0)


async def generate_handler(conn: ServerConn) -> None:
    while await conn.read_request() is not None:
        await conn.respond(GENERATE, headers=[("Content-Type", "application/json")])


def transport_of(client: InferenceHTTPClient) -> Any:
    session = client._driver._async_client
    assert session is not None
    return session._transport


@pytest.mark.anyio
@pytest.mark.parametrize("choice", ["auto", "rlinf", "httpx"])
async def test_session_transport_per_backend(serve: Serve, anyio_backend: str, choice: Any) -> None:
    server = serve(generate_handler)
    async with InferenceHTTPClient(server.url, transport=choice) as client:
        for _ in range(3):
            assert (await client.async_generate(prompt="hi")).text == "ok"
        transport = transport_of(client)
        if choice == "httpx":
            assert isinstance(transport, httpx.AsyncHTTPTransport)
        elif anyio_backend == "trio":
            assert isinstance(transport, TrioTransport)
            assert transport.pool.idle_count == 1  # typed calls took the raw path, pooled
        else:
            assert isinstance(transport, AsyncTransport)
    assert server.connections_opened == 1


def reset_reused_handler() -> Callable[[ServerConn], Any]:
    """Answers the first request of each connection; resets it on the next one."""

    async def handler(conn: ServerConn) -> None:
        if await conn.read_request() is None:
            return
        await conn.respond(GENERATE, headers=[("Content-Type", "application/json")])
        if await conn.read_request() is not None:
            conn.abort()

    return handler


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("max_retries", [0, 1, 2])
async def test_written_request_resent_only_by_the_retry_policy(
    serve: Serve, anyio_backend: str, max_retries: int
) -> None:
    # The second call goes out on a pooled connection the server resets after reading
    # it: the transport must not resend it by itself, so the wire sees it once, then
    # once per retry the policy grants (each on a fresh connection, answered).
    server = serve(reset_reused_handler())
    async with InferenceHTTPClient(
        server.url, retry_policy=FAST_RETRY, max_retries=max_retries
    ) as client:
        assert (await client.async_generate(prompt="a")).text == "ok"
        if max_retries == 0:
            with pytest.raises(APIConnectionError):
                await client.async_generate(prompt="b")
            assert len(server.requests) == 2
        else:
            assert (await client.async_generate(prompt="b")).text == "ok"
            assert len(server.requests) == 3  # first call, reset one, one retry
    assert len(server.requests) <= 1 + max_retries + 1


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_keepalive_expiry(serve: Serve, anyio_backend: str) -> None:
    assert KEEPALIVE_EXPIRY < 5.0  # uvicorn (sglang) closes idle connections at 5 s
    server = serve(generate_handler)
    transport = TrioTransport(keepalive_expiry=0.1)
    origin = ("http", server.host, server.port)
    head = f"GET / HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode()
    timeouts = (5.0, 5.0, 5.0, 5.0)
    await transport.raw_request(origin, head, b"", timeouts)
    await transport.raw_request(origin, head, b"", timeouts)  # reused: within the expiry
    assert server.connections_opened == 1
    await anyio.sleep(0.2)
    await transport.raw_request(origin, head, b"", timeouts)  # expired: a new connection
    assert server.connections_opened == 2
    assert transport.pool.total == 1
    await transport.aclose()


def test_trio_transport_under_trio_run_and_asyncio_rejected(echo_server: Server) -> None:
    # A TrioTransport works across trio.run calls; under asyncio it fails loudly.
    transport = TrioTransport()
    origin = ("http", echo_server.host, echo_server.port)
    head = (
        f"POST / HTTP/1.1\r\nHost: {echo_server.host}:{echo_server.port}\r\n"
        "Content-Length: 2\r\n\r\n"
    ).encode()

    async def call() -> bytes:
        return (await transport.raw_request(origin, head, b"hi", (5.0, 5.0, 5.0, 5.0)))[2]

    assert trio.run(call) == b"hi"
    assert trio.run(call) == b"hi"
    with pytest.raises(RuntimeError):
        asyncio.run(call())


def seed_gather(url: str, prompts: list[str], concurrency: int) -> Any:
    """The seed guide's pattern: one task per prompt, gathered, bounded by a semaphore."""

    async def fan_out() -> list[Any]:
        semaphore = asyncio.Semaphore(concurrency)
        async with InferenceHTTPClient(url) as client:

            async def one(prompt: str) -> Any:
                async with semaphore:
                    return await client.async_generate(
                        prompt=prompt, sampling_params={"max_new_tokens": 2}
                    )

            results = await asyncio.gather(*[one(p) for p in prompts])
            return [results, type(transport_of(client)).__name__]

    return fan_out


def test_gather_pattern_on_uvloop(serve: Serve) -> None:
    uvloop = pytest.importorskip("uvloop")
    server = serve(generate_handler)
    prompts = [f"p{i}" for i in range(300)]
    results, transport = uvloop.run(seed_gather(server.url, prompts, 32)())
    assert transport == "AsyncTransport"
    assert len(results) == 300 and all(r.text == "ok" for r in results)
    assert server.max_concurrent <= 32
    assert len(server.requests) == 300


def test_gather_pattern_on_asyncio(serve: Serve) -> None:
    server = serve(generate_handler)
    prompts = [f"p{i}" for i in range(300)]
    results, _ = asyncio.run(seed_gather(server.url, prompts, 32)())
    assert [r.text for r in results] == ["ok"] * 300
    assert server.max_concurrent <= 32


def test_trio_is_imported_only_when_used() -> None:
    # trio is optional: importing the package (and using it on asyncio) must not need it.
    code = (
        "import asyncio, sys, rlinf_http\n"
        "from rlinf_http import transports\n"
        "client = rlinf_http.InferenceHTTPClient('http://127.0.0.1:9')\n"
        "asyncio.run(client.aclose())\n"
        "assert 'trio' not in sys.modules, 'trio imported'\n"
        "assert transports.TrioTransport.__name__ == 'TrioTransport'\n"
        "assert 'trio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_quick_acks_while_a_body_arrives(
    serve: Serve, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is None:
        pytest.skip("no TCP_QUICKACK on this platform")
    calls: list[tuple[Any, ...]] = []

    class RecordingSocket(socket.socket):
        def setsockopt(self, *args: Any) -> None:  # type: ignore[override]
            calls.append(args)
            super().setsockopt(*args)

    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/pieces":
                await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in (b"a", b"b", b"c"):
                    await asyncio.sleep(0.02)
                    await conn.send(b"1\r\n%b\r\n" % piece)
                await conn.send(b"0\r\n\r\n")
            else:
                await conn.respond(b"whole")

    server = serve(handler)
    monkeypatch.setattr(socket, "socket", RecordingSocket)
    transport = TrioTransport()
    origin = ("http", server.host, server.port)
    timeouts = (5.0, 5.0, 5.0, 5.0)

    def head(path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode()

    assert (await transport.raw_request(origin, head("/whole"), b"", timeouts))[2] == b"whole"
    assert (socket.IPPROTO_TCP, quickack, 1) not in calls  # one read: nothing to hurry
    assert (await transport.raw_request(origin, head("/pieces"), b"", timeouts))[2] == b"abc"
    assert (socket.IPPROTO_TCP, quickack, 1) in calls
    await transport.aclose()
