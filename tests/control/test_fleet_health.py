"""Dead, paused, hung: the fleet's own check of its workers, and fleets of some workers
(issue 21, item 5), through a real gateway (smg 1.13 and sglang-router 0.3.2) in front of
fake worker processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import anyio
import pytest
from control_helpers import add_fault, control_state
from gateways import fake_workers, start_gateway

from rlinf_http import (
    APIConnectionError,
    Fleet,
    FleetError,
    InferenceHTTPClient,
    InvalidRequestError,
)
from rlinf_http.testing import FakeWorkerProcess, RouterProcess


@pytest.fixture
def cluster(gateway: str) -> Iterator[tuple[RouterProcess, list[FakeWorkerProcess]]]:
    """Four workers: ready, paused, killed (SIGKILL), stopped (SIGSTOP)."""
    with fake_workers(4) as workers:
        stopped = workers[3]
        with start_gateway(gateway, [w.url for w in workers]) as router:
            try:
                yield router, workers
            finally:  # before the gateway stops: a stopped process cannot be terminated
                os.kill(stopped.pid, signal.SIGCONT)


def _fault(cluster: tuple[RouterProcess, list[FakeWorkerProcess]]) -> list[str]:
    _, (ready, paused, killed, stopped) = cluster
    with InferenceHTTPClient(paused.url) as worker:
        worker.pause_generation("retract")
    os.kill(killed.pid, signal.SIGKILL)
    killed.proc.wait(10)
    os.kill(stopped.pid, signal.SIGSTOP)
    return [ready.url, paused.url, killed.url, stopped.url]


def test_status_tells_dead_from_paused(
    cluster: tuple[RouterProcess, list[FakeWorkerProcess]],
) -> None:
    router, _ = cluster
    ready, paused, killed, stopped = _fault(cluster)
    with InferenceHTTPClient(router.url, max_retries=0, health_timeout=1.0) as client:
        # the router still calls every worker healthy (it checks every 60 s)
        with client.fleet(healthy_only=True) as listed:
            assert set(listed) == {ready, paused, killed, stopped}
            assert dict(listed.status()) == {
                ready: "ready",
                paused: "not_ready",  # alive: /ready is 503 while paused
                killed: "dead",
                stopped: "unresponsive",
            }
            # sglang's /health waits on a paused server: health() cannot tell it from dead
            assert dict(listed.health()) == {
                ready: True,
                paused: False,
                killed: False,
                stopped: False,
            }
        # the fleet's own check keeps the paused worker and drops the dead and the hung
        with client.fleet(alive_only=True) as alive:
            assert set(alive.urls) == {ready, paused}
            assert alive.call_timeout is None
            assert alive.client(paused).options == client.copy(base_url=paused).options


@pytest.mark.anyio
async def test_async_status_and_alive_only(
    cluster: tuple[RouterProcess, list[FakeWorkerProcess]],
) -> None:
    router, _ = cluster
    ready, paused, _killed, _stopped = await anyio.to_thread.run_sync(_fault, cluster)
    async with InferenceHTTPClient(router.url, max_retries=0, health_timeout=1.0) as client:
        async with await client.async_fleet(alive_only=True, call_timeout=7.0) as alive:
            assert set(alive.urls) == {ready, paused} and alive.call_timeout == 7.0
            assert dict(await alive.async_status()) == {ready: "ready", paused: "not_ready"}
            await alive.async_continue_generation()
        assert control_state(paused)["paused"] is None


def test_retry_the_failed_workers_with_the_same_settings(
    cluster: tuple[RouterProcess, list[FakeWorkerProcess]],
) -> None:
    router, (_, flaky, killed, _) = cluster
    os.kill(killed.pid, signal.SIGKILL)
    killed.proc.wait(10)
    add_fault(flaky.url, path="/flush_cache", status=500, times=1)
    with InferenceHTTPClient(router.url, max_retries=0, headers={"x-team": "rl"}) as client:
        fleet = client.fleet("regular", call_timeout=9.0, api_key="admin")
        with pytest.raises(FleetError) as info:
            fleet.flush_cache()
        assert set(info.value.errors) == {flaky.url, killed.url}
        assert isinstance(info.value.errors[killed.url], APIConnectionError)
        with fleet.subset(info.value.errors) as retry:
            assert retry.urls == [w for w in fleet.urls if w in (flaky.url, killed.url)]
            assert retry.call_timeout == 9.0
            for url in retry:
                assert retry.client(url).options == fleet.client(url).options
                assert retry.client(url) is not fleet.client(url)
            assert retry.client(flaky.url).options.api_key == "admin"
            assert dict(retry.client(flaky.url).options.headers) == {"x-team": "rl"}
            again = retry.flush_cache(raise_on_error=False)
            assert list(again.errors) == [killed.url] and flaky.url in again.results
        with fleet.without([killed.url]) as rest:
            assert killed.url not in rest and len(rest) == 3 and rest.call_timeout == 9.0
            assert rest.flush_cache().ok
        with pytest.raises(InvalidRequestError, match="not workers of this fleet"):
            fleet.subset(["http://127.0.0.1:9"])
        with pytest.raises(InvalidRequestError):
            fleet.without(fleet.urls)
        assert isinstance(fleet.subset([killed.url + "@0"]), Fleet)
        fleet.close()
