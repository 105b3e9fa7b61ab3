"""Every control call, sync and async, against one fake sglang server on a loopback socket.

Each test runs twice per event loop: ``sync`` calls the blocking method (in a
worker thread), ``async`` awaits its ``async_`` twin. The server's state is read
from the in-process app (``srv.app.control_state()``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from rlinf_http import (
    BadRequestError,
    CacheNotFlushedError,
    Fleet,
    GenerateOutput,
    GenerationControlResult,
    InferenceHTTPClient,
    InvalidRequestError,
    Loads,
    WeightUpdateError,
    WeightUpdateResult,
    WeightVersionResult,
)
from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec

pytestmark = pytest.mark.anyio

LONG = 1000  # tokens at 20 ms: 20 s, far longer than any test waits


@pytest.fixture
def srv() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.02)) as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Caller:
    """``await call(name, ...)``: the sync method in a worker thread, or the async twin."""

    def __init__(self, client: InferenceHTTPClient, flavor: str) -> None:
        self.client = client
        self.sync = flavor == "sync"

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.sync:
            method = getattr(self.client, name)
            return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))
        return await getattr(self.client, "async_" + name)(*args, **kwargs)


@pytest.fixture
async def call(srv: FakeServer, flavor: str) -> AsyncIterator[Caller]:
    client = InferenceHTTPClient(srv.url, max_retries=0)
    try:
        yield Caller(client, flavor)
    finally:
        await client.aclose()


async def until(condition: Any, what: str) -> None:
    with anyio.fail_after(20):
        while not condition():
            await anyio.sleep(0.01)


def requests(srv: FakeServer, path: str) -> int:
    return int(srv.app.stats["requests"].get(path, 0))


# -- weights ----------------------------------------------------------------------------


async def test_update_weights_from_disk(srv: FakeServer, call: Caller) -> None:
    assert await call("weight_version") == "default"
    out = await call("update_weights_from_disk", "/ckpt/step-100", weight_version="100")
    assert isinstance(out, WeightUpdateResult) and out.success and out.num_paused_requests == 0
    state = srv.app.control_state()
    assert state["weight_version"] == "100" and state["model_path"] == "/ckpt/step-100"
    assert await call("weight_version") == "100"
    info = await call("model_info")
    assert info.model_path == "/ckpt/step-100" and info.weight_version == "100"
    gen = await call("generate", "hi", sampling_params={"max_new_tokens": 1})
    assert isinstance(gen, GenerateOutput) and gen.meta_info.weight_version == "100"
    assert srv.app.stats["last_bodies"]["/update_weights_from_disk"] == {
        "model_path": "/ckpt/step-100",
        "abort_all_requests": False,
        "flush_cache": True,
        "weight_version": "100",
    }


async def test_failed_load_is_typed_and_changes_nothing(srv: FakeServer, call: Caller) -> None:
    srv.app.faults.add(FaultSpec(path="/update_weights_from_disk", weight_update_error="load"))
    with pytest.raises(WeightUpdateError) as info:
        await call("update_weights_from_disk", "/ckpt/bad", weight_version="1")
    assert type(info.value) is WeightUpdateError and info.value.weights_updated is False
    assert info.value.message is not None and "/ckpt/bad" in info.value.message
    assert srv.app.control_state()["weight_version"] == "default"
    assert requests(srv, "/update_weights_from_disk") == 1  # never resent


async def test_flush_failure_after_load_is_told_apart(srv: FakeServer, call: Caller) -> None:
    srv.app.faults.add(FaultSpec(path="/update_weights_from_disk", weight_update_error="flush"))
    with pytest.raises(CacheNotFlushedError) as info:
        await call("update_weights_from_disk", "/ckpt/2", weight_version="2")
    assert info.value.weights_updated is True
    assert srv.app.control_state()["weight_version"] == "2"  # the weights were swapped


async def test_flush_fails_for_real_while_requests_are_held(srv: FakeServer, call: Caller) -> None:
    # An in_place pause keeps the running request (and its KV): the load works,
    # but sglang cannot flush a busy cache.
    async with anyio.create_task_group() as tg:
        outputs: list[GenerateOutput] = []

        async def generate() -> None:
            outputs.append(await call("generate", "x", sampling_params={"max_new_tokens": 40}))

        tg.start_soon(generate)
        await until(lambda: srv.app.running_requests == 1, "a running generation")
        assert isinstance(await call("pause_generation", "in_place"), GenerationControlResult)
        with pytest.raises(CacheNotFlushedError):
            await call("update_weights_from_disk", "/ckpt/3", weight_version="3")
        assert srv.app.control_state()["weight_version"] == "3"
        await call("continue_generation")
    assert outputs[0].meta_info.completion_tokens == 40  # held, then finished


async def test_group_session_and_distributed_update(srv: FakeServer, call: Caller) -> None:
    out = await call("init_weights_update_group", "127.0.0.1", 29500, 1, 2, group_name="g")
    assert out.success and "g" in srv.app.control_state()["weight_update_groups"]
    # 0.5.23 refuses the update outside a begin/end session, with its own message
    with pytest.raises(WeightUpdateError, match="begin_weight_update"):
        await call("update_weights_from_distributed", ["w"], ["bfloat16"], [[2]], group_name="g")
    assert isinstance(await call("begin_weight_update"), WeightUpdateResult)
    assert srv.app.control_state()["weight_update_session"] is True
    out = await call(
        "update_weights_from_distributed",
        ["a", "b"],
        ["bfloat16", "float32"],
        [[2, 2], [3]],
        group_name="g",
        weight_version="5",
    )
    assert out.success and "Weight version updated to 5" in out.message
    await call("end_weight_update")
    state = srv.app.control_state()
    assert state["weight_update_session"] is False and state["weight_version"] == "5"
    assert state["weight_updates"][-1]["names"] == ["a", "b"]
    # wrapped in its own session
    await call(
        "update_weights_from_distributed",
        ["c"],
        ["float16"],
        [[1]],
        group_name="g",
        weight_version="6",
        wrap_session=True,
    )
    assert srv.app.control_state()["weight_version"] == "6"
    assert srv.app.control_state()["weight_update_session"] is False
    await call("destroy_weights_update_group", "g")
    with pytest.raises(WeightUpdateError, match="does not exist"):
        await call("destroy_weights_update_group", "g")
    with pytest.raises(WeightUpdateError, match="without begin"):
        await call("end_weight_update")


async def test_tensor_update(srv: FakeServer, call: Caller) -> None:
    with pytest.raises(WeightUpdateError, match="begin_weight_update"):
        await call("update_weights_from_tensor", [b"\x80\x04tensors"])
    out = await call(
        "update_weights_from_tensor", [b"\x80\x04tensors"], weight_version="t1", wrap_session=True
    )
    assert out.success and srv.app.control_state()["weight_version"] == "t1"
    sent = srv.app.stats["last_bodies"]["/update_weights_from_tensor"]
    assert sent["serialized_named_tensors"] == ["gAR0ZW5zb3Jz"]  # base64 on the wire


async def test_session_context_managers(srv: FakeServer, flavor: str) -> None:
    client = InferenceHTTPClient(srv.url)
    try:
        with pytest.raises(ZeroDivisionError):
            if flavor == "sync":

                def body() -> None:
                    with client.weight_update_session():
                        client.update_weights_from_tensor([b"x"], weight_version="s")
                        raise ZeroDivisionError

                await anyio.to_thread.run_sync(body)
            else:
                async with client.async_weight_update_session():
                    await client.async_update_weights_from_tensor([b"x"], weight_version="s")
                    raise ZeroDivisionError
        state = srv.app.control_state()
        assert state["weight_update_session"] is False and state["weight_version"] == "s"
    finally:
        await client.aclose()


async def test_update_weight_version(srv: FakeServer, call: Caller) -> None:
    out = await call("update_weight_version", "v9", abort_all_requests=False)
    assert isinstance(out, WeightVersionResult) and out.new_version == "v9"
    assert await call("weight_version") == "v9"


async def test_update_weight_version_aborts_by_default(srv: FakeServer, call: Caller) -> None:
    async with anyio.create_task_group() as tg:
        outputs: list[GenerateOutput] = []

        async def generate() -> None:
            outputs.append(await call("generate", "x", sampling_params={"max_new_tokens": LONG}))

        tg.start_soon(generate)
        await until(lambda: srv.app.running_requests == 1, "a running generation")
        await call("update_weight_version", "v10")
    assert outputs[0].meta_info.finish_reason is not None
    assert outputs[0].meta_info.finish_reason.type == "abort"


# -- generation -------------------------------------------------------------------------


async def test_pause_abort_ends_running_requests(srv: FakeServer, call: Caller) -> None:
    async with anyio.create_task_group() as tg:
        outputs: list[GenerateOutput] = []

        async def generate() -> None:
            outputs.append(await call("generate", "x", sampling_params={"max_new_tokens": LONG}))

        tg.start_soon(generate)
        await until(lambda: srv.app.running_requests == 1, "a running generation")
        out = await call("pause_generation", "abort")
        assert out.status == "ok" and srv.app.paused == "abort"
        await call("continue_generation")
    assert outputs[0].meta_info.finish_reason.type == "abort"  # type: ignore[union-attr]
    assert srv.app.paused is None


async def test_pause_retract_holds_new_requests_until_continue(
    srv: FakeServer, call: Caller
) -> None:
    assert (await call("pause_generation", "retract")).message.startswith("Generation paused")
    async with anyio.create_task_group() as tg:
        outputs: list[GenerateOutput] = []

        async def generate() -> None:
            outputs.append(await call("generate", "x", sampling_params={"max_new_tokens": 2}))

        tg.start_soon(generate)
        await until(lambda: requests(srv, "/generate") == 1, "the request to arrive")
        loads = await call("loads", "all")
        assert isinstance(loads, Loads) and loads.num_waiting_reqs == 1 and not outputs
        await call("continue_generation", torch_empty_cache=False)
    assert outputs[0].text == " tok0 tok1"
    assert srv.app.stats["last_bodies"]["/continue_generation"] == {"torch_empty_cache": False}


# -- memory and loads -------------------------------------------------------------------


async def test_memory_tags(srv: FakeServer, call: Caller) -> None:
    assert await call("release_memory_occupation", ["kv_cache", "weights"]) is None
    assert srv.app.control_state()["released_memory_tags"] == ["kv_cache", "weights"]
    memory = (await call("loads", "memory")).loads[0].memory
    assert memory is not None and memory["weight_gb"] == 0.0
    with pytest.raises(BadRequestError, match="not released"):
        await call("resume_memory_occupation")  # all three, but cuda_graph was not released
    assert await call("resume_memory_occupation", ["weights"]) is None
    assert await call("resume_memory_occupation", ["kv_cache"]) is None
    assert srv.app.control_state()["released_memory_tags"] == []
    assert await call("release_memory_occupation") is None  # every tag
    assert srv.app.stats["last_bodies"]["/release_memory_occupation"] == {}
    assert await call("resume_memory_occupation") is None


async def test_loads_count_running_requests(srv: FakeServer, call: Caller) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            functools.partial(call, "generate", "x", sampling_params={"max_new_tokens": LONG})
        )
        await until(lambda: srv.app.running_requests == 1, "a running generation")
        loads = await call("loads")
        assert loads.num_running_reqs == 1 and loads.loads[0].dp_rank == 0
        assert (await call("loads", ["core"], dp_rank=0)).loads[0].queues is None
        await call("abort_request", abort_all=True)
    assert (await call("loads")).num_running_reqs == 0


async def test_bad_arguments_send_nothing(srv: FakeServer, call: Caller) -> None:
    for name, args in (
        ("pause_generation", ("drain",)),
        ("update_weights_from_disk", ("",)),
        ("update_weight_version", (3,)),
        ("release_memory_occupation", (["vram"],)),
        ("loads", ("bogus",)),
        ("init_weights_update_group", ("h", 29500, 0, 2)),
    ):
        with pytest.raises(InvalidRequestError):
            await call(name, *args)
    assert srv.app.stats["requests"] == {}


# -- a single server as a fleet of one --------------------------------------------------


async def test_single_server_fleet(srv: FakeServer, flavor: str) -> None:
    client = InferenceHTTPClient(srv.url)
    try:
        if flavor == "sync":
            fleet = await anyio.to_thread.run_sync(client.fleet)
        else:
            fleet = await client.async_fleet()
        assert isinstance(fleet, Fleet) and fleet.urls == [srv.url]
        await fleet.async_update_weights_from_disk("/ckpt/1", weight_version="1")
        assert dict(await fleet.async_check_weight_version("1")) == {srv.url: "1"}
        await fleet.aclose()
    finally:
        await client.aclose()


async def test_caller_deadline_bounds_a_weight_update(srv: FakeServer) -> None:
    # sglang has no timeout on weight calls and the client bounds only connecting:
    # the caller's own deadline ends the wait, and the client stays usable.
    srv.app.faults.add(FaultSpec(path="/update_weights_from_disk", delay_s=60))
    client = InferenceHTTPClient(srv.url)
    try:
        with anyio.move_on_after(0.3) as scope:
            await client.async_update_weights_from_disk("/ckpt/slow", weight_version="slow")
        assert scope.cancelled_caught
        assert await client.async_weight_version() == "default"
        await client.async_update_weight_version("next", abort_all_requests=False)
        assert await client.async_weight_version() == "next"
    finally:
        await client.aclose()
