"""Server administration against the fake sglang server over loopback sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from rlinf_http import (
    APITimeoutError,
    FlushCacheResult,
    InferenceHTTPClient,
    ModelInfo,
    ModelList,
    NotFoundError,
    ServerInfo,
)
from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec

# Known AsyncStream bug (see tests/stream): ignored here so these tests check admin calls.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._models.Response.aiter:ResourceWarning"
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    # 100 tokens at 20 ms: a generation runs ~2 s unless it is aborted
    with FakeServer(config=FakeConfig(itl_s=0.02, served_model_name="adm-model")) as srv:
        yield srv


@pytest.fixture(scope="module")
def legacy() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(legacy_info_routes_only=True)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: FakeServer) -> Iterator[None]:
    server.app.faults.clear()
    deadline = time.monotonic() + 3
    while server.app.running_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    server.app.reset_stats()
    yield
    server.app.faults.clear()


def requests(srv: FakeServer) -> dict[str, int]:
    return srv.app.stats["requests"]


# -- info --------------------------------------------------------------------------------------


def test_server_and_model_info_sync(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        info = client.server_info()
        model = client.model_info()
    assert isinstance(info, ServerInfo) and isinstance(model, ModelInfo)
    assert info.served_model_name == "adm-model"
    assert info.incremental_streaming_output is False
    assert info.tp_size == 1 and info.version == "0.5.23-fake"
    assert info["max_total_num_tokens"] == server.app.config.max_total_num_tokens
    assert model.is_generation is True and model.model_type == "fake"
    assert model.architectures == ["FakeForCausalLM"]
    assert requests(server) == {"/server_info": 1, "/model_info": 1}


@pytest.mark.anyio
async def test_server_and_model_info_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        info = await client.async_server_info()
        model = await client.async_model_info()
    assert info.model_path == server.app.config.model_path
    assert model.served_model_name == "adm-model"


def test_legacy_info_fallback_sync(legacy: FakeServer) -> None:
    legacy.app.reset_stats()
    with InferenceHTTPClient(legacy.url) as client:
        assert client.server_info().served_model_name == "fake-model"
        assert client.model_info().is_generation is True
    assert requests(legacy) == {
        "/server_info": 1,
        "/get_server_info": 1,
        "/model_info": 1,
        "/get_model_info": 1,
    }


@pytest.mark.anyio
async def test_legacy_info_fallback_async(anyio_backend: str, legacy: FakeServer) -> None:
    legacy.app.reset_stats()
    async with InferenceHTTPClient(legacy.url) as client:
        assert (await client.async_server_info()).tp_size == 1
        assert (await client.async_model_info()).model_type == "fake"
    assert requests(legacy)["/get_server_info"] == 1
    assert requests(legacy)["/get_model_info"] == 1


def test_info_on_a_server_without_either_route(server: FakeServer) -> None:
    server.app.faults.add(FaultSpec(path="/server_info", status=404))
    server.app.faults.add(FaultSpec(path="/get_server_info", status=404))
    with InferenceHTTPClient(server.url) as client, pytest.raises(NotFoundError):
        client.server_info()


def test_models(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        models = client.models()
    assert isinstance(models, ModelList)
    assert [m.id for m in models.data] == ["adm-model"]


@pytest.mark.anyio
async def test_models_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        models = await client.async_models()
    assert models.data[0].owned_by == "sglang"


# -- flush_cache -------------------------------------------------------------------------------


def test_flush_cache_idle(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        result = client.flush_cache()
    assert isinstance(result, FlushCacheResult)
    assert result.flushed is True and result.status_code == 200
    assert "flushed" in result.message.lower()


def test_flush_cache_while_running_is_not_flushed(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url, max_retries=3) as client:
        with client.generate("hi", sampling_params={"max_new_tokens": 100}, stream=True) as s:
            next(s)
            result = client.flush_cache()
        assert result.flushed is False
        assert result.status_code == 400
        assert "not flushed" in result.message.lower()
        assert requests(server)["/flush_cache"] == 1  # a refusal is not retried


@pytest.mark.anyio
async def test_flush_cache_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        assert (await client.async_flush_cache()).flushed is True
        stream = await client.async_generate(
            "hi", sampling_params={"max_new_tokens": 100}, stream=True
        )
        async with stream:
            await stream.__anext__()
            refused = await client.async_flush_cache()
        assert refused.flushed is False and refused.status_code == 400


# -- abort_request -----------------------------------------------------------------------------


def wait_running(srv: FakeServer, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not srv.app.running_requests:
        assert time.monotonic() < deadline, "the generation never started"
        time.sleep(0.005)


def test_abort_request_sync(server: FakeServer) -> None:
    out: dict[str, Any] = {}
    with InferenceHTTPClient(server.url) as client:

        def run() -> None:
            out["result"] = client.generate(
                "hi", sampling_params={"max_new_tokens": 100}, rid="abort-me"
            )

        thread = threading.Thread(target=run)
        started = time.monotonic()
        thread.start()
        wait_running(server)
        client.abort_request("abort-me")
        thread.join(5)
        assert not thread.is_alive()
    assert time.monotonic() - started < 1.5  # the full generation would take ~2 s
    result = out["result"]
    assert result.meta_info.finish_reason.type == "abort"
    assert result.meta_info.completion_tokens < 100
    assert server.app.stats["aborted"] == 1
    assert server.app.stats["last_bodies"]["/abort_request"] == {
        "rid": "abort-me",
        "abort_all": False,
    }


@pytest.mark.anyio
async def test_abort_request_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        stream = await client.async_generate(
            "hi", sampling_params={"max_new_tokens": 100}, stream=True, rid="abort-stream"
        )
        async with stream:
            await stream.__anext__()
            await client.async_abort_request("abort-stream")
            chunks = [c async for c in stream]
    assert chunks[-1].meta_info.finish_reason.type == "abort"
    assert server.app.stats["aborted"] == 1


def test_abort_all(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        streams = [
            client.generate("hi", sampling_params={"max_new_tokens": 100}, stream=True)
            for _ in range(2)
        ]
        for s in streams:
            next(s)
        client.abort_request(abort_all=True)
        for s in streams:
            with s:
                assert list(s)[-1].meta_info.finish_reason.type == "abort"
    assert server.app.stats["aborted"] == 2


# -- health_generate / wait_until_ready --------------------------------------------------------


def test_health_generate(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        assert client.health_generate() is True
        server.app.faults.add(FaultSpec(path="/health_generate", status=503))
        assert client.health_generate() is False
        server.app.faults.add(FaultSpec(path="/health_generate", hang=True))
        started = time.monotonic()
        assert client.health_generate(timeout=0.3) is False
        assert time.monotonic() - started < 2.0


@pytest.mark.anyio
async def test_health_generate_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        assert await client.async_health_generate() is True
        server.app.faults.add(FaultSpec(path="/health_generate", status=503))
        assert await client.async_health_generate() is False
        assert requests(server)["/health_generate"] == 2  # a failed check is not retried


def test_wait_until_ready_server(server: FakeServer) -> None:
    server.app.faults.add(FaultSpec(path="/health", status=503, times=2))
    with InferenceHTTPClient(server.url) as client:
        assert client.wait_until_ready(timeout=5, poll_interval=0.02) == "server"
    assert requests(server)["/readiness"] == 1
    assert requests(server)["/health"] == 3


@pytest.mark.anyio
async def test_wait_until_ready_server_async(anyio_backend: str, server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        assert await client.async_wait_until_ready(timeout=5, poll_interval=0.02) == "server"


def test_wait_until_ready_times_out(server: FakeServer) -> None:
    server.app.faults.add(FaultSpec(path="/health", status=503, times=None))
    with InferenceHTTPClient(server.url) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            client.wait_until_ready(timeout=0.4, poll_interval=0.05)
        assert time.monotonic() - started < 2.0


@pytest.mark.anyio
async def test_wait_until_ready_dead_port_async(anyio_backend: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with InferenceHTTPClient(f"http://127.0.0.1:{port}") as client:
        with anyio.fail_after(3):
            with pytest.raises(APITimeoutError):
                await client.async_wait_until_ready(timeout=0.3, poll_interval=0.05)
