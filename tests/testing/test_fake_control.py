"""The fake server's RL control plane, over real loopback sockets (asyncio and trio).

Pause modes and their effect on in-flight streamed and non-streamed requests,
weight updates (disk, version, distributed, tensor) with the begin/end session
rule, weight-update groups, memory tags, /v1/loads, and fault injection.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp, FaultSpec

pytestmark = pytest.mark.anyio

ITL = 0.01  # seconds per token: long requests below run for seconds unless held/aborted
LONG = 800  # tokens: 8 s at ITL, far longer than any test waits


@pytest.fixture
def slow() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=ITL)) as srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=30.0) as c:
        yield c


async def until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.01)


def gen_body(n: int, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"text": "a b", "sampling_params": {"max_new_tokens": n}, "stream": stream, **extra}


class StreamReader:
    """Reads a streamed /generate in the background, keeping every event."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.status = 0

    async def run(self, c: httpx.AsyncClient, url: str, body: dict[str, Any]) -> None:
        async with c.stream("POST", url + "/generate", json=body) as r:
            self.status = r.status_code
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    payload = line[len("data: ") :]
                    self.events.append(payload if payload == "[DONE]" else json.loads(payload))

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict)]


class Result:
    def __init__(self) -> None:
        self.response: httpx.Response | None = None

    async def post(self, c: httpx.AsyncClient, url: str, body: Any) -> None:
        self.response = await c.post(url, json=body)

    @property
    def json(self) -> Any:
        assert self.response is not None
        return self.response.json()


async def loads(c: httpx.AsyncClient, url: str, include: str | None = None) -> dict[str, Any]:
    params = {"include": include} if include else None
    r = await c.get(url + "/v1/loads", params=params)
    assert r.status_code == 200, r.text
    load: dict[str, Any] = r.json()["loads"][0]
    return load


# --------------------------------------------------------------------------- pause / continue


async def test_pause_abort_ends_inflight_stream_and_nonstream(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    stream = StreamReader()
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run, client, url, gen_body(LONG, stream=True))
        tg.start_soon(plain.post, client, url + "/generate", gen_body(LONG))
        await until(lambda: slow.app.running_requests == 2 and len(stream.chunks) >= 2, "start")
        r = await client.post(url + "/pause_generation", json={"mode": "abort"})
        # an abort-mode pause returns only once nothing is in flight
        assert slow.app.running_requests == 0
    assert r.status_code == 200
    assert r.json() == {"message": "Generation paused successfully.", "status": "ok"}
    assert plain.response is not None and plain.response.status_code == 200
    meta = plain.json["meta_info"]
    assert meta["finish_reason"]["type"] == "abort"
    assert set(meta["finish_reason"]) == {"type", "message", "status_code", "err_type"}
    assert 0 < meta["completion_tokens"] < LONG
    assert stream.status == 200
    assert stream.events[-1] == "[DONE]"
    last = stream.chunks[-1]["meta_info"]
    assert last["finish_reason"]["type"] == "abort"
    assert last["completion_tokens"] < LONG
    assert all(c["meta_info"]["finish_reason"] is None for c in stream.chunks[:-1])

    # paused: /ready is 503, new requests wait (not rejected) until continue
    assert (await client.get(url + "/ready")).status_code == 503
    late = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(late.post, client, url + "/generate", gen_body(3))
        await until(lambda: slow.app._gate_held == 1, "request held at the gate")
        load = await loads(client, url)
        assert (load["num_running_reqs"], load["num_waiting_reqs"]) == (0, 1)
        assert load["queues"]["paused"] == 1
        assert late.response is None
        r = await client.post(url + "/continue_generation", json={})
        assert r.json() == {"message": "Generation continued successfully.", "status": "ok"}
    assert late.json["meta_info"]["finish_reason"] == {"type": "length", "length": 3}
    assert late.json["text"] == FakeSGLangApp.output_text(3)
    assert (await client.get(url + "/ready")).status_code == 200


@pytest.mark.parametrize("mode", ["retract", "in_place"])
async def test_pause_holds_inflight_requests_until_continue(
    mode: str, slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    n = 60
    stream = StreamReader()
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run, client, url, gen_body(n, stream=True))
        tg.start_soon(plain.post, client, url + "/generate", gen_body(n))
        await until(lambda: len(stream.chunks) >= 3, "first chunks")
        r = await client.post(url + "/pause_generation", json={"mode": mode})
        assert r.status_code == 200  # returns at once, requests stay open
        assert slow.app.paused == mode
        seen = len(stream.chunks)
        await anyio.sleep(8 * ITL)  # several token intervals: a held request makes no progress
        assert len(stream.chunks) <= seen + 1  # at most one chunk already in flight
        held = len(stream.chunks)
        await anyio.sleep(8 * ITL)
        assert len(stream.chunks) == held
        assert plain.response is None and slow.app.running_requests == 2
        load = await loads(client, url)
        if mode == "retract":  # back to the waiting queue, so a flush succeeds
            assert (load["num_running_reqs"], load["num_waiting_reqs"]) == (0, 2)
            assert load["queues"]["retracted"] == 2
            assert (await client.post(url + "/flush_cache")).status_code == 200
        else:  # kept in the running batch, so a flush fails
            assert (load["num_running_reqs"], load["num_waiting_reqs"]) == (2, 0)
            assert (await client.post(url + "/flush_cache")).status_code == 400
        r = await client.post(url + "/continue_generation", json={"torch_empty_cache": False})
        assert r.status_code == 200
    assert slow.app.paused is None
    assert plain.json["meta_info"]["finish_reason"] == {"type": "length", "length": n}
    assert plain.json["text"] == FakeSGLangApp.output_text(n)
    final = stream.chunks[-1]
    assert final["meta_info"]["finish_reason"] == {"type": "length", "length": n}
    assert final["text"] == FakeSGLangApp.output_text(n)  # cumulative, nothing lost
    assert stream.events[-1] == "[DONE]"


async def test_weight_versions_span_a_change_during_generation(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    n = 60
    stream = StreamReader()
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run, client, url, gen_body(n, stream=True))
        tg.start_soon(plain.post, client, url + "/generate", gen_body(n))
        await until(lambda: len(stream.chunks) >= 3, "first chunks")
        await client.post(url + "/pause_generation", json={"mode": "retract"})
        body = {"new_version": "v1", "abort_all_requests": False}
        assert (await client.post(url + "/update_weight_version", json=body)).status_code == 200
        await client.post(url + "/continue_generation", json={})
    for meta in (stream.chunks[-1]["meta_info"], plain.json["meta_info"]):
        assert meta["finish_reason"]["type"] == "length"
        first, second = meta["weight_versions"]
        assert first["version"] == "default" and second["version"] == "v1"
        assert first["start"] == 0 and 0 < first["end"] == second["start"] < n
        assert second["end"] == n
        assert meta["weight_version"] == "v1"
    # chunks before the end carry only the version, not the spans
    assert "weight_versions" not in stream.chunks[0]["meta_info"]


async def test_abort_request_reaches_a_held_request(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(plain.post, client, url + "/generate", gen_body(LONG, rid="held-1"))
        await until(lambda: slow.app.running_requests == 1, "start")
        await client.post(url + "/pause_generation", json={"mode": "retract"})
        r = await client.post(url + "/abort_request", json={"rid": "held-1"})
        assert r.status_code == 200 and r.content == b""
    meta = plain.json["meta_info"]
    assert meta["id"] == "held-1"
    # retracted means back in the waiting queue: sglang's queued-abort shape
    assert meta["finish_reason"] == {"type": "abort", "message": "Abort in waiting queue"}
    assert set(meta) == {
        "id",
        "finish_reason",
        "completion_tokens",
        "weight_version",
        "weight_versions",
        "e2e_latency",
    }
    assert meta["completion_tokens"] < LONG
    await client.post(url + "/continue_generation", json={})


async def test_pause_and_continue_validate_their_bodies(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    r = await client.post(url + "/pause_generation")  # sglang requires a body, even {}
    assert r.status_code == 400
    assert r.json()["type"] == "Bad Request" and "Field required" in r.json()["message"]
    r = await client.post(url + "/pause_generation", json={"mode": "freeze"})
    assert r.status_code == 400
    assert server.app.paused is None
    r = await client.post(url + "/continue_generation", json={"torch_empty_cache": "yes"})
    assert r.status_code == 400
    r = await client.post(url + "/pause_generation", json={})  # default mode: abort
    assert r.status_code == 200 and server.app.paused == "abort"
    assert (await client.post(url + "/continue_generation", json={})).status_code == 200


# --------------------------------------------------------------------------- weight updates


async def test_update_weights_from_disk_changes_path_version_and_outputs(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    before = (await client.get(url + "/model_info")).json()
    assert before["weight_version"] == "default"
    body = {"model_path": "/ckpt/step-100", "weight_version": "100", "load_format": "safetensors"}
    r = await client.post(url + "/update_weights_from_disk", json=body)
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "message": "Succeeded to update model weights.",
        "num_paused_requests": 0,
    }
    info = (await client.get(url + "/model_info")).json()
    assert info["model_path"] == info["served_model_name"] == "/ckpt/step-100"
    assert info["weight_version"] == "100"
    assert info["load_format"] == "safetensors"
    # server_info is the startup snapshot, as on sglang
    sinfo = (await client.get(url + "/server_info")).json()
    assert sinfo["weight_version"] == "default" and sinfo["model_path"] == before["model_path"]
    models = (await client.get(url + "/v1/models")).json()
    assert models["data"][0]["id"] == "/ckpt/step-100"
    out = (await client.post(url + "/generate", json=gen_body(2))).json()
    assert out["meta_info"]["weight_version"] == "100"
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    out = (await client.post(url + "/v1/chat/completions", json=chat)).json()
    assert out["metadata"]["weight_version"] == "100"
    assert out["model"] == "/ckpt/step-100"  # the served name is now the new path
    state = (await client.get(url + "/_fake/state")).json()
    assert state["weight_updates"] == [
        {"kind": "disk", "weight_version": "100", "model_path": "/ckpt/step-100"}
    ]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/update_weights_from_disk", None, "Field required"),
        ("/update_weights_from_disk", {}, "model_path"),
        ("/update_weights_from_disk", {"model_path": 3}, "valid string"),
        ("/update_weight_version", {"new_version": 3}, "valid string"),
        ("/init_weights_update_group", {"master_address": "h"}, "master_port"),
        ("/release_memory_occupation", {"tags": "weights"}, "list of strings"),
    ],
)
async def test_control_bodies_are_validated_like_sglang(
    server: FakeServer, client: httpx.AsyncClient, path: str, body: Any, needle: str
) -> None:
    r = await client.post(server.url + path, json=body)
    assert r.status_code == 400
    err = r.json()
    assert err["object"] == "error" and err["code"] == 400 and err["type"] == "Bad Request"
    assert needle in err["message"]
    assert server.app.weight_version == "default"


async def test_disk_update_waits_for_inflight_requests_unless_paused(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    order: list[str] = []
    running = Result()
    update = Result()
    late = Result()

    async def track(name: str, res: Result, path: str, body: Any) -> None:
        await res.post(client, url + path, body)
        order.append(name)

    update_body = {"model_path": "/m2", "weight_version": "2"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(track, "running", running, "/generate", gen_body(50))
        await until(lambda: slow.app.running_requests == 1, "start")
        tg.start_soon(track, "update", update, "/update_weights_from_disk", update_body)
        await until(lambda: slow.app._writers == 1, "update waiting for the writer lock")
        tg.start_soon(track, "late", late, "/generate", gen_body(2))
        await until(lambda: slow.app._gate_held == 1, "new request waiting behind the update")
        # the update is blocked by the running request, the new one by the update
        assert update.response is None and late.response is None
        assert slow.app.running_requests == 1 and slow.app.weight_version == "default"
    assert "late" in order[1:]
    assert running.json["meta_info"]["finish_reason"]["type"] == "length"
    assert running.json["meta_info"]["weight_version"] == "default"
    assert update.json["success"] is True
    assert late.json["meta_info"]["weight_version"] == "2"


async def test_disk_update_abort_all_requests(slow: FakeServer, client: httpx.AsyncClient) -> None:
    url = slow.url
    running = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.post, client, url + "/generate", gen_body(LONG))
        await until(lambda: slow.app.running_requests == 1, "start")
        body = {"model_path": "/m3", "abort_all_requests": True, "weight_version": "3"}
        r = await client.post(url + "/update_weights_from_disk", json=body)
        assert r.status_code == 200
    assert running.json["meta_info"]["finish_reason"]["type"] == "abort"
    assert slow.app.weight_version == "3"


async def test_update_weight_version_aborts_by_default(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    kept = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(kept.post, client, url + "/generate", gen_body(50))
        await until(lambda: slow.app.running_requests == 1, "start")
        r = await client.post(
            url + "/update_weight_version", json={"new_version": "v1", "abort_all_requests": False}
        )
        assert r.json() == {
            "success": True,
            "message": "Weight version updated to v1",
            "new_version": "v1",
        }
    # not aborted; it finished after the change, so it reports the new version
    assert kept.json["meta_info"]["finish_reason"]["type"] == "length"
    assert kept.json["meta_info"]["weight_version"] == "v1"

    aborted = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(aborted.post, client, url + "/generate", gen_body(LONG))
        await until(lambda: slow.app.running_requests == 1, "start")
        r = await client.post(url + "/update_weight_version", json={"new_version": "v2"})
        assert r.status_code == 200
    assert aborted.json["meta_info"]["finish_reason"]["type"] == "abort"
    assert (await client.get(url + "/model_info")).json()["weight_version"] == "v2"


async def test_weight_update_session_rule_and_groups(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    tensors = [base64.b64encode(b"opaque pickled tensors").decode()]
    tensor_body = {"serialized_named_tensors": tensors, "weight_version": "t1"}
    dist_body = {"names": ["w"], "dtypes": ["bfloat16"], "shapes": [[2, 2]], "weight_version": "d1"}

    # outside a begin/end session sglang 0.5.23 refuses both kinds of update
    for path, body in (
        ("/update_weights_from_tensor", tensor_body),
        ("/update_weights_from_distributed", dist_body),
    ):
        r = await client.post(url + path, json=body)
        assert r.status_code == 400
        assert r.json()["success"] is False
        assert (
            "must run between begin_weight_update() and end_weight_update()"
            in (r.json()["message"])
        )
    r = await client.post(url + "/end_weight_update", json={})
    assert r.status_code == 400 and r.json()["success"] is False
    assert server.app.weight_version == "default"

    r = await client.post(url + "/begin_weight_update", json={})
    assert r.json() == {"success": True, "message": "Success"}
    r = await client.post(url + "/begin_weight_update", json={})
    assert r.status_code == 400 and "already open" in r.json()["message"]

    bad = {"serialized_named_tensors": ["not base64!"]}
    r = await client.post(url + "/update_weights_from_tensor", json=bad)
    assert r.status_code == 400 and r.json()["type"] == "Bad Request"
    r = await client.post(url + "/update_weights_from_tensor", json=tensor_body)
    assert r.status_code == 200 and r.json() == {"success": True, "message": "Success"}
    assert server.app.weight_version == "t1"

    # distributed needs its group
    r = await client.post(url + "/update_weights_from_distributed", json=dist_body)
    assert r.status_code == 400 and "does not exist" in r.json()["message"]
    group = {"master_address": "127.0.0.1", "master_port": 29500, "rank_offset": 1}
    r = await client.post(url + "/init_weights_update_group", json={**group, "world_size": 2})
    assert r.status_code == 200 and r.json()["success"] is True
    r = await client.post(url + "/init_weights_update_group", json={**group, "world_size": 2})
    assert r.status_code == 400 and r.json()["success"] is False
    r = await client.post(url + "/update_weights_from_distributed", json=dist_body)
    assert r.status_code == 200
    assert r.json()["message"].endswith("Weight version updated to d1.")
    r = await client.post(
        url + "/update_weights_from_distributed",
        json={**dist_body, "dtypes": ["bfloat17"], "weight_version": "bad"},
    )
    assert r.status_code == 400 and "bfloat17" in r.json()["message"]
    assert server.app.weight_version == "d1"

    r = await client.post(url + "/end_weight_update", json={})
    assert r.json() == {"success": True, "message": "Success"}
    state = (await client.get(url + "/_fake/state")).json()
    assert state["weight_update_session"] is False
    assert state["weight_update_groups"]["weight_update_group"]["world_size"] == 2
    assert [u["kind"] for u in state["weight_updates"]] == ["tensor", "distributed"]

    r = await client.post(url + "/destroy_weights_update_group", json={})
    assert r.status_code == 200 and r.json()["success"] is True
    r = await client.post(url + "/destroy_weights_update_group", json={})
    assert r.status_code == 400
    assert r.json() == {"success": False, "message": "The group to be destroyed does not exist."}


# --------------------------------------------------------------------------- failing updates


async def test_failed_load_leaves_weights_unchanged(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    # over HTTP, as a test driving a worker process would do it
    fault = {"path": "/update_weights_from_disk", "weight_update_error": "load"}
    assert (await client.post(url + "/_fake/faults", json=fault)).status_code == 200
    r = await client.post(
        url + "/update_weights_from_disk", json={"model_path": "/new", "weight_version": "9"}
    )
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False and body["message"].startswith("Failed to update weights")
    assert "flush" not in body["message"].lower()
    info = (await client.get(url + "/model_info")).json()
    assert (info["weight_version"], info["served_model_name"]) == ("default", "fake-model")


async def test_flush_failure_after_swap_is_told_apart(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    # a weight_update_error fault without a path only matches weight-update endpoints
    server.app.faults.add(FaultSpec(weight_update_error="flush"))
    assert (await client.post(url + "/generate", json=gen_body(1))).status_code == 200
    assert len(server.app.faults) == 1
    r = await client.post(
        url + "/update_weights_from_disk", json={"model_path": "/new", "weight_version": "9"}
    )
    assert r.status_code == 400
    assert r.json()["success"] is False
    assert "Cache flush failed after updating weights" in r.json()["message"]
    info = (await client.get(url + "/model_info")).json()
    assert (info["weight_version"], info["model_path"]) == ("9", "/new")  # swapped anyway


async def test_in_place_pause_makes_the_post_update_flush_fail(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(plain.post, client, url + "/generate", gen_body(60))
        await until(lambda: slow.app.running_requests == 1, "start")
        await client.post(url + "/pause_generation", json={"mode": "in_place"})
        r = await client.post(url + "/update_weights_from_disk", json={"model_path": "/p"})
        assert r.status_code == 400  # the running batch is kept, so the flush fails
        assert "Cache flush failed" in r.json()["message"]
        assert slow.app.model_path == "/p"
        r = await client.post(
            url + "/update_weights_from_disk", json={"model_path": "/q", "flush_cache": False}
        )
        assert r.status_code == 200  # paused: no writer lock, no flush requested
        await client.post(url + "/continue_generation", json={})
    assert plain.json["meta_info"]["finish_reason"]["type"] == "length"


async def test_fault_injection_on_control_endpoints(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    server.app.faults.add(
        FaultSpec(path="/pause_generation", status=503),
        FaultSpec(path="/update_weight_version", weight_update_error="load"),
        FaultSpec(path="/v1/loads", malformed=True),
    )
    r = await client.post(url + "/pause_generation", json={"mode": "retract"})
    assert r.status_code == 503
    assert server.app.paused is None  # the fault answered; nothing was paused
    r = await client.post(url + "/update_weight_version", json={"new_version": "x"})
    assert r.status_code == 400
    assert r.json() == {
        "success": False,
        "message": "Failed to update weight version: injected fault",
    }
    r = await client.get(url + "/v1/loads")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert server.app.stats["faults_injected"] == 3
    assert server.app.weight_version == "default"


# --------------------------------------------------------------------------- memory


async def test_release_and_resume_memory_tags(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    r = await client.post(url + "/release_memory_occupation", json={"tags": ["kv_cache"]})
    assert r.status_code == 200 and r.content == b"null"
    assert server.app.released_memory_tags == {"kv_cache"}
    # a bare resume means all three tags, and two of them are not released
    r = await client.post(url + "/resume_memory_occupation", json={})
    assert r.status_code == 400 and "not released" in r.json()["error"]["message"]
    assert server.app.released_memory_tags == {"kv_cache"}
    r = await client.request("GET", url + "/resume_memory_occupation", json={"tags": ["kv_cache"]})
    assert r.status_code == 200 and r.json() is None
    r = await client.post(url + "/release_memory_occupation", json={})
    assert server.app.released_memory_tags == {"kv_cache", "weights", "cuda_graph"}
    memory = (await loads(client, url, "memory"))["memory"]
    assert memory["weight_gb"] == memory["kv_cache_gb"] == 0.0
    for tag in ("weights", "kv_cache", "cuda_graph"):  # resumed one at a time
        r = await client.post(url + "/resume_memory_occupation", json={"tags": [tag]})
        assert r.status_code == 200
    assert server.app.released_memory_tags == set()
    r = await client.post(url + "/release_memory_occupation", json={"tags": ["vram"]})
    assert r.status_code == 400
    r = await client.post(url + "/release_memory_occupation")  # body required
    assert r.status_code == 400 and r.json()["type"] == "Bad Request"


async def test_release_memory_refused_while_busy(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(plain.post, client, url + "/generate", gen_body(LONG))
        await until(lambda: slow.app.running_requests == 1, "start")
        r = await client.post(url + "/release_memory_occupation", json={})
        assert r.status_code == 400
        assert slow.app.released_memory_tags == set()
        await client.post(url + "/abort_request", json={"abort_all": True})
    assert plain.json["meta_info"]["finish_reason"]["type"] == "abort"


# --------------------------------------------------------------------------- loads


async def test_loads_counts_and_include(slow: FakeServer, client: httpx.AsyncClient) -> None:
    url = slow.url
    r = await client.get(url + "/v1/loads")
    body = r.json()
    assert set(body) == {"timestamp", "version", "accelerator", "num_accelerators", "loads"}
    load = body["loads"][0]
    assert (load["num_running_reqs"], load["num_waiting_reqs"]) == (0, 0)
    assert {"memory", "queues"} <= set(load)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(Result().post, client, url + "/generate", gen_body(LONG))
        await until(lambda: slow.app.running_requests == 3, "start")
        core = await loads(client, url, "core")
        assert core["num_running_reqs"] == 3
        assert "memory" not in core and "queues" not in core
        queues = await loads(client, url, "core,queues")
        assert "queues" in queues and "memory" not in queues
        await client.post(url + "/abort_request", json={"abort_all": True})
    assert (await loads(client, url))["num_running_reqs"] == 0
    r = await client.get(url + "/v1/loads", params={"include": "core,bogus"})
    assert r.status_code == 500
    assert r.text == "Internal Server Error"
    r = await client.get(url + "/v1/loads", params={"dp_rank": "1"})
    assert r.json()["loads"] == []
    r = await client.get(url + "/v1/loads", params={"format": "prometheus"})
    assert r.headers["content-type"].startswith("text/plain")
    assert 'sglang_num_running_reqs{dp_rank="0"} 0' in r.text


async def test_flush_cache_timeout_waits_for_idle(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    plain = Result()
    async with anyio.create_task_group() as tg:
        tg.start_soon(plain.post, client, url + "/generate", gen_body(50))
        await until(lambda: slow.app.running_requests == 1, "start")
        assert (await client.post(url + "/flush_cache")).status_code == 400
        r = await client.post(url + "/flush_cache", params={"timeout": "20"})
        assert r.status_code == 200
        assert slow.app.running_requests == 0  # the flush waited for the request to finish
    assert plain.json["meta_info"]["finish_reason"]["type"] == "length"


async def test_update_weights_from_ipc_is_not_session_gated(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    url = server.url
    body = {"zmq_handles": {"GPU-0": "ipc:///tmp/x"}, "weight_version": "ipc-1"}
    r = await client.post(url + "/update_weights_from_ipc", json=body)
    assert r.json() == {"success": True, "message": "Success"}
    assert server.app.weight_version == "ipc-1"
    server.app.faults.add(FaultSpec(path="/update_weights_from_ipc", weight_update_error="load"))
    r = await client.post(url + "/update_weights_from_ipc", json={**body, "weight_version": "2"})
    assert r.status_code == 400 and r.json()["message"].startswith("IPC weight update failed")
    assert server.app.weight_version == "ipc-1"
    r = await client.post(url + "/update_weights_from_ipc", json={"weight_version": "3"})
    assert r.status_code == 400 and "zmq_handles" in r.json()["message"]


async def test_weight_update_error_values_are_checked(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError, match="weight_update_error"):
        FaultSpec(weight_update_error="sometimes")
    r = await client.post(server.url + "/_fake/faults", json={"weight_update_error": "boom"})
    assert r.status_code == 400
    assert len(server.app.faults) == 0


async def test_legacy_get_load_counts_live_requests(
    slow: FakeServer, client: httpx.AsyncClient
) -> None:
    url = slow.url
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(Result().post, client, url + "/generate", gen_body(LONG))
        await until(lambda: slow.app.running_requests == 2, "start")
        await client.post(url + "/pause_generation", json={"mode": "retract"})
        (load,) = (await client.get(url + "/get_load")).json()
        assert (load["num_reqs"], load["num_waiting_reqs"]) == (0, 2)
        await client.post(url + "/continue_generation", json={})
        (load,) = (await client.get(url + "/get_load")).json()
        assert (load["num_reqs"], load["num_waiting_reqs"]) == (2, 0)
        await client.post(url + "/abort_request", json={"abort_all": True})


async def test_pause_in_process_without_sockets() -> None:
    # the app's waiting is pure anyio: it also runs inside the caller's trio loop
    app = FakeSGLangApp(FakeConfig(itl_s=ITL))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as c:
        plain = Result()
        async with anyio.create_task_group() as tg:
            tg.start_soon(plain.post, c, "http://fake/generate", gen_body(LONG))
            await until(lambda: app.running_requests == 1, "start")
            await c.post("/pause_generation", json={"mode": "retract"})
            assert app.paused == "retract"
            await c.post("/pause_generation", json={"mode": "abort"})
        assert plain.json["meta_info"]["finish_reason"]["type"] == "abort"
        late = Result()
        async with anyio.create_task_group() as tg:
            tg.start_soon(late.post, c, "http://fake/generate", gen_body(2))
            await until(lambda: app._gate_held == 1, "held")
            await c.post("/continue_generation", json={})
        assert late.json["text"] == FakeSGLangApp.output_text(2)
