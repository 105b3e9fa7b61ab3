"""The Fleet through both gateways in front of fake worker processes: both paths.

``smg-rl``: smg 1.13 with ``--enable-rl``. The fleet takes the gateway path:
workers from ``GET /v1/rl/workers``, each call a ``/v1/rl/engine/...`` fan-out
sent by smg (the workers see smg's headers, not the client's).
``sglang-router``: 0.3.2 forwards no control endpoint (404), so every call goes
from the client to each worker it discovered with ``GET /workers`` (the direct
path). The workers are separate processes; their request counts and faults are
reached over HTTP (``/_fake/stats``, ``/_fake/faults``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from control_helpers import (
    add_fault,
    clear_faults,
    control_state,
    fake_stats,
    requests_to,
    running,
    sent_by,
    wait_until,
)

from rlinf_http import (
    APIConnectionError,
    CacheNotFlushedError,
    Fleet,
    FleetError,
    FleetResult,
    InferenceHTTPClient,
    InternalServerError,
    ModelInfo,
    NotFoundError,
    WeightUpdateError,
    WeightVersionMismatchError,
    Worker,
)
from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
    start_fake_worker,
)

GATEWAYS = [
    pytest.param(
        "smg-rl",
        marks=pytest.mark.skipif(not smg_available(), reason="smg is not installed"),
    ),
    pytest.param(
        "sglang-router",
        marks=pytest.mark.skipif(not router_available(), reason="sglang-router is not installed"),
    ),
]
#: the path each gateway's fleet takes
VIA = {"smg-rl": "gateway", "sglang-router": "direct"}


def launch(gateway: str, urls: list[str], **kwargs: Any) -> RouterProcess:
    if gateway == "smg-rl":
        return launch_router(urls, gateway="smg", enable_rl=True, ready_timeout=60, **kwargs)
    return launch_router(urls, ready_timeout=60, **kwargs)


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


@pytest.fixture(scope="module", params=GATEWAYS)
def gateway(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def router(workers: list[FakeWorkerProcess], gateway: str) -> Iterator[RouterProcess]:
    with launch(gateway, [w.url for w in workers]) as r:
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


def test_discovery(router: RouterProcess, urls: set[str], gateway: str) -> None:
    with InferenceHTTPClient(router.url) as client:
        listing = client.list_workers()
        assert len(listing) == 3  # issue 9, item 11: a WorkerList is a sequence
        assert {w.url for w in listing} == urls
        assert isinstance(listing[0], Worker)
        with client.fleet() as fleet:
            assert isinstance(fleet, Fleet) and len(fleet) == 3
            assert fleet.via == VIA[gateway]
            assert set(fleet) == urls
            if fleet.via == "direct":
                assert [w.url for w in listing] == fleet.urls  # the router's order
            else:  # the order of smg's RL listing, with smg's worker ids
                rl = httpx.get(router.url + "/v1/rl/workers", trust_env=False).json()
                assert fleet.worker_ids == {w["url"]: w["id"] for w in rl["workers"]}
                assert fleet.urls == [w["url"] for w in rl["workers"]]
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
        add_fault(u, path="/flush_cache", delay_s=1.5)
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
        add_fault(u, path="/flush_cache", delay_s=1.5)
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
async def test_one_worker_down(workers: list[FakeWorkerProcess], gateway: str) -> None:
    doomed = start_fake_worker()
    try:
        with launch(gateway, [workers[0].url, doomed.url]) as router:
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


# -- the RL control plane on every worker -----------------------------------------------


def test_weight_sync_idiom(client: InferenceHTTPClient, urls: set[str]) -> None:
    fleet = client.fleet()
    with fleet.paused(mode="retract") as paused:
        assert all(control_state(u)["paused"] == "retract" for u in urls)
        result = paused.update_weights_from_disk("/ckpt/step-100", weight_version="100")
        assert result.ok and set(result) == urls
    assert all(control_state(u)["paused"] is None for u in urls)
    assert dict(fleet.check_weight_version("100")) == dict.fromkeys(urls, "100")
    assert {u: info.model_path for u, info in fleet.model_info().results.items()} == (
        dict.fromkeys(urls, "/ckpt/step-100")
    )
    fleet.close()


@pytest.mark.anyio
async def test_async_weight_sync_idiom(client: InferenceHTTPClient, urls: set[str]) -> None:
    async with (await client.async_fleet()).async_paused(mode="abort") as fleet:
        assert all(control_state(u)["paused"] == "abort" for u in urls)
        await fleet.async_update_weights_from_disk("/ckpt/step-200", weight_version="200")
    assert all(control_state(u)["paused"] is None for u in urls)
    versions = await fleet.async_check_weight_version("200")
    assert dict(versions) == dict.fromkeys(urls, "200")
    await fleet.aclose()


def test_paused_continues_after_an_exception(client: InferenceHTTPClient, urls: set[str]) -> None:
    fleet = client.fleet()
    with pytest.raises(RuntimeError, match="trainer crashed"):
        with fleet.paused(mode="in_place"):
            assert all(control_state(u)["paused"] == "in_place" for u in urls)
            raise RuntimeError("trainer crashed")
    assert all(control_state(u)["paused"] is None for u in urls)
    # generation works again through the router
    assert client.generate("x", sampling_params={"max_new_tokens": 1}).text == " tok0"
    fleet.close()


@pytest.mark.anyio
async def test_async_paused_continues_after_an_exception(
    client: InferenceHTTPClient, urls: set[str]
) -> None:
    fleet = await client.async_fleet()
    with pytest.raises(LookupError):
        async with fleet.async_paused(mode="retract"):
            raise LookupError("no batch")
    assert all(control_state(u)["paused"] is None for u in urls)
    with anyio.move_on_after(0.2):  # cancelled inside the block: still continued
        async with fleet.async_paused():
            await anyio.sleep_forever()
    assert all(control_state(u)["paused"] is None for u in urls)
    out = await client.async_generate("x", sampling_params={"max_new_tokens": 1})
    assert out.text == " tok0"
    await fleet.aclose()


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_failed_update_on_one_worker(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess], flavor: str
) -> None:
    bad = workers[2].url
    add_fault(bad, path="/update_weights_from_disk", weight_update_error="load")
    fleet = client.fleet()
    version = f"bad-{flavor}"
    with pytest.raises(FleetError) as info:
        if flavor == "sync":
            fleet.update_weights_from_disk("/ckpt/x", weight_version=version)
        else:
            anyio.run(
                lambda: fleet.async_update_weights_from_disk("/ckpt/x", weight_version=version)
            )
    assert list(info.value.errors) == [bad]
    error = info.value.errors[bad]
    assert isinstance(error, WeightUpdateError) and not error.weights_updated
    assert set(info.value.result.results) == {w.url for w in workers} - {bad}
    with pytest.raises(WeightVersionMismatchError) as mismatch:
        fleet.check_weight_version(version)
    assert list(mismatch.value.mismatched) == [bad]
    assert bad in str(mismatch.value)
    fleet.close()


def test_flush_failure_on_one_worker(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[0].url
    add_fault(bad, path="/update_weights_from_disk", weight_update_error="flush")
    fleet = client.fleet()
    result = fleet.update_weights_from_disk("/ckpt/y", weight_version="y", raise_on_error=False)
    assert isinstance(result[bad], CacheNotFlushedError)
    assert result[bad].weights_updated  # type: ignore[union-attr]
    # the weights were swapped everywhere: no worker needs a second load
    assert dict(fleet.check_weight_version("y")) == {w.url: "y" for w in workers}
    fleet.close()


def test_nccl_group_and_session_on_every_worker(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    fleet = client.fleet()
    offsets = {url: 1 + i for i, url in enumerate(fleet)}
    assert fleet.init_weights_update_group("127.0.0.1", 29500, offsets, 4, group_name="rl").ok
    groups = {u: control_state(u)["weight_update_groups"]["rl"]["rank_offset"] for u in fleet}
    assert groups == offsets
    with fleet.paused(mode="retract"), fleet.weight_update_session() as session:
        assert all(control_state(u)["weight_update_session"] for u in fleet)
        session.update_weights_from_distributed(
            ["w"], ["bfloat16"], [[4, 4]], group_name="rl", weight_version="nccl-1"
        )
    assert all(not control_state(u)["weight_update_session"] for u in fleet)
    fleet.check_weight_version("nccl-1")
    assert fleet.destroy_weights_update_group("rl").ok
    fleet.close()


@pytest.mark.anyio
async def test_async_memory_loads_and_version(client: InferenceHTTPClient, urls: set[str]) -> None:
    async with await client.async_fleet() as fleet:
        async with fleet.async_paused(mode="retract"):
            assert (await fleet.async_release_memory_occupation(["kv_cache"])).ok
            assert all(control_state(u)["released_memory_tags"] == ["kv_cache"] for u in urls)
            assert (await fleet.async_resume_memory_occupation(["kv_cache"])).ok
        loads = await fleet.async_loads("core")
        assert set(loads) == urls and all(lo.num_running_reqs == 0 for lo in loads.results.values())
        await fleet.async_update_weight_version("label-3", abort_all_requests=False)
        assert dict(await fleet.async_weight_versions()) == dict.fromkeys(urls, "label-3")
        async with fleet.async_weight_update_session():
            await fleet.async_update_weights_from_tensor([b"\x80payload"], weight_version="t")
        await fleet.async_check_weight_version("t")
        assert dict(await fleet.async_health()) == dict.fromkeys(urls, True)


# -- every Fleet call, sync and async, through the router -------------------------------


def steps(fleet: Fleet, tag: str) -> list[tuple[str, tuple[Any, ...], dict[str, Any], Any]]:
    """(call, args, kwargs, check of one worker's /_fake/state after it) in loop order."""
    offsets = [1 + i for i in range(len(fleet))]
    group = f"g-{tag}"
    return [
        ("pause_generation", ("retract",), {}, lambda s: s["paused"] == "retract"),
        ("release_memory_occupation", (["kv_cache"],), {}, lambda s: s["released_memory_tags"]),
        ("resume_memory_occupation", (["kv_cache"],), {}, lambda s: not s["released_memory_tags"]),
        (
            "update_weights_from_disk",
            (f"/ckpt/{tag}",),
            {"weight_version": f"{tag}-disk"},
            lambda s: s["model_path"] == f"/ckpt/{tag}" and s["weight_version"] == f"{tag}-disk",
        ),
        (
            "init_weights_update_group",
            ("127.0.0.1", 29500, offsets, len(fleet) + 1),
            {"group_name": group},
            lambda s: group in s["weight_update_groups"],
        ),
        ("begin_weight_update", (), {}, lambda s: s["weight_update_session"]),
        (
            "update_weights_from_distributed",
            (["w"], ["float32"], [[2]]),
            {"group_name": group, "weight_version": f"{tag}-nccl"},
            lambda s: s["weight_version"] == f"{tag}-nccl",
        ),
        (
            "update_weights_from_tensor",
            ([b"\x80payload"],),
            {"weight_version": f"{tag}-tensor"},
            lambda s: s["weight_version"] == f"{tag}-tensor",
        ),
        ("end_weight_update", (), {}, lambda s: not s["weight_update_session"]),
        (
            "destroy_weights_update_group",
            (group,),
            {},
            lambda s: group not in s["weight_update_groups"],
        ),
        ("continue_generation", (), {}, lambda s: s["paused"] is None),
        (
            "update_weight_version",
            (f"{tag}-label",),
            {"abort_all_requests": False},
            lambda s: s["weight_version"] == f"{tag}-label",
        ),
        ("weight_versions", (), {}, None),
        ("check_weight_version", (f"{tag}-label",), {}, None),
        ("loads", ("all",), {}, None),
        ("flush_cache", (), {}, None),
        ("health", (), {}, None),
        ("server_info", (), {}, None),
        ("model_info", (), {}, None),
        ("abort_request", (), {"abort_all": True}, None),
    ]


#: the worker path each call ends with (the others: "/" + its name)
PATHS = {
    "weight_versions": "/model_info",
    "check_weight_version": "/model_info",
    "loads": "/v1/loads",
    "health": "/health",
}


def check(name: str, result: Any, fleet: Fleet, state_ok: Any) -> None:
    assert isinstance(result, FleetResult), name
    assert set(result) == set(fleet) and result.ok, (name, result)
    # observably through the gateway, or from the client itself
    senders = {sent_by(u, PATHS.get(name, "/" + name)) for u in fleet}
    assert senders == {"smg" if fleet.via == "gateway" else "client"}, name
    if state_ok is not None:
        assert all(state_ok(control_state(u)) for u in fleet), name
    if name in ("weight_versions", "check_weight_version"):
        assert len(set(result.values())) == 1  # every worker serves the same version


def test_every_fleet_call_sync(client: InferenceHTTPClient) -> None:
    with client.fleet() as fleet:
        for name, args, kwargs, state_ok in steps(fleet, "sync"):
            check(name, getattr(fleet, name)(*args, **kwargs), fleet, state_ok)


@pytest.mark.anyio
async def test_every_fleet_call_async(client: InferenceHTTPClient, anyio_backend: str) -> None:
    async with await client.async_fleet() as fleet:
        for name, args, kwargs, state_ok in steps(fleet, anyio_backend):
            result = await getattr(fleet, "async_" + name)(*args, **kwargs)
            check(name, result, fleet, state_ok)
