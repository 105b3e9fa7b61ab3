"""The fake server's RL surface, in-process (ASGI) and on sockets, driven by the core's plans."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from rlinf_http import (
    BadRequestError,
    ClassifyOutput,
    GenerateOutput,
    InferenceHTTPClient,
    LoraAdapterResult,
    ParameterSlice,
    RerankResult,
    ScoreResult,
    WeightsCheckResult,
    WeightUpdateError,
)
from rlinf_http._core import control, probes, rewards, rl_generate, weights_check, weights_io
from rlinf_http._core.plans import Call, Plan, Sleep
from rlinf_http._core.requests import Operation, build_generate
from rlinf_http._core.responses import RawResponse, status_error
from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp
from rlinf_http.testing._rl_generate import HIDDEN_SIZE, ROUTED_LAYERS, ROUTED_TOP_K

EMBED = "model.embed_tokens.weight"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _raw(op: Operation[Any], response: httpx.Response) -> RawResponse:
    return RawResponse(
        op.method, str(response.url), response.status_code, response.headers, response.content
    )


async def arun(client: httpx.AsyncClient, plan: Plan[Any]) -> Any:
    """Drive a plan over ``client`` (a minimal driver: no retries)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        if isinstance(step, Sleep):
            await anyio.sleep(step.seconds)
            continue
        assert isinstance(step, Call)
        op = step.op
        try:
            response = await client.request(
                op.method,
                op.path,
                content=op.content,
                headers=dict(op.headers),
                timeout=step.timeout,
            )
        except httpx.TransportError as exc:
            from rlinf_http import APIConnectionError

            error = APIConnectionError(str(exc))
            continue
        raw = _raw(op, response)
        if raw.is_success:
            try:
                value = op.parse(raw)
            except Exception as exc:
                error = exc
        else:
            error = status_error(raw)


def run(client: httpx.Client, plan: Plan[Any]) -> Any:
    """Drive a plan over a sync ``client``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        assert isinstance(step, Call)
        op = step.op
        response = client.request(
            op.method, op.path, content=op.content, headers=dict(op.headers), timeout=step.timeout
        )
        raw = _raw(op, response)
        if raw.is_success:
            try:
                value = op.parse(raw)
            except Exception as exc:
                error = exc
        else:
            error = status_error(raw)


def asgi(app: FakeSGLangApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake")


def single(op: Operation[Any]) -> Plan[Any]:
    result = yield Call(op)
    return result


# -- weights read-back and checker (ASGI) ----------------------------------------------------


@pytest.mark.anyio
async def test_get_weights_by_name_follows_the_weight_version() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        before = await arun(c, weights_io.get_weights_by_name_plan(EMBED, 3))
        assert isinstance(before, ParameterSlice) and before.shape == (3, 8)
        assert before.values == app.parameter_values(EMBED, 3)
        again = await arun(c, weights_io.get_weights_by_name_plan(EMBED, 3))
        assert again.values == before.values  # deterministic
        await arun(c, control.update_weight_version_plan("v2"))
        after = await arun(c, weights_io.get_weights_by_name_plan(EMBED, 3))
        assert after.values != before.values
        assert after.values == app.parameter_values(EMBED, 3, version="v2")
        norm = await arun(c, weights_io.get_weights_by_name_plan("model.norm.weight", 5))
        assert norm.shape == (5,)
        with pytest.raises(BadRequestError, match="Get parameter by name failed"):
            await arun(c, weights_io.get_weights_by_name_plan("model.nope"))


@pytest.mark.anyio
async def test_weights_checker_checksum_snapshot_compare() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        first = await arun(c, weights_io.weights_checker_plan())
        assert isinstance(first, WeightsCheckResult) and first.per_engine_checksum
        assert first.ranks and first.ranks[0].parallelism_info[0].tp_size == 1
        await arun(c, weights_io.weights_checker_plan("snapshot"))
        ok = await arun(c, weights_io.weights_checker_plan("compare"))
        assert ok.success
        await arun(c, control.update_weight_version_plan("v2"))
        second = await arun(c, weights_io.weights_checker_plan())
        assert second.per_engine_checksum != first.per_engine_checksum
        with pytest.raises(WeightUpdateError, match="changed since the snapshot"):
            await arun(c, weights_io.weights_checker_plan("compare"))
        # the body is optional on /weights_checker
        r = await c.post("/weights_checker")
        assert r.status_code == 200 and "per_engine_checksum" in r.json()


# -- moving weights (ASGI) -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_update_weights_from_ipc_changes_the_version() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        out = await arun(
            c,
            weights_io.update_weights_from_ipc_plan({"GPU-0": "ipc:///tmp/x"}, weight_version="7"),
        )
        assert out.success
    assert app.weight_version == "7"
    assert app.control_state()["weight_updates"][-1]["kind"] == "ipc"


@pytest.mark.anyio
async def test_remote_instance_send_flow_and_transfer_info() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        with pytest.raises(WeightUpdateError, match="not initialized"):
            await arun(c, weights_io.send_weights_to_remote_instance_plan("10.0.0.1", [29500]))
        await arun(
            c,
            weights_io.init_weights_send_group_for_remote_instance_plan("10.0.0.1", [29500], 0, 2),
        )
        with pytest.raises(WeightUpdateError, match="already exists"):
            await arun(
                c,
                weights_io.init_weights_send_group_for_remote_instance_plan(
                    "10.0.0.1", [29500], 0, 2
                ),
            )
        sent = await arun(c, weights_io.send_weights_to_remote_instance_plan("10.0.0.1", [29500]))
        assert sent.success
        assert app.control_state()["weight_updates"][-1]["kind"] == "remote_send"
        with pytest.raises(BadRequestError, match="rank 0"):
            await arun(c, weights_io.remote_instance_transfer_engine_info_plan(0))
        app.set_transfer_engine_info(0, "sess-0", {"w": [1, 2]})
        info = await arun(c, weights_io.remote_instance_transfer_engine_info_plan(0))
        assert (info.rank, info.session_id, info.weights_info) == (0, "sess-0", {"w": [1, 2]})
        r = await c.get("/remote_instance_transfer_engine_info")
        assert r.status_code == 400 and "Missing or invalid rank" in r.text


@pytest.mark.anyio
async def test_load_lora_adapter_from_tensors() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        plan = weights_io.load_lora_adapter_from_tensors_plan("ad", {"r": 8}, [b"\x01"])
        out = await arun(c, plan)
        assert isinstance(out, LoraAdapterResult) and out.loaded_adapters == {"ad": "__tensor__"}
        assert app.lora_adapters == {"ad": "__tensor__"}
        with pytest.raises(BadRequestError, match="already loaded"):
            await arun(c, weights_io.load_lora_adapter_from_tensors_plan("ad", {}, [b"\x01"]))
    off = FakeSGLangApp(FakeConfig(enable_lora=False))
    async with asgi(off) as c:
        with pytest.raises(BadRequestError, match="LoRA is not enabled"):
            await arun(c, weights_io.load_lora_adapter_from_tensors_plan("ad", {}, [b"\x01"]))


@pytest.mark.anyio
async def test_disk_update_accepts_the_new_options() -> None:
    app = FakeSGLangApp()
    extra = weights_io.weight_update_options(
        keep_pause=False, token_step=3, manifest={"w": {}}, recapture_cuda_graph=True
    )
    async with asgi(app) as c:
        out = await arun(
            c, control.update_weights_from_disk_plan("/ckpt/3", weight_version="3", extra=extra)
        )
    assert out.success and app.weight_version == "3"
    assert app.stats["last_bodies"]["/update_weights_from_disk"]["token_step"] == 3


# -- rewards (ASGI) -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_classify_score_rerank() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        one = await arun(c, single(rewards.build_classify("a good answer")))
        assert isinstance(one, ClassifyOutput) and one.score == app.reward("a good answer")
        many = await arun(c, single(rewards.build_classify(["a", "b"], kwargs={"rid": "r"})))
        assert [m.score for m in many] == [app.reward("a"), app.reward("b")]
        assert [m.meta_info["id"] for m in many] == ["r_0", "r_1"]
        scored = await arun(
            c,
            single(
                rewards.build_score(
                    "Is it right?", ["yes", "no"], label_token_ids=[1, 2], apply_softmax=True
                )
            ),
        )
        assert isinstance(scored, ScoreResult) and len(scored.scores) == 2
        assert all(abs(sum(row) - 1.0) < 1e-9 for row in scored.scores)
        ranked = await arun(c, single(rewards.build_rerank("q", ["d0", "d1", "d2"], top_n=2)))
        assert len(ranked) == 2 and all(isinstance(r, RerankResult) for r in ranked)
        assert ranked[0].score >= ranked[1].score and ranked[0].document == f"d{ranked[0].index}"
        r = await c.post("/v1/rerank", json={"query": " ", "documents": ["d"]})
        assert r.status_code == 400 and "Query cannot be empty" in r.text


# -- /generate RL fields (ASGI) -------------------------------------------------------------------


@pytest.mark.anyio
async def test_generate_rl_fields_shapes() -> None:
    app = FakeSGLangApp()
    fields = rl_generate.generate_rl_fields(
        return_routed_experts=True,
        routed_experts_start_len=1,
        return_hidden_states=True,
        return_sampling_mask=True,
        sampling_logprobs_mode="support",
        return_entropy=True,
        scheduler_routing_key="k",
        routed_dp_rank=0,
        cache_salt="s",
    )
    op = build_generate(
        "one two three",
        None,
        {"max_new_tokens": 4},
        True,
        {"token_ids_logprob": [5, 6]},
        rl_fields=fields,
    )
    async with asgi(app) as c:
        out = await arun(c, single(op))
    assert isinstance(out, GenerateOutput)
    meta = out.meta_info
    experts = out.routed_expert_ids()
    assert experts is not None
    assert len(experts) == (3 + 4 - 1 - 1) * ROUTED_LAYERS * ROUTED_TOP_K
    assert meta.hidden_states is not None and len(meta.hidden_states) == 4
    assert len(meta.hidden_states[0]) == HIDDEN_SIZE
    assert meta.output_token_sampling_mask is not None and len(meta.output_token_sampling_mask) == 4
    assert meta.output_token_sampling_logprobs is not None
    assert isinstance(meta.output_token_sampling_logprobs[0], list)  # support mode
    assert meta.output_token_sampling_mask_length == 4
    assert meta.output_token_ids_logprobs is not None
    assert [lp.token_id for lp in meta.output_token_ids_logprobs[0] or []] == [5, 6]
    assert meta.num_retractions == 0
    assert "entropy" not in meta.keys()  # sglang 0.5.23 accepts return_entropy, sends nothing
    assert not rl_generate.weight_version_mix(out).mixed
    last = build_generate("x", None, None, False, {}, rl_fields={"return_hidden_states": "last"})
    async with asgi(app) as c:
        tail = await arun(c, single(last))
    assert tail.meta_info.hidden_states is not None and len(tail.meta_info.hidden_states) == 1


@pytest.mark.anyio
async def test_generate_rl_fields_refused_like_sglang() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        r = await c.post("/generate", json={"text": "x", "sampling_logprobs_mode": "selected"})
        assert r.status_code == 400 and "return_sampling_mask=true" in r.text
        r = await c.post("/generate", json={"text": "x", "routed_dp_rank": 2})
        assert r.status_code == 400 and "out of range [0, 1)" in r.text


@pytest.mark.anyio
async def test_stream_carries_sampling_mask_increments() -> None:
    app = FakeSGLangApp()
    fields = {"return_sampling_mask": True}
    op = build_generate("x", None, {"max_new_tokens": 3}, False, {}, stream=True, rl_fields=fields)
    async with asgi(app) as c:
        r = await c.post("/generate", content=op.content, headers=dict(op.headers))
    chunks = [line for line in r.text.split("\n\n") if line.startswith("data: {")]
    assert chunks and '"output_token_sampling_mask"' in chunks[-1]


# -- readiness (ASGI) --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_ready_ping_and_worker_status_while_paused() -> None:
    app = FakeSGLangApp()
    async with asgi(app) as c:
        assert await arun(c, probes.ready_plan()) is True
        await arun(c, control.pause_generation_plan("retract"))
        assert await arun(c, probes.ready_plan()) is False
        assert await arun(c, probes.ping_plan()) is True
        await arun(c, control.continue_generation_plan())
        assert await arun(c, probes.ready_plan()) is True
        text = await arun(c, probes.loads_prometheus_plan("core"))
        assert 'sglang_num_running_reqs{dp_rank="0"} 0' in text


# -- sockets ---------------------------------------------------------------------------------


@pytest.fixture
def two_servers() -> Iterator[tuple[FakeServer, FakeServer]]:
    with FakeServer() as a, FakeServer() as b:
        yield a, b


def test_verify_a_weight_sync_on_sockets(two_servers: tuple[FakeServer, FakeServer]) -> None:
    a, b = two_servers
    names = [EMBED, "model.norm.weight"]
    for srv, version in ((a, "step-2"), (b, "step-1")):  # b missed the last update
        with httpx.Client(base_url=srv.url, trust_env=False) as c:
            run(c, control.update_weight_version_plan(version))
    read: dict[str, Any] = {}
    for srv in (a, b):
        with httpx.Client(base_url=srv.url, trust_env=False) as c:
            read[srv.url] = run(c, weights_io.read_parameters_plan(names, 4))
    read["http://127.0.0.1:9"] = ConnectionError("refused")
    expected = {n: a.app.parameter_values(n, version="step-2") for n in names}  # the trainer's
    report = weights_check.compare_weight_slices(read, expected)
    assert report.matched == [a.url] and report.mismatched == [b.url]
    assert list(report.errors) == ["http://127.0.0.1:9"]
    diff = report.workers[b.url].parameters[0]
    assert diff.first_mismatch_index == 0 and diff.max_abs_diff and diff.max_abs_diff > 0
    peers = weights_check.compare_weight_slices({a.url: read[a.url], b.url: read[b.url]})
    assert peers.reference == a.url and peers.mismatched == [b.url]


def test_public_post_reaches_the_new_endpoints(two_servers: tuple[FakeServer, FakeServer]) -> None:
    srv, _ = two_servers
    with InferenceHTTPClient(srv.url) as client:
        values = client.post(
            "/get_weights_by_name", {"name": "model.norm.weight", "truncate_size": 3}
        )
        assert values == srv.app.parameter_values("model.norm.weight", 3)
        out = client.post("/classify", {"text": "reward me"})
        assert out["embedding"] == [srv.app.reward("reward me")]
        checked = client.post("/weights_checker", {"action": "checksum"})
        assert checked["success"] is True and checked["per_engine_checksum"]


@pytest.mark.anyio
async def test_async_post_and_flush_when_idle_on_sockets() -> None:
    with FakeServer(config=FakeConfig(ttft_s=0.0, itl_s=0.05)) as srv:
        async with InferenceHTTPClient(srv.url) as client:
            ranked = await client.async_post("/v1/rerank", {"query": "q", "documents": ["a", "b"]})
            assert sorted(r["index"] for r in ranked) == [0, 1]
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as c:
            async with anyio.create_task_group() as tg:
                body = {"text": "x", "sampling_params": {"max_new_tokens": 6}}
                tg.start_soon(lambda: c.post("/generate", json=body))
                await anyio.sleep(0.1)
                flushed = await arun(c, probes.flush_cache_when_idle_plan(5.0))
            assert flushed.flushed
            busy_body = {"text": "x", "sampling_params": {"max_new_tokens": 40}}
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: c.post("/generate", json=busy_body))
                await anyio.sleep(0.1)
                late = await arun(c, probes.flush_cache_when_idle_plan(0.2))
                assert not late.flushed and "Timed out waiting for idle state" in late.message
                await c.post("/abort_request", json={"rid": "", "abort_all": True})


def test_routed_experts_decode_roundtrip() -> None:
    ids = [1, 7, 3]
    text = base64.b64encode(struct.pack("<3i", *ids)).decode()
    out = GenerateOutput.model_validate({"meta_info": {"routed_experts": text}})
    assert out.routed_expert_ids() == ids


@pytest.mark.anyio
async def test_stale_label_after_a_failed_flush_and_the_guidance() -> None:
    from rlinf_http import CacheNotFlushedError
    from rlinf_http.testing import FaultSpec

    app = FakeSGLangApp(FakeConfig(stale_label_after_flush_failure=True))
    app.faults.add(FaultSpec(path="/update_weights_from_disk", weight_update_error="flush"))
    async with asgi(app) as c:
        with pytest.raises(CacheNotFlushedError) as info:
            await arun(c, control.update_weights_from_disk_plan("/ckpt/2", weight_version="2"))
        assert "update_weight_version" in str(info.value)
        # sglang 0.5.23: the label stays old while the new weights are served
        assert await arun(c, control.weight_version_plan()) == "default"
        out = await arun(c, single(build_generate("x", None, {"max_new_tokens": 2}, False, {})))
        assert out.meta_info.weight_version == "2"
        served = await arun(c, weights_io.get_weights_by_name_plan(EMBED, 2))
        assert served.values == app.parameter_values(EMBED, 2, version="2")
        # the guidance: flush once idle, then relabel
        assert (await arun(c, probes.flush_cache_when_idle_plan(1.0))).flushed
        await arun(c, control.update_weight_version_plan("2"))
        assert await arun(c, control.weight_version_plan()) == "2"
    default = FakeSGLangApp()  # without the flag the label moves with the weights
    default.faults.add(FaultSpec(path="/update_weights_from_disk", weight_update_error="flush"))
    async with asgi(default) as c:
        with pytest.raises(CacheNotFlushedError):
            await arun(c, control.update_weights_from_disk_plan("/ckpt/2", weight_version="2"))
        assert await arun(c, control.weight_version_plan()) == "2"
