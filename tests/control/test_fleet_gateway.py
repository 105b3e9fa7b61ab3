"""The Fleet through smg 1.13's RL control plane (``--enable-rl``): what only that path does.

Real smg, real fake-worker processes, no mock. A call through the gateway is
observably smg's: the workers see no user-agent and ``accept: */*`` (smg's
headers), and every worker of one fan-out sees the same ``x-request-id`` (one
request from the client, sent on by smg). The calls every fleet makes on both
paths are in ``test_fleet_router.py``.
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
    APITimeoutError,
    BadRequestError,
    CacheNotFlushedError,
    FleetError,
    InferenceHTTPClient,
    InvalidRequestError,
    NotFoundError,
    WeightUpdateError,
)
from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    smg_available,
    start_fake_worker,
)

pytestmark = pytest.mark.skipif(not smg_available(), reason="smg is not installed")

#: smg's own bound on one proxied engine call, short so a hung worker fails fast
CONTROL_TIMEOUT = ["--rl-control-timeout-secs", "2"]


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    slow = FakeConfig(itl_s=0.02)  # a 1000-token generation runs ~20 s unless aborted
    with (
        start_fake_worker(config=slow) as a,
        start_fake_worker(config=slow) as b,
        start_fake_worker(config=slow) as c,
    ):
        yield [a, b, c]


@pytest.fixture(scope="module")
def smg(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    urls = [w.url for w in workers]
    with launch_router(
        urls, gateway="smg", enable_rl=True, ready_timeout=60, extra_args=CONTROL_TIMEOUT
    ) as r:
        yield r


@pytest.fixture
def client(smg: RouterProcess) -> Iterator[InferenceHTTPClient]:
    with InferenceHTTPClient(smg.url, max_retries=0) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_faults(workers: list[FakeWorkerProcess]) -> Iterator[None]:
    yield
    for w in workers:
        clear_faults(w.url)


def request_ids(urls: list[str], path: str) -> set[str]:
    """The ``x-request-id`` each worker last saw on ``path`` (one id: one fan-out)."""
    return {fake_stats(u)["last_headers"][path]["x-request-id"] for u in urls}


# -- one fan-out per step ----------------------------------------------------------------


def test_each_call_is_one_fanout_sent_by_smg(client: InferenceHTTPClient) -> None:
    with client.fleet() as fleet:
        assert fleet.via == "gateway" and fleet.selector is None
        urls = fleet.urls
        assert fleet.pause_generation("retract").ok
        assert len(request_ids(urls, "/pause_generation")) == 1
        assert {sent_by(u, "/pause_generation") for u in urls} == {"smg"}
        assert all(control_state(u)["paused"] == "retract" for u in urls)
        # a plan of three steps: three fan-outs, one per step
        fleet.update_weights_from_tensor([b"\x01"], wrap_session=True, weight_version="w3")
        ids = [
            request_ids(urls, p)
            for p in ("/begin_weight_update", "/update_weights_from_tensor", "/end_weight_update")
        ]
        assert [len(i) for i in ids] == [1, 1, 1] and len(set().union(*ids)) == 3
        assert fleet.continue_generation().ok
        # versions are the workers' own (smg's listing keeps the registration one)
        assert dict(fleet.check_weight_version("w3")) == dict.fromkeys(urls, "w3")
        assert len(request_ids(urls, "/model_info")) == 1
        listing = httpx.get(client.base_url + "/v1/rl/workers", trust_env=False).json()
        assert {w["weight_version"] for w in listing["workers"]} == {"default"}


@pytest.mark.anyio
async def test_async_per_worker_bodies_are_sent_at_once(client: InferenceHTTPClient) -> None:
    # each worker its own rank offset: one fan-out per worker, all pending together
    async with await client.async_fleet() as fleet:
        offsets = {url: 1 + i for i, url in enumerate(fleet)}
        result = await fleet.async_init_weights_update_group("127.0.0.1", 29511, offsets, 4)
        assert result.ok
        seen = {u: control_state(u)["weight_update_groups"]["weight_update_group"] for u in fleet}
        assert {u: g["rank_offset"] for u, g in seen.items()} == offsets
        assert len(request_ids(fleet.urls, "/init_weights_update_group")) == 3
        assert (await fleet.async_destroy_weights_update_group()).ok


# -- choosing the path -------------------------------------------------------------------


def test_via_direct_and_auto_fallbacks(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    with client.fleet(via="direct") as direct:
        assert direct.via == "direct" and direct.worker_ids == {}
        assert direct.flush_cache().ok
        assert {sent_by(u, "/flush_cache") for u in direct} == {"client"}
    # a server is a fleet of one, direct
    with InferenceHTTPClient(workers[0].url) as server, server.fleet() as alone:
        assert alone.via == "direct" and alone.urls == [workers[0].url]
        with pytest.raises(NotFoundError, match="RL control plane") as info:
            server.fleet(via="gateway")
        assert info.value.status_code == 404
    with pytest.raises(InvalidRequestError, match="via must be"):
        client.fleet(via="smg")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="selector"):
        client.fleet(via="direct", selector="engine=sglang")


def test_smg_without_rl_mode(workers: list[FakeWorkerProcess]) -> None:
    with launch_router([workers[0].url], gateway="smg", ready_timeout=60) as plain:
        with InferenceHTTPClient(plain.url) as client:
            with client.fleet() as fleet:
                assert fleet.via == "direct" and fleet.urls == [workers[0].url]
            with pytest.raises(NotFoundError) as info:
                client.fleet(via="gateway")
            assert info.value.code == "unknown_url" and "--enable-rl" in str(info.value)


# -- selectors and subsets ---------------------------------------------------------------


def test_selector_is_passed_to_smg(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    one = workers[1].url
    with client.fleet(selector=f"url={one}") as fleet:
        assert fleet.urls == [one] and fleet.selector == f"url={one}"
        before = {w.url: requests_to(w.url, "/flush_cache") for w in workers}
        assert fleet.flush_cache().ok
        after = {w.url: requests_to(w.url, "/flush_cache") - before[w.url] for w in workers}
        assert after == {w.url: int(w.url == one) for w in workers}
    for refused, code in (("all", "invalid_selector"), ("engine=vllm", "no_workers_match")):
        with pytest.raises(BadRequestError) as info:
            client.fleet(selector=refused)
        assert info.value.code == code and info.value.message


def test_subset_goes_through_the_gateway(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    with client.fleet() as fleet:
        kept = [workers[0].url, workers[2].url]
        with fleet.without([workers[1].url]) as part:
            assert part.via == "gateway" and part.urls == [u for u in fleet if u in kept]
            before = {w.url: requests_to(w.url, "/abort_request") for w in workers}
            assert part.abort_request(abort_all=True).ok
            got = {w.url: requests_to(w.url, "/abort_request") - before[w.url] for w in workers}
            assert got == {w.url: int(w.url in kept) for w in workers}
            assert {sent_by(u, "/abort_request") for u in kept} == {"smg"}


# -- faults --------------------------------------------------------------------------------


def test_failed_load_keeps_the_engines_message(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    bad, flushless = workers[0].url, workers[1].url
    add_fault(bad, path="/update_weights_from_disk", weight_update_error="load")
    add_fault(flushless, path="/update_weights_from_disk", weight_update_error="flush")
    with client.fleet() as fleet, pytest.raises(FleetError) as info:
        fleet.update_weights_from_disk("/ckpt/gw", weight_version="gw")
    errors = info.value.errors
    assert set(errors) == {bad, flushless}  # every worker was tried
    load = errors[bad]
    assert type(load) is WeightUpdateError and not load.weights_updated
    assert load.status_code == 400 and "injected fault loading /ckpt/gw" in (load.message or "")
    assert bad in str(load)  # the error names the worker, not the gateway
    assert isinstance(errors[flushless], CacheNotFlushedError)
    assert errors[flushless].weights_updated  # type: ignore[attr-defined]
    assert info.value.result[workers[2].url].success  # type: ignore[union-attr]


def test_busy_flush_is_not_flushed(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    busy = workers[2].url
    add_fault(busy, path="/flush_cache", status=400, body={"message": "requests running"})
    with client.fleet() as fleet:
        result = fleet.flush_cache()
    assert {u: r.flushed for u, r in result.items()} == {  # type: ignore[union-attr]
        w.url: w.url != busy for w in workers
    }


def test_hung_worker_fails_alone_at_smgs_control_timeout(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    hung = workers[1].url
    add_fault(hung, path="/flush_cache", hang=True)
    with client.fleet() as fleet:  # no call_timeout: one fan-out, bounded by smg
        result = fleet.flush_cache(raise_on_error=False)
        assert len(request_ids(fleet.urls, "/flush_cache")) == 1
    error = result[hung]
    assert isinstance(error, APITimeoutError) and error.code == "upstream_timeout"
    assert hung in str(error)
    assert all(r.flushed for r in result.results.values()) and len(result.results) == 2


@pytest.mark.anyio
async def test_hung_worker_fails_alone_at_call_timeout(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    hung = workers[0].url
    add_fault(hung, path="/model_info", hang=True)
    async with await client.async_fleet(call_timeout=1) as fleet:
        with anyio.fail_after(30), pytest.raises(FleetError) as info:
            await fleet.async_model_info()
        # each worker had its own fan-out: the others' answers were not held up
        assert len(request_ids(fleet.urls, "/model_info")) == 3
    assert list(info.value.errors) == [hung]
    assert isinstance(info.value.errors[hung], APITimeoutError)
    assert len(info.value.result.results) == 2


def test_status_tells_dead_from_paused_through_the_gateway(
    workers: list[FakeWorkerProcess],
) -> None:
    doomed = start_fake_worker()
    try:
        urls = [workers[0].url, workers[1].url, doomed.url]
        with launch_router(urls, gateway="smg", enable_rl=True, ready_timeout=60) as r:
            with InferenceHTTPClient(r.url, max_retries=0) as client, client.fleet() as fleet:
                assert fleet.via == "gateway"
                fleet.client(workers[1].url).pause_generation("retract")
                doomed.stop()
                states = dict(fleet.status())
                assert states == {
                    workers[0].url: "ready",
                    workers[1].url: "not_ready",
                    doomed.url: "dead",
                }
                with pytest.raises(FleetError) as info:
                    fleet.abort_request(abort_all=True)
                error = info.value.errors[doomed.url]
                assert isinstance(error, APIConnectionError)
                assert error.code == "upstream_unreachable"
                assert list(info.value.errors) == [doomed.url]
                with fleet.without([doomed.url]) as alive:
                    assert alive.continue_generation().ok
                assert control_state(workers[1].url)["paused"] is None
    finally:
        doomed.stop()


# -- the rest of the fleet's calls through smg ---------------------------------------------


def test_lora_memory_and_abort_by_rid(
    client: InferenceHTTPClient, workers: list[FakeWorkerProcess]
) -> None:
    with client.fleet() as fleet:
        loaded = fleet.load_lora_adapter("sql", "/adapters/sql")
        assert [r.loaded_adapters for r in loaded.results.values()] == [
            {"sql": "/adapters/sql"}
        ] * 3
        assert {sent_by(u, "/load_lora_adapter") for u in fleet} == {"smg"}
        unloaded = fleet.unload_lora_adapter("sql")
        assert [r.loaded_adapters for r in unloaded.results.values()] == [{}] * 3
        with fleet.paused(mode="retract"):
            assert fleet.release_memory_occupation(["kv_cache"]).ok
            assert all(control_state(u)["released_memory_tags"] == ["kv_cache"] for u in fleet)
            assert fleet.resume_memory_occupation(["kv_cache"]).ok
        assert {sent_by(u, "/release_memory_occupation") for u in fleet} == {"smg"}

        # abort by rid reaches the worker running it (smg sends it to every worker)
        runner = workers[2].url
        done: list[Any] = []

        def generate() -> None:
            with InferenceHTTPClient(runner) as worker:
                done.append(
                    worker.generate("x", sampling_params={"max_new_tokens": 1000}, rid="long-1")
                )

        thread = threading.Thread(target=generate)
        thread.start()
        wait_until(lambda: running(runner) >= 1, "the generation")
        result = fleet.abort_request("long-1")
        thread.join(60)
        assert result.ok and set(result) == set(fleet)
        assert done and done[0].meta_info.finish_reason.type == "abort"


def test_alive_only_through_the_gateway(workers: list[FakeWorkerProcess]) -> None:
    doomed = start_fake_worker()
    try:
        urls = [workers[0].url, doomed.url]
        with launch_router(urls, gateway="smg", enable_rl=True, ready_timeout=60) as r:
            doomed.stop()
            with InferenceHTTPClient(r.url, max_retries=0) as client:
                with client.fleet(alive_only=True) as fleet:
                    assert fleet.via == "gateway" and fleet.urls == [workers[0].url]
                    assert fleet.flush_cache().ok
    finally:
        doomed.stop()
