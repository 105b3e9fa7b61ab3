"""The latency model (generous tolerances: only checks it is roughly honoured)."""

from __future__ import annotations

import itertools
import time

import anyio
import httpx
import pytest
from fake_helpers import asgi_client

from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp

TTFT = 0.2
ITL = 0.05
N = 5
EXPECTED_TOTAL = TTFT + ITL * (N - 1)  # 0.4 s


@pytest.mark.anyio
async def test_non_stream_latency_in_process() -> None:
    app = FakeSGLangApp(FakeConfig(ttft_s=TTFT, itl_s=ITL))
    async with asgi_client(app) as c:
        t0 = anyio.current_time()
        r = await c.post("/generate", json={"text": "a", "sampling_params": {"max_new_tokens": N}})
        elapsed = anyio.current_time() - t0
    assert r.status_code == 200
    assert EXPECTED_TOTAL * 0.9 <= elapsed < EXPECTED_TOTAL + 1.5
    assert r.json()["meta_info"]["e2e_latency"] >= EXPECTED_TOTAL * 0.9


@pytest.mark.anyio
async def test_zero_latency_is_fast() -> None:
    app = FakeSGLangApp()
    async with asgi_client(app) as c:
        t0 = anyio.current_time()
        for _ in range(20):
            await c.post("/generate", json={"text": "a", "sampling_params": {"max_new_tokens": 64}})
        assert anyio.current_time() - t0 < 2.0


def test_stream_ttft_and_itl_over_socket() -> None:
    with (
        FakeServer(config=FakeConfig(ttft_s=TTFT, itl_s=ITL)) as srv,
        httpx.Client(trust_env=False, timeout=10) as c,
    ):
        c.get(srv.url + "/health")  # warm the connection
        body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": N}}
        times: list[float] = []
        t0 = time.monotonic()
        with c.stream("POST", srv.url + "/generate", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    times.append(time.monotonic() - t0)
    assert len(times) == N
    ttft = times[0]
    assert TTFT * 0.9 <= ttft < TTFT + 1.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean_itl = sum(gaps) / len(gaps)
    assert ITL * 0.5 <= mean_itl < ITL + 0.5
    assert times[-1] >= EXPECTED_TOTAL * 0.9


def test_chat_stream_latency_over_socket() -> None:
    with (
        FakeServer(config=FakeConfig(ttft_s=TTFT, itl_s=0.0)) as srv,
        httpx.Client(trust_env=False, timeout=10) as c,
    ):
        body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "stream": True}
        t0 = time.monotonic()
        with c.stream("POST", srv.url + "/v1/chat/completions", json=body) as r:
            first = None
            for line in r.iter_lines():
                if line.startswith("data: {") and first is None:
                    first = time.monotonic() - t0
        assert first is not None and TTFT * 0.9 <= first < TTFT + 1.0
