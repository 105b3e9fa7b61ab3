"""The RL surface through the real gateways (sglang-router 0.3.2 and smg 1.13) in front of
two fake worker processes.

What each gateway does (observed with these binaries, and pinned here):

- neither forwards ``/get_weights_by_name``, ``/weights_checker``, ``/ready``, ``/ping``,
  ``/v1/loads`` (404): those calls go to every worker through ``client.fleet()``;
- neither forwards ``/classify`` nor ``/v1/score`` (404: call a server);
- both forward ``/v1/rerank``, re-wrapped as ``{"results": [...]}`` and without ``top_n``
  (``client.rerank`` reads both shapes and applies ``top_n`` itself);
- on ``/generate`` sglang-router drops ``return_routed_experts``, ``return_sampling_mask``,
  ``cache_salt``, ``max_thinking_tokens`` and the body ``routing_key``; smg forwards them.
  Both keep ``rid`` and ``return_hidden_states``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rlinf_http import InferenceHTTPClient, NotFoundError, RerankResult
from rlinf_http.testing import (
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
    start_fake_worker,
)
from rlinf_http.testing._weights_check import parameter_values

NORM = "model.norm.weight"
GATEWAYS = [
    pytest.param(
        "sglang-router",
        marks=pytest.mark.skipif(not router_available(), reason="needs sglang-router"),
    ),
    pytest.param("smg", marks=pytest.mark.skipif(not smg_available(), reason="needs smg")),
]
#: the RL fields each gateway passes on to the worker's /generate
FORWARDED = {
    "sglang-router": {"return_hidden_states"},
    "smg": {
        "return_hidden_states",
        "return_routed_experts",
        "return_sampling_mask",
        "cache_salt",
        "routing_key",
        "max_thinking_tokens",
    },
}


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    with start_fake_worker() as a, start_fake_worker() as b:
        yield [a, b]


@pytest.fixture(scope="module", params=GATEWAYS)
def gateway(
    request: pytest.FixtureRequest, workers: list[FakeWorkerProcess]
) -> Iterator[tuple[str, RouterProcess]]:
    kind = str(request.param)
    with launch_router([w.url for w in workers], gateway=kind) as router:  # type: ignore[arg-type]
        yield kind, router


def _generate_body(workers: list[FakeWorkerProcess], rid: str) -> dict[str, Any]:
    import httpx

    for w in workers:
        body = httpx.get(w.url + "/_fake/stats", timeout=10).json()["last_bodies"].get("/generate")
        if body and body.get("rid") == rid:
            return dict(body)
    raise AssertionError(f"no worker got rid {rid!r}")


def test_fleet_calls_through_the_gateway(
    gateway: tuple[str, RouterProcess], workers: list[FakeWorkerProcess]
) -> None:
    kind, router = gateway
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        with pytest.raises(NotFoundError):
            client.get_weights_by_name(NORM)  # not forwarded: ask the workers
        with pytest.raises(NotFoundError):
            client.ready()
        with client.fleet() as fleet:
            assert set(fleet.urls) == {w.url for w in workers}
            fleet.update_weight_version(f"{kind}-1")
            trainer = {NORM: parameter_values(NORM, f"{kind}-1")}
            report = fleet.verify_weights(expected=trainer, truncate_size=8)
            assert report.ok, report.summary()
            assert fleet.ready().results == dict.fromkeys(fleet.urls, True)
            assert all(fleet.ping().results.values())
            sums = fleet.weights_checker().results
            assert len({s.per_engine_checksum for s in sums.values()}) == 1
            assert all(r.flushed for r in fleet.flush_cache(timeout=2.0).results.values())
            assert all("sglang_" in t for t in fleet.loads_prometheus().results.values())
            fleet.update_weights_from_ipc({"GPU-0": "ipc:///ce"}, weight_version=f"{kind}-2")
            fleet.check_weight_version(f"{kind}-2")
            read = fleet.get_weights_by_name(NORM, 3).results
            assert all(r.values == parameter_values(NORM, f"{kind}-2", 3) for r in read.values())
            name = f"gw-{kind}"
            loaded = fleet.load_lora_adapter_from_tensors(name, {"r": 2}, [b"\x00"]).results
            assert all(name in r.loaded_adapters for r in loaded.values())


def test_server_only_calls_are_404_on_the_gateway(gateway: tuple[str, RouterProcess]) -> None:
    """What the gateways refuse (and so what ``client.fleet()`` is for)."""
    _, router = gateway
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        for call in (
            lambda: client.ping(),
            lambda: client.weights_checker(),
            lambda: client.loads_prometheus(),
            lambda: client.remote_instance_transfer_engine_info(0),
        ):
            with pytest.raises(NotFoundError):
                call()
        for weight_call in (
            lambda: client.update_weights_from_ipc({"GPU-0": "ipc:///x"}),
            lambda: client.load_lora_adapter_from_tensors("x", {}, [b"\x00"]),
            lambda: client.send_weights_to_remote_instance("h", [1]),
        ):
            with pytest.raises(NotFoundError):
                weight_call()


@pytest.mark.anyio
async def test_async_fleet_verify_through_the_gateway(
    gateway: tuple[str, RouterProcess], anyio_backend: str
) -> None:
    kind, router = gateway
    async with InferenceHTTPClient(router.url, max_retries=0) as client:
        async with await client.async_fleet() as fleet:
            await fleet.async_update_weight_version(f"{kind}-{anyio_backend}")
            report = await fleet.async_verify_weights([NORM])  # the workers with each other
            assert report.ok and report.reference in fleet.urls
            assert all((await fleet.async_ready()).results.values())
            assert all((await fleet.async_ping()).results.values())
            sums = (await fleet.async_weights_checker()).results
            assert len({s.per_engine_checksum for s in sums.values()}) == 1


def test_reward_calls_through_the_gateway(gateway: tuple[str, RouterProcess]) -> None:
    _, router = gateway
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        ranked = client.rerank("q", ["a", "bb", "ccc"], top_n=2)
        assert len(ranked) == 2 and all(isinstance(r, RerankResult) for r in ranked)
        assert ranked[0].score >= ranked[1].score
        with pytest.raises(NotFoundError):
            client.classify("reward me")
        with pytest.raises(NotFoundError):
            client.score("q", ["a"], label_token_ids=[1])


@pytest.mark.anyio
async def test_async_rerank_through_the_gateway(gateway: tuple[str, RouterProcess]) -> None:
    _, router = gateway
    async with InferenceHTTPClient(router.url, max_retries=0) as client:
        ranked = await client.async_rerank("q", ["x", "y"], return_documents=True)
        assert sorted(r.index for r in ranked) == [0, 1]


def test_generate_rl_fields_through_the_gateway(
    gateway: tuple[str, RouterProcess], workers: list[FakeWorkerProcess]
) -> None:
    kind, router = gateway
    rid = f"rl-{kind}"
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        out = client.generate(
            "x",
            sampling_params={"max_new_tokens": 2},
            rid=rid,
            return_routed_experts=True,
            return_hidden_states=True,
            return_sampling_mask=True,
            cache_salt="salt",
            scheduler_routing_key="k",
            max_thinking_tokens=8,
        )
        assert out.meta_info.id == rid
    body = _generate_body(workers, rid)
    rl = {
        "return_hidden_states",
        "return_routed_experts",
        "return_sampling_mask",
        "cache_salt",
        "routing_key",
        "max_thinking_tokens",
    }
    assert {k for k in rl if k in body} == FORWARDED[kind]
    assert (out.routed_expert_ids() is not None) == ("return_routed_experts" in FORWARDED[kind])


def test_rid_through_the_gateway(
    gateway: tuple[str, RouterProcess], workers: list[FakeWorkerProcess]
) -> None:
    """sglang-router 0.3.2 drops a chat ``rid``; smg 1.13 forwards it. Both forward it on
    completions and embeddings."""
    import httpx

    kind, router = gateway
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        client.chat_completion([{"role": "user", "content": "hi"}], model="fake-model", rid="c1")
        client.completion("hi", model="fake-model", rid="p1")
        client.embed("hi", model="fake-model", rid="e1")
    seen: dict[str, set[Any]] = {}
    for w in workers:
        last = httpx.get(w.url + "/_fake/stats", timeout=10).json()["last_bodies"]
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            if path in last:
                seen.setdefault(path, set()).add(last[path].get("rid"))
    assert "p1" in seen["/v1/completions"] and "e1" in seen["/v1/embeddings"]
    assert ("c1" in seen["/v1/chat/completions"]) == (kind == "smg")
