"""Gateway administration against smg 1.13 (--enable-rl) and sglang-router 0.3.2, with fake
worker processes: every test runs on both gateways (the module-scoped ``gateway`` fixture)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from gateways import SERVED_MODEL, start_gateway

from rlinf_http import (
    APITimeoutError,
    InferenceHTTPClient,
    NotFoundError,
    Readiness,
    Worker,
    WorkerList,
    WorkerNotFoundError,
    WorkerRegistrationError,
)
from rlinf_http.testing import FakeWorkerProcess, RouterProcess, start_fake_worker


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    with start_fake_worker() as a, start_fake_worker() as b:
        yield [a, b]


@pytest.fixture(scope="module")
def router(gateway: str, workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    with start_gateway(gateway, [w.url for w in workers]) as r:
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
    gateway: str, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    with InferenceHTTPClient(router.url) as client:
        listing = client.list_workers()
        assert isinstance(listing, WorkerList)
        assert listing.total == 2
        assert urls(listing) == {w.url for w in workers}
        assert all(w.is_healthy and w.worker_type == "regular" for w in listing.workers)
        assert all(w.model_id == SERVED_MODEL for w in listing)
        if gateway == "smg":
            # smg lists what each worker serves (it routes by model) and its runtime
            for w in listing:
                assert w.models is not None and [m.id for m in w.models] == [SERVED_MODEL]
                assert w.models[0].context_length and w.runtime_type == "sglang"
                assert w.labels is not None and w.labels["served_model_name"] == SERVED_MODEL
        else:
            assert all(w.models is None and w.runtime_type is None for w in listing)

        ready = client.readiness()
        assert isinstance(ready, Readiness) and ready.ready
        assert ready.healthy_workers == 2 and ready.total_workers == 2

        assert client.wait_until_ready(timeout=10, poll_interval=0.05) == "router"

        # /server_info is a 404 on both gateways; the fallback /get_server_info is
        # sglang-router's own summary, and smg proxies it to a worker
        summary = client.server_info()
        if gateway == "smg":
            assert summary.served_model_name == SERVED_MODEL and summary.version
        else:
            assert summary["router_manager"] is True
            assert summary["workers_count"] == 2
        # /model_info is a 404 too; /get_model_info is proxied to a worker
        model = client.model_info()
        assert model.model_type == "fake" and model.is_generation is True

        flushed = client.flush_cache()
        assert flushed.flushed is True and flushed.status_code == 200
        assert flushed.details is not None and flushed.details["workers_flushed"] == 2

        assert [m.id for m in client.models().data] == [SERVED_MODEL]
        assert client.health_generate() is True
        assert client.generate("hi", sampling_params={"max_new_tokens": 3}).text


def test_add_and_remove_worker_sync(router: RouterProcess, spare: FakeWorkerProcess) -> None:
    with InferenceHTTPClient(router.url) as client:
        added = client.add_worker(spare.url + "/", timeout=30, poll_interval=0.05)
        assert isinstance(added, Worker)
        assert added.is_healthy and added.url == spare.url
        assert spare.url in urls(client.list_workers())
        assert client.readiness().healthy_workers == 3

        assert client.remove_worker(added.id, timeout=30, poll_interval=0.05) is True
        assert spare.url not in urls(client.list_workers())
        assert client.remove_worker(added.id, timeout=10) is False  # already gone

        # the URL as first argument, the pair of add_worker(url): resolved to the id
        again = client.add_worker(spare.url, timeout=30, poll_interval=0.05)
        assert again.is_healthy
        assert client.remove_worker(spare.url + "/", timeout=30, poll_interval=0.05) is True
        listing = client.list_workers()
        assert spare.url not in urls(listing) and listing.total == 2
        # a URL no worker has is not a quiet False: it names what is registered
        with pytest.raises(WorkerNotFoundError, match="registered: http://") as info:
            client.remove_worker(spare.url, timeout=10)
        assert isinstance(info.value, NotFoundError) and spare.url in str(info.value)
        with pytest.raises(WorkerNotFoundError):
            client.remove_worker(url=spare.url, timeout=10)
        assert client.list_workers().total == 2


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
        assert await client.async_remove_worker(spare.url, poll_interval=0.05) is True
        assert spare.url not in urls(await client.async_list_workers())
        assert (await client.async_model_info()).served_model_name == SERVED_MODEL
        assert (await client.async_flush_cache()).flushed is True


def test_add_dead_worker_times_out(router: RouterProcess) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    with InferenceHTTPClient(router.url) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="not healthy within"):
            client.add_worker(dead, timeout=0.5, poll_interval=0.1)
        assert time.monotonic() - started < 5.0
        # the router keeps serving with its two workers
        assert dead not in urls(client.list_workers())
        assert client.readiness().healthy_workers == 2


@pytest.fixture(scope="module")
def impatient(gateway: str, workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    """A gateway that gives up on a worker after 2 s (--worker-startup-timeout-secs),
    probing it every second (the default is every 30 s)."""
    give_up = ["--worker-startup-timeout-secs", "2", "--worker-startup-check-interval", "1"]
    with start_gateway(gateway, [workers[0].url], extra_args=give_up) as r:
        yield r


def test_add_worker_stops_when_the_gateway_gives_up(gateway: str, impatient: RouterProcess) -> None:
    # 0.3.2 reports a failed job with a message; smg 1.13 drops the worker (its
    # GET /workers/{id} turns into 404 while the job said "processing")
    dead = f"http://127.0.0.1:{closed_port()}"
    with InferenceHTTPClient(impatient.url, max_retries=0) as client:
        with pytest.raises(WorkerRegistrationError) as info:
            client.add_worker(dead, timeout=60, poll_interval=0.1)
        assert dead in str(info.value)
        if gateway == "smg":
            assert "gave up" in str(info.value)
        assert dead not in urls(client.list_workers())
        assert client.readiness().healthy_workers == 1
