"""Router administration against the real sglang-router with fake worker processes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from rlinf_http import APITimeoutError, InferenceHTTPClient, Readiness, Worker, WorkerList
from rlinf_http.testing import (
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    start_fake_worker,
)

pytestmark = pytest.mark.skipif(
    not router_available(), reason="sglang-router (with its Rust extension) is not installed"
)


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    with start_fake_worker() as a, start_fake_worker() as b:
        yield [a, b]


@pytest.fixture(scope="module")
def router(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    with launch_router([w.url for w in workers], ready_timeout=60) as r:
        yield r


@pytest.fixture(scope="module")
def spare() -> Iterator[FakeWorkerProcess]:
    with start_fake_worker() as w:
        yield w


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def urls(listing: WorkerList) -> set[str]:
    return {w.url or "" for w in listing.workers}


def test_list_workers_readiness_info(
    router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    with InferenceHTTPClient(router.url) as client:
        listing = client.list_workers()
        assert isinstance(listing, WorkerList)
        assert listing.total == 2
        assert urls(listing) == {w.url for w in workers}
        assert all(w.is_healthy and w.worker_type == "regular" for w in listing.workers)

        ready = client.readiness()
        assert isinstance(ready, Readiness) and ready.ready
        assert ready.healthy_workers == 2 and ready.total_workers == 2

        assert client.wait_until_ready(timeout=10, poll_interval=0.05) == "router"

        # /server_info is a 404 on the router: the fallback gets its own summary
        summary = client.server_info()
        assert summary["router_manager"] is True
        assert summary["workers_count"] == 2
        # /model_info is a 404 too; /get_model_info is proxied to a worker
        model = client.model_info()
        assert model.model_type == "fake" and model.is_generation is True

        flushed = client.flush_cache()
        assert flushed.flushed is True and flushed.status_code == 200
        assert flushed.details is not None and flushed.details["workers_flushed"] == 2

        assert [m.id for m in client.models().data] == ["fake-model"]
        assert client.health_generate() is True
        assert client.generate("hi", sampling_params={"max_new_tokens": 3}).text


def test_add_and_remove_worker_sync(router: RouterProcess, spare: FakeWorkerProcess) -> None:
    with InferenceHTTPClient(router.url) as client:
        added = client.add_worker(spare.url + "/", timeout=30, poll_interval=0.05)
        assert isinstance(added, Worker)
        assert added.is_healthy and added.url == spare.url
        assert spare.url in urls(client.list_workers())
        assert client.readiness().healthy_workers == 3

        assert client.remove_worker(added.id, timeout=10, poll_interval=0.05) is True
        assert spare.url not in urls(client.list_workers())
        assert client.remove_worker(added.id, timeout=10) is False  # already gone

        again = client.add_worker(spare.url, timeout=30, poll_interval=0.05)
        assert again.is_healthy
        assert client.remove_worker(url=spare.url + "/", timeout=10, poll_interval=0.05) is True
        listing = client.list_workers()
        assert spare.url not in urls(listing) and listing.total == 2
        assert client.remove_worker(url=spare.url, timeout=10) is False


@pytest.mark.anyio
async def test_add_and_remove_worker_async(
    anyio_backend: str, router: RouterProcess, spare: FakeWorkerProcess
) -> None:
    async with InferenceHTTPClient(router.url) as client:
        assert await client.async_wait_until_ready(timeout=10, poll_interval=0.05) == "router"
        added = await client.async_add_worker(spare.url, timeout=30, poll_interval=0.05)
        assert added.is_healthy and added.url == spare.url
        assert (await client.async_readiness()).healthy_workers == 3
        assert spare.url in urls(await client.async_list_workers())
        assert await client.async_remove_worker(url=spare.url, poll_interval=0.05) is True
        assert spare.url not in urls(await client.async_list_workers())
        assert (await client.async_model_info()).served_model_name == "fake-model"
        assert (await client.async_flush_cache()).flushed is True


def test_add_dead_worker_times_out(router: RouterProcess) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    with InferenceHTTPClient(router.url) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="not healthy within"):
            client.add_worker(dead, timeout=1.0, poll_interval=0.1)
        assert time.monotonic() - started < 5.0
        # the router keeps serving with its two workers
        assert dead not in urls(client.list_workers())
        assert client.readiness().healthy_workers == 2
