"""The ``rlinf_http`` debug log and the ``X-Request-Id`` on responses, errors and streams."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator

import pytest

from rlinf_http import (
    APIConnectionError,
    BadRequestError,
    InferenceHTTPClient,
    ServiceUnavailableError,
)
from rlinf_http.testing import FakeServer, FaultSpec

SP = {"max_new_tokens": 2}
LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<url>\S+) -> (?P<outcome>\S+) in (?P<ms>\d+(\.\d+)?) ms")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: FakeServer) -> Iterator[None]:
    server.app.faults.clear()
    server.app.reset_stats()
    yield
    server.app.faults.clear()


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rlinf_http" and r.levelno == level]


def seen_id(server: FakeServer, path: str) -> str:
    return server.app.stats["last_headers"][path]["x-request-id"]


# -- logging ----------------------------------------------------------------------------------


def test_debug_line_per_request(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rlinf_http")
    with InferenceHTTPClient(server.url) as client:
        client.generate("secret prompt", sampling_params=SP)
        client.health()
        client.server_info()
    got = lines(caplog)
    assert len(got) == 3, got
    parsed = [LINE.match(line) for line in got]
    assert all(parsed), got
    assert [(m["method"], m["url"], m["outcome"]) for m in parsed if m] == [
        ("POST", server.url + "/generate", "200"),
        ("GET", server.url + "/health", "200"),
        ("GET", server.url + "/server_info", "200"),
    ]
    assert all(float(m["ms"]) >= 0 for m in parsed if m)
    assert not any("secret prompt" in line for line in got)  # no bodies by default
    assert seen_id(server, "/generate") in got[0]


def test_bodies_only_when_asked(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rlinf_http")
    with InferenceHTTPClient(server.url, log_bodies=True) as client:
        client.generate("secret prompt", sampling_params=SP)
    (line,) = lines(caplog)
    assert "secret prompt" in line


def test_no_debug_lines_above_debug(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rlinf_http")
    with InferenceHTTPClient(server.url, log_bodies=True) as client:
        client.generate("x", sampling_params=SP)
    assert lines(caplog) == []


def test_debug_lines_for_errors_and_retries(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rlinf_http")
    server.app.faults.add(FaultSpec(path="/generate", status=503, headers={"Retry-After": "0"}))
    server.app.faults.add(FaultSpec(path="/generate", status=400))
    with InferenceHTTPClient(server.url, max_retries=2) as client:
        with pytest.raises(BadRequestError):
            client.generate("x", sampling_params=SP)
    outcomes = [m["outcome"] for m in map(LINE.match, lines(caplog)) if m]
    assert outcomes == ["503", "400"]
    assert any("retrying POST" in r for r in lines(caplog, logging.INFO))


def test_debug_line_for_connection_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rlinf_http")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with InferenceHTTPClient(f"http://127.0.0.1:{port}", max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            client.generate("x", sampling_params=SP)
    (line,) = lines(caplog)
    m = LINE.match(line)
    assert m and m["url"] == f"http://127.0.0.1:{port}/generate"
    assert "Error" in m["outcome"]


@pytest.mark.anyio
async def test_debug_lines_async_and_stream(
    anyio_backend: str, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rlinf_http")
    async with InferenceHTTPClient(server.url) as client:
        await client.async_chat_completion([{"role": "user", "content": "hi"}], max_tokens=2)
        stream = await client.async_generate("x", sampling_params=SP, stream=True)
        async with stream:
            [c async for c in stream]
    got = [(m["method"], m["url"], m["outcome"]) for m in map(LINE.match, lines(caplog)) if m]
    assert got == [
        ("GET", server.url + "/v1/models", "200"),  # chat without model= reads it once
        ("POST", server.url + "/v1/chat/completions", "200"),
        ("POST", server.url + "/generate", "200"),
    ]


# -- request ids ---------------------------------------------------------------------------------


def test_request_id_sent_and_echoed(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        out = client.generate("x", sampling_params=SP)
        first = seen_id(server, "/generate")
        assert first and re.fullmatch(r"[0-9a-f]{16,}", first)
        assert out.request_id == first
        chat = client.chat_completion([{"role": "user", "content": "hi"}], max_tokens=1)
        assert chat.request_id == seen_id(server, "/v1/chat/completions")
        client.generate("x", sampling_params=SP)
        assert seen_id(server, "/generate") != first  # one id per request
        assert client.server_info().request_id == seen_id(server, "/server_info")


def test_request_id_on_batch_results(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        outs = client.generate(["a", "b"], sampling_params=SP)
    assert [o.request_id for o in outs] == [seen_id(server, "/generate")] * 2


def test_request_id_on_errors(server: FakeServer) -> None:
    server.app.faults.add(FaultSpec(path="/generate", status=400))
    with InferenceHTTPClient(server.url, max_retries=0) as client:
        with pytest.raises(BadRequestError) as info:
            client.generate("x", sampling_params=SP)
    assert info.value.request_id == seen_id(server, "/generate")
    assert info.value.request_id


def test_retries_keep_the_request_id(server: FakeServer) -> None:
    server.app.faults.add(
        FaultSpec(path="/generate", status=503, headers={"Retry-After": "0"}, times=3)
    )
    with InferenceHTTPClient(server.url, max_retries=1) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            client.generate("x", sampling_params=SP)
    assert server.app.stats["requests"]["/generate"] == 2
    assert info.value.request_id == seen_id(server, "/generate")


def test_request_id_on_streams(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        with client.generate("x", sampling_params=SP, stream=True) as stream:
            list(stream)
        assert stream.request_id == seen_id(server, "/generate")
        with client.chat_completion(
            [{"role": "user", "content": "x"}], max_tokens=1, stream=True
        ) as chat:
            list(chat)
        assert chat.request_id == seen_id(server, "/v1/chat/completions")


@pytest.mark.anyio
async def test_request_id_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        out = await client.async_generate("x", sampling_params=SP)
        assert out.request_id == seen_id(server, "/generate")
        stream = await client.async_generate("x", sampling_params=SP, stream=True)
        async with stream:
            [c async for c in stream]
        assert stream.request_id == seen_id(server, "/generate")
        server.app.faults.add(FaultSpec(path="/v1/chat/completions", status=400))
        with pytest.raises(BadRequestError) as info:
            await client.async_chat_completion([{"role": "user", "content": "x"}])
        assert info.value.request_id == seen_id(server, "/v1/chat/completions")
        many = await client.async_generate_many(["a", "b"], sampling_params=SP)
        assert all(o.request_id for o in many)
        assert many[0].request_id != many[1].request_id


def test_user_supplied_request_id_header_is_sent_once(server: FakeServer) -> None:
    # A caller-chosen X-Request-Id (for tracing) must not be sent next to a second,
    # generated one: the server would see "mine, <hex>".
    with InferenceHTTPClient(server.url, headers={"X-Request-Id": "my-trace"}) as client:
        out = client.generate("x", sampling_params=SP)
    sent = seen_id(server, "/generate")
    assert "," not in sent, sent
    assert out.request_id == sent
