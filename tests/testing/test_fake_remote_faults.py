"""Faults injected into a fake worker in another process, through the public helpers."""

from __future__ import annotations

import anyio
import httpx
import pytest

from rlinf_http import InferenceHTTPClient, ServiceUnavailableError
from rlinf_http.testing import (
    FakeServerError,
    FaultSpec,
    add_faults,
    async_add_faults,
    async_clear_faults,
    async_pending_faults,
    clear_faults,
    pending_faults,
    start_fake_worker,
)


def test_fault_helpers_on_a_worker_process() -> None:
    with start_fake_worker() as w, InferenceHTTPClient(w.url, max_retries=0) as client:
        assert w.add_faults(FaultSpec(path="/generate", status=503, body="busy")) == 1
        with pytest.raises(ServiceUnavailableError):
            client.generate("hi", sampling_params={"max_new_tokens": 1})
        assert client.generate("hi", sampling_params={"max_new_tokens": 1}).text == " tok0"
        # by URL, several at once, listed back as FaultSpec
        specs = [FaultSpec(path="/generate", status=503, times=None), FaultSpec(delay_s=0.1)]
        assert add_faults(w.url, *specs) == 2
        assert pending_faults(w.url) == specs == w.pending_faults()
        with pytest.raises(ServiceUnavailableError):
            client.generate("hi")
        assert clear_faults(w.url) == 2 and w.clear_faults() == 0
        assert client.generate("hi", sampling_params={"max_new_tokens": 1}).text == " tok0"
        # a spec the server refuses is a typed error naming the server's reason
        bad = FaultSpec()
        bad.weight_update_error = "bogus"  # past __post_init__'s check: the server refuses it
        with pytest.raises(FakeServerError, match="weight_update_error") as info:
            add_faults(w.url, bad, timeout=5.0)
        assert info.value.status_code == 400
        assert pending_faults(w.url) == []


def test_async_fault_helpers_on_a_worker_process() -> None:
    with start_fake_worker() as w:

        async def main() -> None:
            assert await async_add_faults(w.url, FaultSpec(path="/health", status=500)) == 1
            assert await async_pending_faults(w.url) == [FaultSpec(path="/health", status=500)]
            async with httpx.AsyncClient(trust_env=False) as http:
                assert (await http.get(w.url + "/health")).status_code == 500
                assert (await http.get(w.url + "/health")).status_code == 200
            await async_add_faults(w.url, FaultSpec(status=502, times=None))
            assert await async_clear_faults(w.url) == 1

        anyio.run(main)


def test_a_bad_spec_is_a_type_error_before_sending() -> None:
    with pytest.raises(TypeError, match="FaultSpec"):
        add_faults("http://127.0.0.1:9", {"status": 503})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON"):
        add_faults("http://127.0.0.1:9", FaultSpec(body=object()))
