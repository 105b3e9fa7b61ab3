"""The private hooks into httpx, httpcore and asyncio that rlinf-http keeps.

Each is used on purpose (see where), and each test here fails with a message
naming the hook if a new version of the library moves it: the version pin is
not the only guard.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rlinf_http.transports._httpcore import (
    _AsyncBackend,
    _Backend,
    watched_async_transport,
    watched_transport,
)


def _moved(hook: str, used_by: str) -> str:
    return (
        f"{hook} moved in this httpx/httpcore/Python version; {used_by} relies on it: "
        "update rlinf_http before raising the pin"
    )


def test_transport_for_url_hook() -> None:
    # rlinf_http._driver.Driver._own_transport / _send_httpx / _asend_httpx: our own
    # session's requests go straight to its transport (respx patches this method).
    url = httpx.URL("http://127.0.0.1:9/generate")
    for client in (httpx.Client(), httpx.AsyncClient()):
        hook = getattr(client, "_transport_for_url", None)
        assert callable(hook), _moved("httpx.Client._transport_for_url", "the driver")
        assert isinstance(hook(url), (httpx.BaseTransport, httpx.AsyncBaseTransport)), _moved(
            "httpx.Client._transport_for_url", "the driver"
        )


def test_response_content_and_decoder_hooks() -> None:
    # rlinf_http._streaming: a stream reads raw bytes and decodes them itself.
    read = httpx.Response(200, content=b"data: x\n\n")
    assert getattr(read, "_content", None) == b"data: x\n\n", _moved(
        "httpx.Response._content", "rlinf_http._streaming"
    )
    unread = httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b""))
    assert getattr(unread, "_content", None) is None, _moved(
        "httpx.Response._content", "rlinf_http._streaming"
    )
    get_decoder = getattr(unread, "_get_content_decoder", None)
    assert callable(get_decoder), _moved(
        "httpx.Response._get_content_decoder()", "rlinf_http._streaming"
    )
    assert hasattr(get_decoder(), "decode"), _moved(
        "httpx.Response._get_content_decoder()", "rlinf_http._streaming"
    )


@pytest.mark.parametrize(
    ("make", "wrapper"),
    [(watched_transport, _Backend), (watched_async_transport, _AsyncBackend)],
)
def test_pool_network_backend_hook(make: object, wrapper: type) -> None:
    # rlinf_http.transports._httpcore._wrap_backend: it would quietly do nothing if
    # httpx moved the pool's backend; this test makes that loud.
    limits = httpx.Limits(max_connections=4)
    transport = make(limits)  # type: ignore[operator]
    pool = getattr(transport, "_pool", None)
    assert pool is not None, _moved("httpx.HTTPTransport._pool", "transport='httpx'")
    backend = getattr(pool, "_network_backend", None)
    assert isinstance(backend, wrapper), _moved(
        "httpcore.ConnectionPool._network_backend", "transport='httpx' failure watching"
    )


def test_asyncio_get_running_loop_hook() -> None:
    # rlinf_http._driver._running_loop_token: a non-raising loop lookup on every call.
    hook = getattr(asyncio, "_get_running_loop", None)
    assert callable(hook), _moved("asyncio._get_running_loop", "rlinf_http._driver")
    assert hook() is None, _moved("asyncio._get_running_loop", "rlinf_http._driver")

    async def inside() -> object:
        return hook()

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(inside()) is loop, _moved(
            "asyncio._get_running_loop", "rlinf_http._driver"
        )
    finally:
        loop.close()
