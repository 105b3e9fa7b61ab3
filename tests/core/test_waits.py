"""Bounded waits say why they wait, and stop at once on what waiting cannot fix.

No test here resolves a real name: ``socket.getaddrinfo`` is replaced in-process
before any client exists, and refuses every name but loopback (a resolver error
as the machine's resolver gives it for a name that does not exist)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from rlinf_http import APIConnectionError, APITimeoutError, InferenceHTTPClient
from rlinf_http._core.responses import RawResponse, status_error
from rlinf_http._core.waits import wait_reason, waiting_cannot_fix

TYPO = "http://routr.invalid:30000"


def _status(code: int, body: Any = None) -> Exception:
    raw = RawResponse(
        "GET", "http://x/health", code, httpx.Headers(), json.dumps(body or {}).encode()
    )
    return status_error(raw)


def _connect_error(cause: BaseException) -> APIConnectionError:
    try:
        try:
            raise cause
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
    except httpx.ConnectError as exc:
        try:
            raise APIConnectionError(f"GET x failed: {exc}") from exc
        except APIConnectionError as err:
            return err


@pytest.mark.parametrize(
    "exc,fatal",
    [
        (_connect_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), True),
        (_connect_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")), False),
        (_connect_error(ConnectionRefusedError(111, "Connection refused")), False),
        (_connect_error(ssl.SSLCertVerificationError(1, "certificate verify failed")), True),
        (APIConnectionError("ConnectError: [Errno -2] Name or service not known"), True),
        (APIConnectionError("RemoteProtocolError: reset"), False),
        (APITimeoutError("timed out"), False),
        (_status(401), True),
        (_status(403), True),
        (_status(404), True),
        (_status(400), True),
        (_status(429), False),
        (_status(503), False),
        (_status(500), False),
    ],
)
def test_waiting_cannot_fix_classifies(exc: BaseException, fatal: bool) -> None:
    assert (waiting_cannot_fix(exc) is not None) is fatal


def test_wait_reason_is_short() -> None:
    refused = _connect_error(ConnectionRefusedError(111, "Connection refused"))
    assert wait_reason(refused) == "connection refused"
    assert wait_reason(_status(503, {"error": {"message": "no workers"}})).startswith("HTTP 503")


# -- a real client whose resolver says the name does not exist ------------------


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``socket.getaddrinfo`` that knows loopback only: nothing leaves the machine."""
    real: Callable[..., Any] = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        asked.append(name)
        if name in ("localhost", "127.0.0.1", "::1"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield asked


def test_sync_wait_until_ready_stops_at_once_on_unknown_host(no_dns: list[str]) -> None:
    started = time.monotonic()
    with InferenceHTTPClient(TYPO) as client:
        with pytest.raises(APIConnectionError, match="does not resolve"):
            client.wait_until_ready(timeout=30, poll_interval=0.05)
    assert time.monotonic() - started < 5
    assert "routr.invalid" in no_dns


def test_async_wait_until_ready_stops_at_once_on_unknown_host(no_dns: list[str]) -> None:
    async def main() -> None:
        async with InferenceHTTPClient(TYPO) as client:
            with anyio.fail_after(5):
                with pytest.raises(APIConnectionError, match="does not resolve"):
                    await client.async_wait_until_ready(timeout=30, poll_interval=0.05)

    anyio.run(main)  # asyncio (uvloop would resolve without socket.getaddrinfo)
    assert "routr.invalid" in no_dns


# -- TLS that waiting cannot fix ----------------------------------------------------


@pytest.fixture
def untrusted_tls_port() -> Iterator[int]:
    """A TLS listener on loopback whose certificate no default trust store accepts."""
    import threading

    trustme = pytest.importorskip("trustme")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                ctx.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_wait_until_ready_stops_at_once_on_an_untrusted_certificate(
    untrusted_tls_port: int,
) -> None:
    started = time.monotonic()
    with InferenceHTTPClient(f"https://127.0.0.1:{untrusted_tls_port}") as client:
        with pytest.raises(APIConnectionError, match="TLS") as info:
            client.wait_until_ready(timeout=30, poll_interval=0.05)
    assert not isinstance(info.value, APITimeoutError)
    assert time.monotonic() - started < 5


def test_wait_until_ready_stops_at_once_on_https_to_a_plain_http_port() -> None:
    from rlinf_http.testing import FakeServer

    with FakeServer() as server:
        url = server.url.replace("http://", "https://")
        started = time.monotonic()
        with InferenceHTTPClient(url) as client:
            with pytest.raises(APIConnectionError, match="TLS") as info:
                client.wait_until_ready(timeout=30, poll_interval=0.05)
        assert not isinstance(info.value, APITimeoutError)
        assert time.monotonic() - started < 5
