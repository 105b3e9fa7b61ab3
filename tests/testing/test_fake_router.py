"""A real gateway in front of two fake workers, fully offline: the module's shared
gateway is smg 1.13 (``--enable-rl``) and sglang-router 0.3.2 in turn (``gateway``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
from gateways import start_gateway

from rlinf_http.testing import (
    FakeConfig,
    FakeServer,
    RouterProcess,
    launch_router,
    router_available,
    start_fake_worker,
)

pytestmark = pytest.mark.skipif(
    not router_available(), reason="sglang-router (with its Rust extension) is not installed"
)


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeServer]]:
    with FakeServer(config=FakeConfig()) as a, FakeServer(config=FakeConfig()) as b:
        yield [a, b]


@pytest.fixture(scope="module")
def router(gateway: str, workers: list[FakeServer]) -> Iterator[RouterProcess]:
    # a trailing slash must be stripped, otherwise the router probes "//health"
    urls = [workers[0].url + "/", workers[1].url]
    with start_gateway(gateway, urls) as r:
        yield r


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=30) as c:
        yield c


def test_router_command_is_offline(router: RouterProcess) -> None:
    cmd = router.command()
    assert cmd[cmd.index("--prometheus-host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert all(not u.endswith("/") for u in router.worker_urls)
    assert router.proc is not None and router.proc.poll() is None


def test_workers_listed(
    router: RouterProcess, workers: list[FakeServer], http: httpx.Client
) -> None:
    d = http.get(router.url + "/workers").json()
    assert d["total"] == 2
    assert {w["url"] for w in d["workers"]} == {w.url for w in workers}
    assert all(w["is_healthy"] for w in d["workers"])
    assert all(w["model_id"] == "fake-model" for w in d["workers"])
    r = http.get(router.url + "/readiness").json()
    assert r["healthy_workers"] == 2


def test_generate_through_router_round_robin(
    router: RouterProcess, workers: list[FakeServer], http: httpx.Client
) -> None:
    before = [w.app.stats["requests"].get("/generate", 0) for w in workers]
    for _ in range(4):
        r = http.post(
            router.url + "/generate", json={"text": "a b", "sampling_params": {"max_new_tokens": 3}}
        )
        assert r.status_code == 200
        d = r.json()
        assert d["text"] == " tok0 tok1 tok2"
        assert d["meta_info"]["prompt_tokens"] == 2
    after = [w.app.stats["requests"].get("/generate", 0) for w in workers]
    assert sum(after) - sum(before) == 4
    assert all(a - b >= 1 for a, b in zip(after, before, strict=True))  # both workers used


def test_stream_through_router(router: RouterProcess, http: httpx.Client) -> None:
    body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 3}}
    with http.stream("POST", router.url + "/generate", json=body) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: ") :])
    assert last["meta_info"]["finish_reason"] == {"type": "length", "length": 3}


def test_chat_through_router(router: RouterProcess, http: httpx.Client) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = http.post(router.url + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    d = r.json()
    assert d["object"] == "chat.completion"
    assert d["choices"][0]["message"]["content"] == " tok0 tok1"
    assert d["usage"]["completion_tokens"] == 2


def test_request_id_forwarded(
    router: RouterProcess, workers: list[FakeServer], http: httpx.Client
) -> None:
    r = http.post(
        router.url + "/generate",
        json={"text": "a", "sampling_params": {"max_new_tokens": 1}},
        headers={"X-Request-Id": "trace-42"},
    )
    assert r.headers["x-request-id"] == "trace-42"
    seen = [w.app.stats["last_headers"].get("/generate", {}).get("x-request-id") for w in workers]
    assert "trace-42" in seen


def test_router_with_worker_processes_and_legacy_info() -> None:
    cfg = FakeConfig(legacy_info_routes_only=True, served_model_name="legacy")
    with start_fake_worker(config=cfg) as w, launch_router([w.url]) as r:
        with httpx.Client(trust_env=False, timeout=30) as c:
            d = c.get(r.url + "/workers").json()
            assert d["workers"][0]["model_id"] == "legacy"
            assert c.post(r.url + "/generate", json={"text": "x"}).status_code == 200
    assert r.proc is not None and r.proc.poll() is not None
    assert not os.path.exists(r.log_path)


def test_router_startup_failure_includes_log_tail() -> None:
    with pytest.raises(RuntimeError, match="log tail"):
        launch_router([], extra_args=["--policy", "no-such-policy"], ready_timeout=30)


def test_routing_key_and_worker_identity_through_manual_policy(http: httpx.Client) -> None:
    configs = [FakeConfig(worker_id="w0"), FakeConfig(worker_id="w1")]
    with FakeServer(config=configs[0]) as a, FakeServer(config=configs[1]) as b:
        with launch_router([a.url, b.url], policy="manual") as r:
            body = {"text": "a", "sampling_params": {"max_new_tokens": 1}}
            served = set()
            for _ in range(6):
                resp = http.post(
                    r.url + "/generate", json=body, headers={"X-SMG-Routing-Key": "sess-A"}
                )
                assert resp.status_code == 200
                served.add(resp.headers["x-fake-worker"])  # worker headers pass through
        assert len(served) == 1  # one key, one worker
        (name,) = served
        chosen = a if name == "w0" else b
        keyed = [e for e in chosen.app.request_log if e["path"] == "/generate"]
        assert [e["routing_key"] for e in keyed] == ["sess-A"] * 6
        assert {e["worker"] for e in keyed} == {name}
