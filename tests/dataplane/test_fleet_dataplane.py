"""The data plane's fleet calls on real sockets: LoRA adapters loaded and unloaded on
every worker, and a request aborted by its id without knowing which worker runs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlinf_http import (
    BadRequestError,
    FinishAbort,
    Fleet,
    FleetError,
    InferenceHTTPClient,
    InvalidRequestError,
)
from rlinf_http.testing import FakeConfig, FakeServer


@pytest.fixture
def workers() -> Iterator[list[FakeServer]]:
    with (
        FakeServer(config=FakeConfig(itl_s=0.02)) as a,
        FakeServer(config=FakeConfig(itl_s=0.02)) as b,
    ):
        yield [a, b]


def test_lora_on_every_worker(workers: list[FakeServer]) -> None:
    with Fleet.from_urls([w.url for w in workers]) as fleet:
        loaded = fleet.load_lora_adapter("ad", "/loras/ad")
        assert len(loaded) == 2
        assert all(r.loaded_adapters == {"ad": "/loras/ad"} for r in loaded.results.values())
        for url in fleet:  # every worker now serves the adapter
            out = fleet.client(url).generate(
                "a", sampling_params={"max_new_tokens": 1}, lora_path="ad"
            )
            assert out.meta_info.completion_tokens == 1
        assert fleet.unload_lora_adapter("ad").ok
        with pytest.raises(FleetError) as info:  # gone everywhere: each worker refuses
            fleet.unload_lora_adapter("ad")
        assert set(info.value.errors) == set(fleet.urls)
        assert all(isinstance(e, BadRequestError) for e in info.value.errors.values())
        with pytest.raises(InvalidRequestError):  # checked before any I/O
            fleet.load_lora_adapter("", "/x")
    assert [w.app.lora_adapters for w in workers] == [{}, {}]


@pytest.mark.anyio
async def test_async_lora_on_every_worker(workers: list[FakeServer]) -> None:
    async with Fleet.from_urls([w.url for w in workers]) as fleet:
        assert (await fleet.async_load_lora_adapter("ad", "/loras/ad", pinned=True)).ok
        assert [w.app.lora_adapters != {} for w in workers] == [True, True]
        assert (await fleet.async_unload_lora_adapter("ad")).ok
    assert [w.app.lora_adapters for w in workers] == [{}, {}]


def test_abort_by_rid_reaches_the_worker_that_runs_it(workers: list[FakeServer]) -> None:
    busy = workers[1]
    params = {"max_new_tokens": 400, "ignore_eos": True}
    with (
        Fleet.from_urls([w.url for w in workers]) as fleet,
        InferenceHTTPClient(busy.url) as client,
        client.generate("a", sampling_params=params, stream=True) as stream,
    ):
        chunks = iter(stream)
        first = next(chunks)
        assert first.rid is not None
        done = fleet.abort_request(first.rid)  # broadcast: the fleet does not know where
        assert done.ok and len(done) == 2
        rest = list(chunks)
    last = rest[-1] if rest else first
    assert isinstance(last.finish_reason, FinishAbort)
    assert last.meta_info.completion_tokens < 400
