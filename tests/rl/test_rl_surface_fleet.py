"""The fleet's RL-surface calls on sockets against fake servers, sync and async:
``verify_weights`` (per-worker verdicts against the trainer's values or each other),
read-back, checksums, IPC and LoRA-from-tensors on every worker, ready/ping,
flush-when-idle, Prometheus loads, and the stale-label hint of ``check_weight_version``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlinf_http import (
    Fleet,
    FleetError,
    InvalidRequestError,
    ParameterSlice,
    WeightSyncError,
    WeightSyncReport,
    WeightVersionMismatchError,
)
from rlinf_http.testing import FakeServer

EMBED = "model.embed_tokens.weight"
NORM = "model.norm.weight"
CLOSED = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeServer, FakeServer]]:
    with FakeServer() as a, FakeServer() as b:
        yield a, b


def _versions(fleet: Fleet, a: FakeServer, b: FakeServer, va: str, vb: str) -> None:
    for srv, version in ((a, va), (b, vb)):
        with fleet.subset([srv.url]) as one:
            one.update_weight_version(version)


def test_verify_weights_sync(servers: tuple[FakeServer, FakeServer]) -> None:
    a, b = servers
    with Fleet.from_urls([a.url, b.url]) as fleet:
        _versions(fleet, a, b, "s2", "s2")
        trainer = {n: a.app.parameter_values(n, version="s2") for n in (EMBED, NORM)}
        report = fleet.verify_weights(expected=trainer, truncate_size=4)
        assert isinstance(report, WeightSyncReport) and report.ok
        assert report.reference == "expected" and report.matched == [a.url, b.url]
        assert report.raise_for_mismatch() is report
        _versions(fleet, a, b, "s3", "s2")  # b missed the last update
        newer = {n: a.app.parameter_values(n, version="s3") for n in (EMBED, NORM)}
        stale = fleet.verify_weights([EMBED], newer)
        assert stale.matched == [a.url] and stale.mismatched == [b.url]
        assert [p.name for p in stale.workers[b.url].parameters] == [EMBED]
        with pytest.raises(WeightSyncError, match="1/2 workers match") as caught:
            fleet.verify_weights(NORM, newer, raise_on_mismatch=True)
        assert caught.value.report.mismatched == [b.url]
        peers = fleet.verify_weights([EMBED, NORM])  # no trainer values: with each other
        assert peers.reference == a.url and peers.mismatched == [b.url]


@pytest.mark.anyio
async def test_verify_weights_async_reports_an_unreachable_worker(
    servers: tuple[FakeServer, FakeServer],
) -> None:
    a, b = servers
    async with Fleet.from_urls([a.url, b.url, CLOSED], max_retries=0) as fleet:
        async with fleet.subset([a.url, b.url]) as pair:
            await pair.async_update_weight_version("s4")
        trainer = {NORM: a.app.parameter_values(NORM, version="s4")}
        report = await fleet.async_verify_weights(expected=trainer)
        assert report.matched == [a.url, b.url] and list(report.errors) == [CLOSED]
        assert not report.ok  # a worker that could not be read is not confirmed
        async with fleet.subset([a.url]) as one:
            unknown = await one.async_verify_weights(["model.nope"])
        assert unknown.workers[a.url].status == "error"


@pytest.mark.anyio
async def test_verify_weights_checks_arguments_before_any_io() -> None:
    async with Fleet.from_urls([CLOSED], max_retries=0) as fleet:
        with pytest.raises(InvalidRequestError, match="names"):
            await fleet.async_verify_weights()
        with pytest.raises(InvalidRequestError, match="no values for"):
            await fleet.async_verify_weights(["a", "b"], {"a": [1.0]})
        with pytest.raises(InvalidRequestError, match="atol"):
            await fleet.async_verify_weights(["a"], atol=-1)
        with pytest.raises(InvalidRequestError, match="truncate_size"):
            await fleet.async_verify_weights(["a"], truncate_size=0)
        with pytest.raises(InvalidRequestError, match="twice"):
            await fleet.async_verify_weights(["a", "a"])


def test_check_weight_version_names_the_stale_label_case(
    servers: tuple[FakeServer, FakeServer],
) -> None:
    a, b = servers
    with Fleet.from_urls([a.url, b.url]) as fleet:
        _versions(fleet, a, b, "v9", "v8")
        with pytest.raises(WeightVersionMismatchError) as caught:
            fleet.check_weight_version("v9")
        message = str(caught.value)
        assert f"{b.url} serves 'v8'" in message
        assert "CacheNotFlushedError" in message and "update_weight_version" in message
        assert caught.value.mismatched == {b.url: "v8"}


def test_fleet_weight_calls_sync(servers: tuple[FakeServer, FakeServer]) -> None:
    a, b = servers
    with Fleet.from_urls([a.url, b.url]) as fleet:
        _versions(fleet, a, b, "c1", "c1")
        read = fleet.get_weights_by_name(NORM, 2)
        assert all(isinstance(v, ParameterSlice) for v in read.results.values())
        assert read[a.url] == read[b.url]
        sums = fleet.weights_checker().results
        assert sums[a.url].per_engine_checksum == sums[b.url].per_engine_checksum
        per_worker = {a.url: {"GPU-a": "ipc:///a"}, b.url: {"GPU-b": "ipc:///b"}}
        fleet.update_weights_from_ipc(per_worker, weight_version="ipc-2")
        assert b.app.stats["last_bodies"]["/update_weights_from_ipc"]["zmq_handles"] == {
            "GPU-b": "ipc:///b"
        }
        fleet.check_weight_version("ipc-2")
        fleet.update_weights_from_ipc({"GPU-0": "ipc:///same"})
        assert a.app.stats["last_bodies"]["/update_weights_from_ipc"]["zmq_handles"] == {
            "GPU-0": "ipc:///same"
        }
        loaded = fleet.load_lora_adapter_from_tensors("fl-sync", {"r": 2}, [b"\x00"])
        assert all("fl-sync" in r.loaded_adapters for r in loaded.results.values())
        fleet.update_weights_from_disk("/ckpt/f", token_step=4, recapture_cuda_graph=True)
        body = a.app.stats["last_bodies"]["/update_weights_from_disk"]
        assert body["token_step"] == 4 and body["recapture_cuda_graph"] is True
        with pytest.raises(InvalidRequestError, match="every worker"):
            fleet.update_weights_from_ipc({a.url: {"GPU-a": "ipc:///a"}})


@pytest.mark.anyio
async def test_fleet_weight_calls_async(
    servers: tuple[FakeServer, FakeServer], anyio_backend: str
) -> None:
    a, b = servers
    async with Fleet.from_urls([a.url, b.url]) as fleet:
        read = await fleet.async_get_weights_by_name(EMBED, 1)
        assert read.ok and len(read) == 2
        checked = await fleet.async_weights_checker("snapshot")
        assert checked.ok
        out = await fleet.async_update_weights_from_ipc({"GPU-0": "ipc:///z"}, flush_cache=False)
        assert out.ok
        name = f"fl-{anyio_backend}"
        loaded = await fleet.async_load_lora_adapter_from_tensors(name, {"r": 2}, ["AA=="])
        assert loaded.ok


def test_fleet_ready_ping_flush_prometheus_sync(servers: tuple[FakeServer, FakeServer]) -> None:
    a, b = servers
    # health_timeout: the paused servers' /health waits; health() is False at the bound
    with Fleet.from_urls([a.url, b.url], health_timeout=1.0) as fleet:
        assert fleet.ready().results == {a.url: True, b.url: True}
        with fleet.paused("retract"):
            assert fleet.ready().results == {a.url: False, b.url: False}
            assert fleet.ping().results == {a.url: True, b.url: True}
            assert fleet.health().results == {a.url: False, b.url: False}  # /health waits
        assert all(r.flushed for r in fleet.flush_cache(timeout=5.0).results.values())
        texts = fleet.loads_prometheus("core").results
        assert all("sglang_num_running_reqs" in t for t in texts.values())


@pytest.mark.anyio
async def test_fleet_ready_ping_flush_prometheus_async(
    servers: tuple[FakeServer, FakeServer],
) -> None:
    a, b = servers
    async with Fleet.from_urls([a.url, b.url, CLOSED], max_retries=0) as fleet:
        with pytest.raises(FleetError):
            await fleet.async_ready()
        ready = await fleet.async_ready(raise_on_error=False)
        assert ready.results == {a.url: True, b.url: True} and list(ready.errors) == [CLOSED]
        async with fleet.subset([a.url, b.url]) as pair:
            pinged = await pair.async_ping()
            assert pinged.results == {a.url: True, b.url: True}
            flushed = await pair.async_flush_cache(timeout=1.0)
            assert all(r.flushed for r in flushed.results.values())
            loads = await pair.async_loads_prometheus()
            assert "sglang_" in loads.results[b.url]
