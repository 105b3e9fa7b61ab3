"""Control calls and the Fleet against mocked transports: what goes on the wire, what comes back.

One ``httpx.MockTransport`` plays a router (``http://router.test``) and its
workers (``http://w<i>.test``); the clients get it as their ``http_client`` /
``async_http_client``, which the Fleet's worker clients inherit.
"""

from __future__ import annotations

import base64
import json
import pickle
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from rlinf_http import (
    AuthenticationError,
    CacheNotFlushedError,
    Fleet,
    FleetError,
    FleetResult,
    GenerationControlResult,
    InferenceHTTPClient,
    InvalidRequestError,
    Loads,
    NotFoundError,
    RetryPolicy,
    WeightUpdateError,
    WeightUpdateResult,
    WeightVersionMismatchError,
    WeightVersionResult,
)

ROUTER = "http://router.test"
OK = {"success": True, "message": "Success"}


class Cluster:
    """A mocked router and workers; records every request and answers like sglang."""

    def __init__(self, workers: int = 3, *, dp_ranks: int = 1) -> None:
        self.urls = [f"http://w{i}.test" for i in range(workers)]
        self.dp_ranks = dp_ranks
        self.seen: list[tuple[str, str, str, Any, httpx.Headers]] = []
        self.replies: dict[tuple[str, str], tuple[int, Any]] = {}  # (url, path) -> reply
        self.versions = dict.fromkeys(self.urls, "0")
        self.lock = threading.Lock()
        self.gate: Callable[[str, str], None] | None = None  # called before answering (sync)

    def handler(self, request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}"
        path = request.url.raw_path.decode()
        body = json.loads(request.content) if request.content else None
        with self.lock:
            self.seen.append((origin, request.method, path, body, request.headers))
        if self.gate is not None:
            self.gate(origin, path)
        if origin == ROUTER:
            if path == "/workers":
                listing = [
                    {
                        "id": f"{u}-{r}",
                        "url": u + (f"@{r}" if self.dp_ranks > 1 else ""),
                        "worker_type": "decode" if i == len(self.urls) - 1 else "regular",
                        "is_healthy": True,
                    }
                    for i, u in enumerate(self.urls)
                    for r in range(self.dp_ranks)
                ]
                return httpx.Response(200, json={"workers": listing, "total": len(listing)})
            return httpx.Response(404)  # the router forwards no control endpoint
        if path == "/workers":
            return httpx.Response(404, json={"detail": "Not Found"})  # sglang has no /workers
        status, payload = self.replies.get((origin, path.split("?")[0]), (200, None))
        if payload is None:
            payload = self.default(origin, path, body)
        if isinstance(payload, bytes):
            return httpx.Response(status, content=payload)
        return httpx.Response(status, json=payload)

    def default(self, origin: str, path: str, body: Any) -> Any:
        if path == "/model_info":
            return {"model_path": "/m", "weight_version": self.versions[origin]}
        if path == "/update_weights_from_disk":
            if body.get("weight_version") is not None:
                self.versions[origin] = body["weight_version"]
            return {**OK, "num_paused_requests": 0}
        if path in ("/pause_generation", "/continue_generation"):
            return {"message": "ok", "status": "ok"}
        if path.startswith("/v1/loads"):
            return {"loads": [{"dp_rank": 0, "num_running_reqs": 1, "num_waiting_reqs": 2}]}
        if path in ("/abort_request", "/health"):
            return b""
        if path.endswith("_memory_occupation"):
            return b"null"
        if path == "/update_weight_version":
            self.versions[origin] = body["new_version"]
            return {**OK, "new_version": body["new_version"]}
        return OK

    def calls(self, path: str) -> list[tuple[str, Any]]:
        return [(o, b) for o, _, p, b, _ in self.seen if p.split("?")[0] == path]

    def origins(self, path: str) -> list[str]:
        return sorted(o for o, _ in self.calls(path))

    def client(self, base_url: str = ROUTER, **options: Any) -> InferenceHTTPClient:
        transport = httpx.MockTransport(self.handler)
        return InferenceHTTPClient(
            base_url,
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
            **options,
        )


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


# -- one server -------------------------------------------------------------------------

CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], str, Any, type]] = [
    (
        "update_weights_from_disk",
        ("/ckpt/1",),
        {"weight_version": "1", "load_format": "auto", "recapture_cuda_graph": True},
        "/update_weights_from_disk",
        {
            "recapture_cuda_graph": True,
            "model_path": "/ckpt/1",
            "abort_all_requests": False,
            "flush_cache": True,
            "load_format": "auto",
            "weight_version": "1",
        },
        WeightUpdateResult,
    ),
    (
        "init_weights_update_group",
        ("127.0.0.1", 29500, 1, 2),
        {"group_name": "g", "backend": "gloo"},
        "/init_weights_update_group",
        {
            "master_address": "127.0.0.1",
            "master_port": 29500,
            "rank_offset": 1,
            "world_size": 2,
            "group_name": "g",
            "backend": "gloo",
        },
        WeightUpdateResult,
    ),
    (
        "destroy_weights_update_group",
        ("g",),
        {},
        "/destroy_weights_update_group",
        {"group_name": "g"},
        WeightUpdateResult,
    ),
    (
        "begin_weight_update",
        (),
        {},
        "/begin_weight_update",
        {"selector": "all"},
        WeightUpdateResult,
    ),
    ("end_weight_update", (), {}, "/end_weight_update", {}, WeightUpdateResult),
    (
        "update_weights_from_distributed",
        (["w"], ["bfloat16"], [[2, 2]]),
        {"weight_version": "2"},
        "/update_weights_from_distributed",
        {
            "flush_cache": True,
            "abort_all_requests": False,
            "selector": "all",
            "weight_version": "2",
            "names": ["w"],
            "dtypes": ["bfloat16"],
            "shapes": [[2, 2]],
            "group_name": "weight_update_group",
        },
        WeightUpdateResult,
    ),
    (
        "update_weights_from_tensor",
        ([b"\x00\x01"],),
        {"load_format": "direct"},
        "/update_weights_from_tensor",
        {
            "flush_cache": True,
            "abort_all_requests": False,
            "selector": "all",
            "load_format": "direct",
            "serialized_named_tensors": ["AAE="],
        },
        WeightUpdateResult,
    ),
    (
        "update_weight_version",
        ("5",),
        {"abort_all_requests": False},
        "/update_weight_version",
        {"new_version": "5", "abort_all_requests": False},
        WeightVersionResult,
    ),
    (
        "pause_generation",
        ("in_place",),
        {},
        "/pause_generation",
        {"mode": "in_place"},
        GenerationControlResult,
    ),
    (
        "continue_generation",
        (),
        {"torch_empty_cache": False},
        "/continue_generation",
        {"torch_empty_cache": False},
        GenerationControlResult,
    ),
    (
        "release_memory_occupation",
        (["kv_cache"],),
        {},
        "/release_memory_occupation",
        {"tags": ["kv_cache"]},
        type(None),
    ),
    ("resume_memory_occupation", (), {}, "/resume_memory_occupation", {}, type(None)),
    ("loads", ("core",), {}, "/v1/loads", None, Loads),
]


IDLE = {"loads": [{"dp_rank": 0, "num_running_reqs": 0, "num_waiting_reqs": 0}]}


def _idle_for_release(cluster: Cluster, name: str) -> None:
    """release_memory_occupation first waits for an idle engine (``/v1/loads``)."""
    if name == "release_memory_occupation":
        for url in cluster.urls:
            cluster.replies[(url, "/v1/loads")] = (200, IDLE)


@pytest.mark.parametrize(("name", "args", "kwargs", "path", "body", "kind"), CALLS)
def test_server_call_sync(
    cluster: Cluster, name: str, args: Any, kwargs: Any, path: str, body: Any, kind: type
) -> None:
    client = cluster.client(cluster.urls[0])
    _idle_for_release(cluster, name)
    out = getattr(client, name)(*args, **kwargs)
    assert isinstance(out, kind)
    assert cluster.calls(path) == [(cluster.urls[0], body)]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "args", "kwargs", "path", "body", "kind"), CALLS)
async def test_server_call_async(
    cluster: Cluster, name: str, args: Any, kwargs: Any, path: str, body: Any, kind: type
) -> None:
    client = cluster.client(cluster.urls[0])
    _idle_for_release(cluster, name)
    out = await getattr(client, "async_" + name)(*args, **kwargs)
    assert isinstance(out, kind)
    assert cluster.calls(path) == [(cluster.urls[0], body)]


def test_weight_version_and_loads_values(cluster: Cluster) -> None:
    client = cluster.client(cluster.urls[1])
    assert client.weight_version() == "0"
    client.update_weights_from_disk("/c", weight_version="3")
    assert client.weight_version() == "3"
    loads = client.loads()
    assert (loads.num_running_reqs, loads.num_waiting_reqs) == (1, 2)
    assert [p for _, _, p, _, _ in cluster.seen][-1] == "/v1/loads"


def test_failed_weight_update_is_typed(cluster: Cluster) -> None:
    url = cluster.urls[0]
    cluster.replies[(url, "/update_weights_from_disk")] = (
        400,
        {"success": False, "message": "Failed to update weights: /bad not found"},
    )
    with pytest.raises(WeightUpdateError) as info:
        cluster.client(url).update_weights_from_disk("/bad")
    assert info.value.message == "Failed to update weights: /bad not found"
    assert info.value.weights_updated is False
    assert len(cluster.calls("/update_weights_from_disk")) == 1  # not resent

    cluster.replies[(url, "/update_weights_from_disk")] = (
        400,
        {"success": False, "message": "Cache flush failed after updating weights"},
    )
    with pytest.raises(CacheNotFlushedError) as flushed:
        cluster.client(url).update_weights_from_disk("/good")
    assert flushed.value.weights_updated is True


def test_session_context_ends_after_an_error(cluster: Cluster) -> None:
    client = cluster.client(cluster.urls[0])
    with pytest.raises(RuntimeError, match="trainer died"):
        with client.weight_update_session("target") as session:
            assert session is client
            client.update_weights_from_distributed(["w"], ["float32"], [[1]])
            raise RuntimeError("trainer died")
    order = [p for _, _, p, _, _ in cluster.seen]
    assert order == [
        "/begin_weight_update",
        "/update_weights_from_distributed",
        "/end_weight_update",
    ]
    assert cluster.seen[0][3] == {"selector": "target"}


@pytest.mark.anyio
async def test_async_session_context(cluster: Cluster) -> None:
    client = cluster.client(cluster.urls[0])
    async with client.async_weight_update_session() as session:
        await session.async_update_weights_from_tensor([b"x"])
    order = [p for _, _, p, _, _ in cluster.seen]
    assert order == ["/begin_weight_update", "/update_weights_from_tensor", "/end_weight_update"]


def test_bad_arguments_send_nothing(cluster: Cluster) -> None:
    client = cluster.client(cluster.urls[0])
    with pytest.raises(InvalidRequestError):
        client.pause_generation("freeze")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        client.update_weight_version(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        with client.weight_update_session("both"):  # type: ignore[arg-type]
            pass
    assert cluster.seen == []


# -- the fleet --------------------------------------------------------------------------


def test_discovery_strips_ranks_and_filters(cluster: Cluster) -> None:
    cluster.dp_ranks = 2
    router = cluster.client(api_key="router-key")
    fleet = router.fleet()
    assert isinstance(fleet, Fleet)
    assert list(fleet) == cluster.urls and len(fleet) == 3 and fleet.urls == cluster.urls
    assert cluster.urls[0] in fleet and cluster.urls[0] + "@1" in fleet
    assert fleet.client(cluster.urls[2]).base_url == cluster.urls[2]
    assert router.fleet("decode").urls == [cluster.urls[2]]
    with pytest.raises(FleetError, match="no workers"):
        router.fleet("prefill")
    with pytest.raises(InvalidRequestError):
        fleet.client("http://elsewhere.test")
    # the router's bearer key went to GET /workers
    assert cluster.seen[0][4]["authorization"] == "Bearer router-key"


def test_worker_clients_inherit_and_override_settings(cluster: Cluster) -> None:
    router = cluster.client(api_key="k1", headers={"x-team": "rl"}, max_retries=5)
    fleet = router.fleet(api_key="admin")
    worker = fleet.client(cluster.urls[0])
    assert worker.retry_policy.max_retries == 5
    fleet.pause_generation()
    headers = [h for o, _, p, _, h in cluster.seen if p == "/pause_generation"]
    assert len(headers) == 3
    assert all(h["authorization"] == "Bearer admin" and h["x-team"] == "rl" for h in headers)
    same = router.fleet()
    same.continue_generation()
    headers = [h for o, _, p, _, h in cluster.seen if p == "/continue_generation"]
    assert all(h["authorization"] == "Bearer k1" for h in headers)


def test_single_server_is_a_fleet_of_one(cluster: Cluster) -> None:
    server = cluster.client(cluster.urls[1])
    fleet = server.fleet()  # the server answers 404 on /workers
    assert fleet.urls == [cluster.urls[1]]
    assert fleet.update_weight_version("4").results[cluster.urls[1]].new_version == "4"


@pytest.mark.anyio
async def test_async_discovery(cluster: Cluster) -> None:
    fleet = await cluster.client().async_fleet()
    assert fleet.urls == cluster.urls
    result = await fleet.async_update_weights_from_disk("/ckpt/9", weight_version="9")
    assert isinstance(result, FleetResult) and set(result) == set(cluster.urls)
    assert all(isinstance(r, WeightUpdateResult) for r in result.values())
    assert dict(await fleet.async_weight_versions()) == dict.fromkeys(cluster.urls, "9")


def test_broadcast_reaches_every_worker_once(cluster: Cluster) -> None:
    fleet = cluster.client().fleet()
    result = fleet.abort_request(abort_all=True)
    assert result.ok and dict(result) == dict.fromkeys(cluster.urls)
    assert cluster.origins("/abort_request") == sorted(cluster.urls)
    assert all(b == {"rid": "", "abort_all": True} for _, b in cluster.calls("/abort_request"))


def test_sync_broadcast_is_concurrent(cluster: Cluster) -> None:
    # Every worker's call waits until all of them have arrived: it only completes
    # if the fleet sends them at the same time (like a group init's rendezvous).
    barrier = threading.Barrier(len(cluster.urls), timeout=30)

    def gate(origin: str, path: str) -> None:
        if path == "/init_weights_update_group":
            barrier.wait()

    cluster.gate = gate
    fleet = cluster.client().fleet()
    result = fleet.init_weights_update_group("10.0.0.9", 29500, [1, 2, 3], 4)
    assert result.ok
    offsets = {o: b["rank_offset"] for o, b in cluster.calls("/init_weights_update_group")}
    assert offsets == dict(zip(cluster.urls, [1, 2, 3], strict=True))


@pytest.mark.anyio
async def test_async_broadcast_is_concurrent(cluster: Cluster) -> None:
    arrived = 0
    everyone = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        if arrived == len(cluster.urls):
            everyone.set()
        with anyio.fail_after(30):
            await everyone.wait()
        return httpx.Response(200, json=OK)

    transport = httpx.MockTransport(handler)
    fleet = Fleet.from_urls(cluster.urls, async_http_client=httpx.AsyncClient(transport=transport))
    offsets = {url: 10 + i for i, url in enumerate(cluster.urls)}
    result = await fleet.async_init_weights_update_group("h", 29500, offsets, 20)
    assert result.ok and arrived == len(cluster.urls)


def test_partial_failure_tries_every_worker(cluster: Cluster) -> None:
    bad = cluster.urls[1]
    cluster.replies[(bad, "/update_weights_from_disk")] = (
        400,
        {"success": False, "message": "disk full"},
    )
    fleet = cluster.client().fleet()
    with pytest.raises(FleetError) as info:
        fleet.update_weights_from_disk("/ckpt/2", weight_version="2")
    exc = info.value
    assert exc.operation == "update_weights_from_disk"
    assert set(exc.errors) == {bad} and isinstance(exc.errors[bad], WeightUpdateError)
    assert exc.errors[bad].message == "disk full"  # type: ignore[attr-defined]
    assert bad in str(exc) and "disk full" in str(exc)
    assert set(exc.result.results) == {cluster.urls[0], cluster.urls[2]}
    assert cluster.origins("/update_weights_from_disk") == sorted(cluster.urls)

    result = fleet.update_weights_from_disk("/ckpt/2", weight_version="2", raise_on_error=False)
    assert not result.ok and isinstance(result[bad], WeightUpdateError)
    assert isinstance(result[cluster.urls[0]], WeightUpdateResult)


@pytest.mark.anyio
async def test_async_partial_failure(cluster: Cluster) -> None:
    bad = cluster.urls[2]
    cluster.replies[(bad, "/pause_generation")] = (500, b"Internal Server Error")
    # the default retries of the 500, without the default backoff's seconds of sleep
    fast = RetryPolicy(initial_delay=0.001, max_delay=0.005, jitter=0.0)
    fleet = await cluster.client(retry_policy=fast).async_fleet()
    with pytest.raises(FleetError) as info:
        await fleet.async_pause_generation("retract")
    assert list(info.value.errors) == [bad]
    result = await fleet.async_pause_generation(raise_on_error=False)
    assert list(result.errors) == [bad] and len(result.results) == 2


def test_paused_continues_every_worker_after_an_error(cluster: Cluster) -> None:
    fleet = cluster.client().fleet()
    with pytest.raises(ValueError, match="bad batch"):
        with fleet.paused(mode="retract") as paused:
            assert paused is fleet
            fleet.update_weights_from_disk("/ckpt/3", weight_version="3")
            raise ValueError("bad batch")
    assert cluster.origins("/pause_generation") == sorted(cluster.urls)
    assert cluster.origins("/continue_generation") == sorted(cluster.urls)
    order = [p for _, _, p, _, _ in cluster.seen if p != "/workers"]
    assert order.index("/update_weights_from_disk") > max(
        i for i, p in enumerate(order) if p == "/pause_generation"
    )
    assert all(b == {"mode": "retract"} for _, b in cluster.calls("/pause_generation"))


def test_failed_pause_continues_and_skips_the_body(cluster: Cluster) -> None:
    cluster.replies[(cluster.urls[0], "/pause_generation")] = (503, b"")
    fleet = cluster.client(max_retries=0).fleet()
    ran = False
    with pytest.raises(FleetError, match="pause_generation failed on 1 of 3"):
        with fleet.paused():
            ran = True
    assert not ran
    assert cluster.origins("/continue_generation") == sorted(cluster.urls)


@pytest.mark.anyio
async def test_async_paused_continues_after_an_error(cluster: Cluster) -> None:
    fleet = await cluster.client().async_fleet()
    with pytest.raises(KeyError):
        async with fleet.async_paused(mode="abort") as paused:
            await paused.async_update_weight_version("7", abort_all_requests=False)
            raise KeyError("x")
    assert cluster.origins("/continue_generation") == sorted(cluster.urls)
    assert (await fleet.async_check_weight_version("7")) is not None


@pytest.mark.anyio
async def test_async_paused_continues_when_cancelled(cluster: Cluster) -> None:
    fleet = await cluster.client().async_fleet()
    with anyio.move_on_after(0.05):
        async with fleet.async_paused():
            await anyio.sleep_forever()
    assert cluster.origins("/continue_generation") == sorted(cluster.urls)


def test_session_begin_failure_ends_only_opened_sessions(cluster: Cluster) -> None:
    busy = cluster.urls[0]
    cluster.replies[(busy, "/begin_weight_update")] = (
        400,
        {"success": False, "message": "a weight-update session is already open"},
    )
    fleet = cluster.client().fleet()
    with pytest.raises(FleetError):
        with fleet.weight_update_session():
            pytest.fail("the block must not run")
    assert cluster.origins("/end_weight_update") == sorted(cluster.urls[1:])


def test_fleet_session_wraps_updates(cluster: Cluster) -> None:
    fleet = Fleet.from_urls(
        cluster.urls, http_client=httpx.Client(transport=httpx.MockTransport(cluster.handler))
    )
    with fleet.weight_update_session() as session:
        session.update_weights_from_distributed(["w"], ["float16"], [[3]], weight_version="8")
    for url in cluster.urls:
        order = [p for o, _, p, _, _ in cluster.seen if o == url]
        assert order == [
            "/begin_weight_update",
            "/update_weights_from_distributed",
            "/end_weight_update",
        ]


def test_weight_version_check(cluster: Cluster) -> None:
    fleet = cluster.client().fleet()
    fleet.update_weight_version("11")
    assert dict(fleet.check_weight_version("11")) == dict.fromkeys(cluster.urls, "11")
    cluster.versions[cluster.urls[1]] = "10"
    with pytest.raises(WeightVersionMismatchError) as info:
        fleet.check_weight_version("11")
    assert info.value.mismatched == {cluster.urls[1]: "10"}
    assert info.value.expected == "11" and len(info.value.versions) == 3
    assert cluster.urls[1] in str(info.value)
    with pytest.raises(InvalidRequestError):
        fleet.check_weight_version(11)  # type: ignore[arg-type]


def test_info_health_loads_flush_memory(cluster: Cluster) -> None:
    fleet = cluster.client().fleet()
    assert dict(fleet.health()) == dict.fromkeys(cluster.urls, True)
    assert all(i.weight_version == "0" for i in fleet.model_info().values())  # type: ignore[union-attr]
    assert {
        u: lo.num_waiting_reqs for u, lo in fleet.loads("all").results.items()
    } == dict.fromkeys(cluster.urls, 2)
    assert all(r.flushed for r in fleet.flush_cache().results.values())
    _idle_for_release(cluster, "release_memory_occupation")
    assert fleet.release_memory_occupation(["weights"]).ok
    assert fleet.resume_memory_occupation(["weights"]).ok
    assert fleet.server_info().ok
    fleet.destroy_weights_update_group()
    fleet.begin_weight_update()
    fleet.end_weight_update()
    fleet.update_weights_from_tensor([b"t"], wrap_session=True)
    for path in ("/health", "/flush_cache", "/release_memory_occupation", "/end_weight_update"):
        assert set(cluster.origins(path)) == set(cluster.urls)


def test_health_never_raises(cluster: Cluster) -> None:
    cluster.replies[(cluster.urls[0], "/health")] = (503, b"")
    result = cluster.client().fleet().health()
    assert result[cluster.urls[0]] is False and result[cluster.urls[1]] is True


def test_fleet_argument_checks_send_nothing(cluster: Cluster) -> None:
    fleet = Fleet.from_urls(
        cluster.urls, http_client=httpx.Client(transport=httpx.MockTransport(cluster.handler))
    )
    with pytest.raises(InvalidRequestError, match="own rank_offset"):
        fleet.init_weights_update_group("h", 1, 1, 4)
    with pytest.raises(InvalidRequestError):
        fleet.init_weights_update_group("h", 1, [1, 1, 2], 4)
    with pytest.raises(InvalidRequestError):
        fleet.init_weights_update_group("h", 1, {cluster.urls[0]: 1}, 4)
    with pytest.raises(InvalidRequestError):
        fleet.pause_generation("halt")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        fleet.abort_request()  # neither rid nor abort_all
    with pytest.raises(InvalidRequestError):
        fleet.loads(raise_on_error="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        with fleet.paused("later"):  # type: ignore[arg-type]
            pass
    assert cluster.seen == []
    with pytest.raises(InvalidRequestError):
        Fleet.from_urls([])
    with pytest.raises(InvalidRequestError):
        Fleet.from_urls("http://w0.test")
    assert Fleet.from_urls(["http://a.test@0", "http://a.test@1/"]).urls == ["http://a.test"]


def test_router_refuses_control_calls(cluster: Cluster) -> None:
    with pytest.raises(NotFoundError):
        cluster.client().pause_generation()


def test_discovery_needs_the_router_key(cluster: Cluster) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "Unauthorized"})

    client = InferenceHTTPClient(
        ROUTER, http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    with pytest.raises(AuthenticationError):
        client.fleet()


def test_fleet_closes_its_clients(cluster: Cluster) -> None:
    fleet = Fleet.from_urls(cluster.urls)
    clients = [fleet.client(u) for u in fleet]
    with fleet:
        pass
    assert all(c._driver._sync_client is None for c in clients)


@pytest.mark.anyio
async def test_async_paused_cancelled_while_pausing_still_continues(cluster: Cluster) -> None:
    pausing = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/pause_generation":
            pausing.set()
            await anyio.sleep_forever()  # an abort-mode pause that takes long
        return cluster.handler(request)

    transport = httpx.MockTransport(handler)
    fleet = Fleet.from_urls(cluster.urls, async_http_client=httpx.AsyncClient(transport=transport))

    async def pause_and_work() -> None:
        async with fleet.async_paused():
            pytest.fail("the block must not run")

    async with anyio.create_task_group() as tg:
        tg.start_soon(pause_and_work)
        await pausing.wait()
        tg.cancel_scope.cancel()
    # some workers may have paused before the cancel: every one is continued
    assert cluster.origins("/continue_generation") == sorted(cluster.urls)


def test_fleet_discovery_checks_arguments_first(cluster: Cluster) -> None:
    router = cluster.client()
    with pytest.raises(InvalidRequestError):
        router.fleet("gpu")
    with pytest.raises(InvalidRequestError):
        router.fleet(api_key="")
    with pytest.raises(InvalidRequestError):
        router.fleet(connect_timeout=-1)
    with pytest.raises(InvalidRequestError):
        router.fleet(healthy_only="yes")  # type: ignore[arg-type]
    assert cluster.seen == []


def test_fleet_errors_pickle(cluster: Cluster) -> None:
    bad = cluster.urls[0]
    cluster.replies[(bad, "/update_weights_from_disk")] = (400, {"success": False, "message": "x"})
    fleet = cluster.client().fleet()
    with pytest.raises(FleetError) as info:
        fleet.update_weights_from_disk("/c")
    again = pickle.loads(pickle.dumps(info.value))  # Ray and multiprocessing ship errors
    assert type(again) is FleetError and again.operation == "update_weights_from_disk"
    assert list(again.errors) == [bad] and isinstance(again.errors[bad], WeightUpdateError)
    assert set(again.result.results) == set(cluster.urls[1:])
    mismatch = WeightVersionMismatchError("m", expected="2", versions={bad: "1", "u": "2"})
    copy = pickle.loads(pickle.dumps(mismatch))
    assert copy.mismatched == {bad: "1"} and copy.expected == "2"


def test_tensor_payload_per_worker(cluster: Cluster) -> None:
    fleet = cluster.client().fleet()
    payloads = {url: [f"node-{i}".encode()] for i, url in enumerate(cluster.urls)}
    assert fleet.update_weights_from_tensor(payloads, wrap_session=True).ok
    sent = {
        o: b["serialized_named_tensors"] for o, b in cluster.calls("/update_weights_from_tensor")
    }
    assert sent == {
        url: [base64.b64encode(f"node-{i}".encode()).decode()] for i, url in enumerate(cluster.urls)
    }
    seen = len(cluster.seen)
    with pytest.raises(InvalidRequestError, match="every worker"):
        fleet.update_weights_from_tensor({cluster.urls[0]: [b"x"]})
    with pytest.raises(InvalidRequestError, match="every worker"):
        fleet.init_weights_update_group(
            "h", 1, {cluster.urls[0]: 1, cluster.urls[0] + "@1": 2, cluster.urls[1]: 3}, 5
        )
    assert len(cluster.seen) == seen


def test_session_begin_failing_everywhere(cluster: Cluster) -> None:
    for url in cluster.urls:
        cluster.replies[(url, "/begin_weight_update")] = (
            400,
            {"success": False, "message": "a weight-update session is already open"},
        )
    fleet = cluster.client().fleet()
    with pytest.raises(FleetError, match="failed on 3 of 3"):
        with fleet.weight_update_session():
            pytest.fail("the block must not run")
    assert cluster.calls("/end_weight_update") == []  # no session of ours to end


@pytest.mark.anyio
async def test_async_session_begin_failing_everywhere(cluster: Cluster) -> None:
    for url in cluster.urls:
        cluster.replies[(url, "/begin_weight_update")] = (400, {"success": False, "message": "x"})
    fleet = await cluster.client().async_fleet()
    with pytest.raises(FleetError, match="failed on 3 of 3"):
        async with fleet.async_weight_update_session():
            pytest.fail("the block must not run")
    assert cluster.calls("/end_weight_update") == []


def test_continue_failures(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    cluster.replies[(cluster.urls[1], "/continue_generation")] = (500, b"Internal Server Error")
    fleet = cluster.client(max_retries=0).fleet()
    # after a good block, a failed continue is the error
    with pytest.raises(FleetError, match="continue_generation failed on 1 of 3"):
        with fleet.paused():
            pass
    # after a failed block, the block's error wins and the continue failure is logged
    with pytest.raises(ArithmeticError):
        with fleet.paused():
            raise ArithmeticError
    assert "continue_generation after a failed block also failed" in caplog.text
    assert len(cluster.calls("/continue_generation")) == 6  # every worker, both times


@pytest.mark.anyio
async def test_async_paused_cancelled_while_continuing_still_continues(cluster: Cluster) -> None:
    # The block ended normally; the task is cancelled while the continue is in
    # flight. Every worker is still continued (shielded, bounded), not left paused.
    continuing = anyio.Event()
    first: set[str] = set()

    async def handler(request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}"
        if request.url.path == "/continue_generation" and origin not in first:
            first.add(origin)
            if len(first) == len(cluster.urls):
                continuing.set()
            await anyio.sleep_forever()  # the first continue hangs until cancelled
        return cluster.handler(request)

    transport = httpx.MockTransport(handler)
    fleet = Fleet.from_urls(cluster.urls, async_http_client=httpx.AsyncClient(transport=transport))

    async def pause_and_work() -> None:
        async with fleet.async_paused():
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(pause_and_work)
        await continuing.wait()
        tg.cancel_scope.cancel()
    assert cluster.origins("/continue_generation") == sorted(cluster.urls)


def test_ctrl_c_while_continuing_tries_again(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # Ctrl-C while continuing after a normal block: one more (bounded) try.
    calls: list[str] = []

    def gate(origin: str, path: str) -> None:
        if path == "/continue_generation":
            calls.append(origin)
            if len(calls) == 1:
                raise KeyboardInterrupt

    fleet = Fleet([cluster.client(cluster.urls[0], max_retries=0)])  # runs in this thread
    cluster.gate = gate
    with pytest.raises(KeyboardInterrupt):
        with fleet.paused():
            pass
    assert calls == [cluster.urls[0], cluster.urls[0]]  # tried again
    assert "continue_generation was interrupted" not in caplog.text
