"""The Fleet through the real sglang-router 0.3.2 in front of fake worker processes.

The router forwards no control endpoint (404), so every call here goes from the
client to each worker it discovered with ``GET /workers``. The workers are
separate processes; their request counts and faults are reached over HTTP
(``/_fake/stats``, ``/_fake/faults``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from control_helpers import add_fault, clear_faults, fake_stats, requests_to, running, wait_until

from rlinf_http import (
    APIConnectionError,
    Fleet,
    FleetError,
    FleetResult,
    InferenceHTTPClient,
    InternalServerError,
    ModelInfo,
    NotFoundError,
    Worker,
)
from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    start_fake_worker,
)

pytestmark = pytest.mark.skipif(
    not router_available(), reason="sglang-router (with its Rust extension) is not installed"
)

#: 20 ms per token: a 1000-token generation runs ~20 s unless it is aborted.
SLOW = FakeConfig(itl_s=0.02)


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    with (
        start_fake_worker(config=SLOW) as a,
        start_fake_worker(config=SLOW) as b,
        start_fake_worker(config=SLOW) as c,
    ):
        yield [a, b, c]


@pytest.fixture(scope="module")
def router(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    with launch_router([w.url for w in workers], ready_timeout=60) as r:
        yield r


@pytest.fixture(scope="module")
def urls(workers: list[FakeWorkerProcess]) -> set[str]:
    return {w.url for w in workers}


@pytest.fixture
def client(router: RouterProcess) -> Iterator[InferenceHTTPClient]:
    with InferenceHTTPClient(router.url, max_retries=0) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_faults(workers: list[FakeWorkerProcess]) -> Iterator[None]:
    yield
    for w in workers:
        clear_faults(w.url)


# -- discovery --------------------------------------------------------------------------


def test_discovery(router: RouterProcess, urls: set[str]) -> None:
    with InferenceHTTPClient(router.url) as client:
        listing = client.list_workers()
        assert len(listing) == 3  # issue 9, item 11: a WorkerList is a sequence
        assert {w.url for w in listing} == urls
        assert isinstance(listing[0], Worker)
        with client.fleet() as fleet:
            assert isinstance(fleet, Fleet) and len(fleet) == 3
            assert set(fleet) == urls
            assert [w.url for w in listing] == fleet.urls  # the router's order
            assert {fleet.client(u).base_url for u in fleet} == urls
        with client.fleet("regular") as regular:
            assert set(regular) == urls
        with pytest.raises(FleetError, match="no workers"):
            client.fleet("decode")
        # the router itself refuses control calls: that is why the fleet exists
        with pytest.raises(NotFoundError):
            client.abort_request(abort_all=True)


@pytest.mark.anyio
async def test_async_discovery(router: RouterProcess, urls: set[str]) -> None:
    async with InferenceHTTPClient(router.url) as client:
        async with await client.async_fleet() as fleet:
            assert set(fleet) == urls
            infos = await fleet.async_model_info()
            assert set(infos) == urls
            assert all(isinstance(i, ModelInfo) and i.model_type == "fake" for i in infos.values())


# -- broadcast --------------------------------------------------------------------------


def test_broadcast_reaches_every_worker(client: InferenceHTTPClient, urls: set[str]) -> None:
    before = {u: requests_to(u, "/server_info") for u in urls}
    with client.fleet() as fleet:
        infos = fleet.server_info()
        assert isinstance(infos, FleetResult) and infos.ok and set(infos) == urls
        assert dict(fleet.health()) == dict.fromkeys(urls, True)
        flushed = fleet.flush_cache()
        assert all(r.flushed for r in flushed.results.values())
    assert {u: requests_to(u, "/server_info") - before[u] for u in urls} == dict.fromkeys(urls, 1)


def test_broadcast_is_concurrent(client: InferenceHTTPClient, urls: set[str]) -> None:
    # Each worker holds its /flush_cache until the test has seen all three
    # in flight at once: only a concurrent broadcast gets there.
    before = {u: requests_to(u, "/flush_cache") for u in urls}
    for u in urls:
        add_fault(u, path="/flush_cache", delay_s=3.0)
    fleet = client.fleet()
    done: list[FleetResult[Any]] = []
    thread = threading.Thread(target=lambda: done.append(fleet.flush_cache()))
    thread.start()
    try:
        wait_until(
            lambda: (
                all(requests_to(u, "/flush_cache") > before[u] for u in urls)
                and all(fake_stats(u)["in_flight"] >= 1 for u in urls)
            ),
            "the flush to be in flight on every worker",
        )
    finally:
        thread.join(60)
    assert done and done[0].ok and set(done[0]) == urls
    fleet.close()


@pytest.mark.anyio
async def test_async_broadcast_is_concurrent(client: InferenceHTTPClient, urls: set[str]) -> None:
    before = {u: requests_to(u, "/flush_cache") for u in urls}
    for u in urls:
        add_fault(u, path="/flush_cache", delay_s=3.0)
    seen_together = False
    async with await client.async_fleet() as fleet:
        async with anyio.create_task_group() as tg:
            results: list[FleetResult[Any]] = []

            async def flush() -> None:
                results.append(await fleet.async_flush_cache())

            tg.start_soon(flush)
            with anyio.fail_after(30):
                while not seen_together:
                    stats = [await anyio.to_thread.run_sync(fake_stats, u) for u in urls]
                    seen_together = all(
                        s["requests"].get("/flush_cache", 0) > before[u] and s["in_flight"] >= 1
                        for u, s in zip(urls, stats, strict=True)
                    )
                    await anyio.sleep(0.01)
        assert results[0].ok and set(results[0]) == urls


# -- abort everywhere -------------------------------------------------------------------


def test_abort_all_reaches_every_worker(client: InferenceHTTPClient, urls: set[str]) -> None:
    outputs: dict[str, Any] = {}

    def generate(url: str) -> None:
        with InferenceHTTPClient(url) as worker:
            outputs[url] = worker.generate("x", sampling_params={"max_new_tokens": 1000})

    threads = [threading.Thread(target=generate, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    wait_until(lambda: all(running(u) >= 1 for u in urls), "generations")
    with client.fleet() as fleet:
        result = fleet.abort_request(abort_all=True)
    for t in threads:
        t.join(60)
    assert result.ok and dict(result) == dict.fromkeys(urls)
    assert set(outputs) == urls
    for out in outputs.values():
        assert out.meta_info.finish_reason is not None
        assert out.meta_info.finish_reason.type == "abort"
        assert out.meta_info.completion_tokens < 1000


@pytest.mark.anyio
async def test_async_abort_all_reaches_every_worker(router: RouterProcess, urls: set[str]) -> None:
    outputs: dict[str, Any] = {}
    async with InferenceHTTPClient(router.url) as client:
        fleet = await client.async_fleet()

        async def generate(url: str) -> None:
            outputs[url] = await fleet.client(url).async_generate(
                "x", sampling_params={"max_new_tokens": 1000}
            )

        async with anyio.create_task_group() as tg:
            for u in urls:
                tg.start_soon(generate, u)
            with anyio.fail_after(30):
                while not await anyio.to_thread.run_sync(
                    lambda: all(running(u) >= 1 for u in urls)
                ):
                    await anyio.sleep(0.01)
            result = await fleet.async_abort_request(abort_all=True)
        await fleet.aclose()
    assert result.ok and set(result) == urls
    assert {u: o.meta_info.finish_reason.type for u, o in outputs.items()} == dict.fromkeys(
        urls, "abort"
    )


# -- partial failure --------------------------------------------------------------------


def test_one_worker_failing(client: InferenceHTTPClient, workers: list[FakeWorkerProcess]) -> None:
    bad = workers[1].url
    add_fault(bad, path="/model_info", status=500, body={"error": {"message": "boom"}}, times=None)
    before = {w.url: requests_to(w.url, "/model_info") for w in workers}
    fleet = client.fleet()
    with pytest.raises(FleetError) as info:
        fleet.model_info()
    exc = info.value
    assert list(exc.errors) == [bad] and isinstance(exc.errors[bad], InternalServerError)
    assert "boom" in str(exc)
    assert set(exc.result.results) == {w.url for w in workers} - {bad}
    # every worker was asked, the failing one included
    assert all(requests_to(w.url, "/model_info") == before[w.url] + 1 for w in workers)

    result = fleet.model_info(raise_on_error=False)
    assert isinstance(result[bad], InternalServerError) and len(result.results) == 2
    fleet.close()


@pytest.mark.anyio
async def test_one_worker_down(workers: list[FakeWorkerProcess]) -> None:
    doomed = start_fake_worker()
    try:
        with launch_router([workers[0].url, doomed.url], ready_timeout=60) as router:
            client = InferenceHTTPClient(router.url, max_retries=0)
            fleet = await client.async_fleet()
            assert set(fleet) == {workers[0].url, doomed.url}
            doomed.stop()
            with pytest.raises(FleetError) as info:
                await fleet.async_abort_request(abort_all=True)
            assert list(info.value.errors) == [doomed.url]
            assert isinstance(info.value.errors[doomed.url], APIConnectionError)
            assert info.value.result[workers[0].url] is None  # the live one was served
            # the sync path tries every worker the same way
            result = fleet.health()
            assert result[doomed.url] is False and result[workers[0].url] is True
            await fleet.aclose()
            await client.aclose()
    finally:
        doomed.stop()
