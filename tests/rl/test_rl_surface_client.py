"""The RL surface of sglang 0.5.23 on one server: every new client call, sync and async,
on a socket against the fake server (weights read-back and transfer, rewards, readiness,
flush-when-idle, Prometheus loads, typed weight-update options)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from rlinf_http import (
    BadRequestError,
    ClassifyOutput,
    InferenceHTTPClient,
    InvalidRequestError,
    LoraAdapterResult,
    ParameterSlice,
    RemoteTransferEngineInfo,
    RerankResult,
    ScoreResult,
    WeightsCheckResult,
    WeightUpdateError,
)
from rlinf_http.testing import FakeConfig, FakeServer

NORM = "model.norm.weight"
EMBED = "model.embed_tokens.weight"
#: nothing listens here: a call that reached I/O would fail with a connection error
CLOSED = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.02)) as server:
        yield server


# -- weights ------------------------------------------------------------------------------


def test_weights_calls_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        client.update_weight_version("w-sync")
        got = client.get_weights_by_name(EMBED, 3)
        assert isinstance(got, ParameterSlice) and got.name == EMBED
        assert got.values == srv.app.parameter_values(EMBED, 3, version="w-sync")
        with pytest.raises(BadRequestError):
            client.get_weights_by_name("model.nope")
        checked = client.weights_checker()
        assert isinstance(checked, WeightsCheckResult) and checked.per_engine_checksum
        client.weights_checker("snapshot")
        assert client.weights_checker("compare").success
        out = client.update_weights_from_ipc({"GPU-0": "ipc:///tmp/ce"}, weight_version="ipc-1")
        assert out.success and client.weight_version() == "ipc-1"
        with pytest.raises(WeightUpdateError, match="changed since the snapshot"):
            client.weights_checker("compare")
        assert srv.app.stats["last_bodies"]["/update_weights_from_ipc"] == {
            "zmq_handles": {"GPU-0": "ipc:///tmp/ce"},
            "flush_cache": True,
            "torch_empty_cache": False,
            "weight_version": "ipc-1",
        }


def test_remote_instance_and_lora_from_tensors_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        group = client.init_weights_send_group_for_remote_instance(
            "10.0.0.1", [29500], 0, 2, group_name="g-sync"
        )
        assert group.success
        sent = client.send_weights_to_remote_instance(
            "10.0.0.1", "29500,29501", group_name="g-sync"
        )
        assert sent.success
        srv.app.set_transfer_engine_info(3, "sess-3", {"w": [1]})
        info = client.remote_instance_transfer_engine_info(3)
        assert isinstance(info, RemoteTransferEngineInfo) and info.rank == 3
        with pytest.raises(BadRequestError):
            client.remote_instance_transfer_engine_info(7)
        lora = client.load_lora_adapter_from_tensors("ad-sync", {"r": 8}, [b"\x01\x02"])
        assert isinstance(lora, LoraAdapterResult) and "ad-sync" in lora.loaded_adapters
        body = srv.app.stats["last_bodies"]["/load_lora_adapter_from_tensors"]
        assert body["serialized_named_tensors"] == ["AQI="] and body["config_dict"] == {"r": 8}


@pytest.mark.anyio
async def test_weights_calls_async(srv: FakeServer, anyio_backend: str) -> None:
    async with InferenceHTTPClient(srv.url) as client:
        await client.async_update_weight_version("w-async")
        got = await client.async_get_weights_by_name(NORM, 4)
        assert got.values == srv.app.parameter_values(NORM, 4, version="w-async")
        checked = await client.async_weights_checker(skip_tensor_list=["lm_head"])
        assert checked.success and checked.per_engine_checksum
        out = await client.async_update_weights_from_ipc({"GPU-1": "ipc:///x"}, flush_cache=False)
        assert out.success
        group = await client.async_init_weights_send_group_for_remote_instance(
            "10.0.0.2", [29600], 0, 2, group_name=f"g-{anyio_backend}"
        )
        assert group.success
        sent = await client.async_send_weights_to_remote_instance(
            "10.0.0.2", [29600], group_name=f"g-{anyio_backend}"
        )
        assert sent.success
        srv.app.set_transfer_engine_info(5, "sess-5", {})
        assert (await client.async_remote_instance_transfer_engine_info(5)).rank == 5
        lora = await client.async_load_lora_adapter_from_tensors(
            f"ad-{anyio_backend}", {"r": 4}, ["AQI="]
        )
        assert f"ad-{anyio_backend}" in lora.loaded_adapters


def test_weight_update_options_are_typed_keywords(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        out = client.update_weights_from_disk(
            "/ckpt/7",
            weight_version="7",
            keep_pause=True,
            is_async=False,
            token_step=7,
            manifest={"w": {"dtype": "bf16"}},
            recapture_cuda_graph=True,
            torch_empty_cache=True,
        )
        assert out.success
        body = srv.app.stats["last_bodies"]["/update_weights_from_disk"]
        assert (body["keep_pause"], body["is_async"], body["token_step"]) == (True, False, 7)
        assert body["manifest"] == {"w": {"dtype": "bf16"}}
        assert body["recapture_cuda_graph"] is True and body["torch_empty_cache"] is True
        client.update_weights_from_disk("/ckpt/8")
        plain = srv.app.stats["last_bodies"]["/update_weights_from_disk"]
        assert "keep_pause" not in plain and "torch_empty_cache" not in plain  # None: not sent


@pytest.mark.anyio
async def test_weight_calls_refuse_bad_input_before_any_io() -> None:
    async with InferenceHTTPClient(CLOSED, max_retries=0) as client:
        with pytest.raises(InvalidRequestError, match="token_step"):
            await client.async_update_weights_from_disk("/c", token_step=-1)
        with pytest.raises(InvalidRequestError, match="manifest"):
            await client.async_update_weights_from_disk("/c", manifest=[1])  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="torch_empty_cache"):
            await client.async_update_weights_from_tensor([b"x"], torch_empty_cache="y")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="zmq_handles"):
            await client.async_update_weights_from_ipc({})
        with pytest.raises(InvalidRequestError, match="ports"):
            await client.async_send_weights_to_remote_instance("h", "a,b")
        with pytest.raises(InvalidRequestError, match="truncate_size"):
            await client.async_get_weights_by_name("x", 0)
        with pytest.raises(InvalidRequestError, match="action"):
            await client.async_weights_checker("nope")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="timeout"):
            await client.async_flush_cache(timeout=-1)


# -- rewards ------------------------------------------------------------------------------


def test_reward_calls_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        one = client.classify("a good answer", rid="rw-1")
        assert isinstance(one, ClassifyOutput) and one.score == srv.app.reward("a good answer")
        assert one.meta_info["id"] == "rw-1"
        many = client.classify(["a", "b"])
        assert [m.score for m in many] == [srv.app.reward("a"), srv.app.reward("b")]
        by_ids = client.classify(input_ids=[1, 2, 3])
        assert isinstance(by_ids, ClassifyOutput)
        scored = client.score(
            "Is it right?", ["yes", "no"], label_token_ids=[1, 2], apply_softmax=True
        )
        assert isinstance(scored, ScoreResult) and len(scored.scores) == 2
        ranked = client.rerank("q", ["d0", "d1", "d2"], top_n=2)
        assert len(ranked) == 2 and all(isinstance(r, RerankResult) for r in ranked)
        assert ranked[0].score >= ranked[1].score


@pytest.mark.anyio
async def test_reward_calls_async(srv: FakeServer) -> None:
    async with InferenceHTTPClient(srv.url) as client:
        one = await client.async_classify("x")
        assert one.score == srv.app.reward("x")
        scored = await client.async_score([1, 2], [[3], [4]], label_token_ids=[5, 6])
        assert len(scored.scores) == 2
        ranked = await client.async_rerank("q", ["a", "b"], return_documents=False)
        assert sorted(r.index for r in ranked) == [0, 1] and ranked[0].document is None
        with pytest.raises(InvalidRequestError, match="top_n"):
            await client.async_rerank("q", ["a"], top_n=0)
        with pytest.raises(InvalidRequestError, match="rid"):
            await client.async_classify("x", rid="")


# -- readiness, flush when idle, Prometheus loads ------------------------------------------


def test_ready_ping_flush_and_prometheus_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        assert client.ready() is True and client.ping() is True
        client.pause_generation("retract")
        try:
            assert client.ready() is False  # paused: not taking requests ...
            assert client.ping() is True  # ... but alive
        finally:
            client.continue_generation()
        assert client.ready() is True
        assert client.flush_cache(timeout=5.0).flushed
        assert client.flush_cache().flushed
        text = client.loads_prometheus("core")
        assert 'sglang_num_running_reqs{dp_rank="0"}' in text


@pytest.mark.anyio
async def test_ready_ping_flush_and_prometheus_async(srv: FakeServer) -> None:
    async with InferenceHTTPClient(srv.url) as client:
        await client.async_pause_generation("in_place")
        try:
            assert await client.async_ready() is False
            assert await client.async_ping() is True
        finally:
            await client.async_continue_generation()
        assert await client.async_ready() is True
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: client.async_generate("x", sampling_params={"max_new_tokens": 40})
            )
            await anyio.sleep(0.1)
            late = await client.async_flush_cache(timeout=0.2)  # busy: waits, then gives up
            assert not late.flushed and "Timed out waiting for idle state" in (late.message or "")
            waited = await client.async_flush_cache(timeout=10.0)  # waits for idle, flushes
            assert waited.flushed
        assert "sglang_" in await client.async_loads_prometheus(dp_rank=0)


def test_rerank_reads_a_gateways_wrapped_answer_and_refuses_other_shapes() -> None:
    from rl_helpers import raw

    from rlinf_http import APIResponseValidationError
    from rlinf_http._core.rewards import build_rerank

    op = build_rerank("q", ["a", "b"])
    item = {"score": 0.5, "index": 1, "document": "b"}
    wrapped = op.parse(raw(op, 200, {"results": [item], "object": "rerank", "model": "m"}))
    assert [r.index for r in wrapped] == [1]
    for bad in ({"results": "x"}, {"results": [{"score": "high"}]}, {"data": []}):
        with pytest.raises(APIResponseValidationError):
            op.parse(raw(op, 200, bad))
