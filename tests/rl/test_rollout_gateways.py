"""Partial rollouts through the real gateways (sglang-router 0.3.2 and smg 1.13) in
front of a fake worker process: the generation runs through the gateway, is aborted
on the worker (gateways do not route ``/abort_request``), the worker's weight
version changes, and ``resume`` goes through the gateway again with the same
routing key; the merged result shows both versions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rlinf_http import FinishAbort, FinishLength, InferenceHTTPClient, weight_version_mix
from rlinf_http.testing import (
    FakeConfig,
    FakeSGLangApp,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
    start_fake_worker,
)

Fake = FakeSGLangApp


@pytest.fixture(scope="module")
def worker() -> Iterator[FakeWorkerProcess]:
    with start_fake_worker(config=FakeConfig(itl_s=0.01)) as w:
        yield w


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(
            "sglang-router",
            marks=pytest.mark.skipif(not router_available(), reason="needs sglang-router"),
        ),
        pytest.param("smg", marks=pytest.mark.skipif(not smg_available(), reason="needs smg")),
    ],
)
def gateway(request: pytest.FixtureRequest, worker: FakeWorkerProcess) -> Iterator[RouterProcess]:
    with launch_router([worker.url], gateway=request.param, policy="round_robin") as gw:
        yield gw


def requests_with(worker: FakeWorkerProcess, key: str) -> list[dict[str, Any]]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        log = http.get(worker.url + "/_fake/requests").json()
    return [r for r in log if r["routing_key"] == key and r["path"] == "/generate"]


def wait_running(direct: InferenceHTTPClient) -> None:
    deadline = time.monotonic() + 10
    while not direct.loads().num_running_reqs:
        assert time.monotonic() < deadline, "the generation never reached the worker"
        time.sleep(0.005)


def test_resume_through_the_gateway_after_a_version_change(
    gateway: RouterProcess, worker: FakeWorkerProcess
) -> None:
    key = f"roll-{gateway.gateway}"
    out: dict[str, Any] = {}
    with InferenceHTTPClient(gateway.url) as client, InferenceHTTPClient(worker.url) as direct:
        direct.update_weight_version("w1")

        def run() -> None:
            out["result"] = client.generate(
                input_ids=[11, 12],
                sampling_params={"max_new_tokens": 100},
                return_logprob=True,
                rid=key,
                routing_key=key,
            )

        thread = threading.Thread(target=run)
        thread.start()
        wait_running(direct)
        direct.abort_request(key)
        thread.join(10)
        first = out["result"]
        assert isinstance(first.finish_reason, FinishAbort)
        kept = len(first.output_ids)
        assert 0 < kept < 100
        direct.update_weight_version("w2")
        final = client.resume(first)
    assert final.output_ids == Fake.output_ids(100) and final.text == Fake.output_text(100)
    assert len(final.meta_info.output_token_logprobs or []) == 100
    assert final.finish_reason == FinishLength(type="length", length=100)
    assert weight_version_mix(final).ranges == {"w1": [(0, kept)], "w2": [(kept, 100)]}
    sent = requests_with(worker, key)
    assert len(sent) == 2 and sent[0]["rid"] == key and sent[1]["rid"] != key
