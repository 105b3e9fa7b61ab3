"""fleet.restore() after update_weights through smg's RL plane (fleet.via == "gateway").

A worker the step took out of smg is no longer reachable through smg's
``/v1/rl/*``: restore continues it at its own URL, puts it back, and the same
fleet keeps working (smg gives the re-added worker a new id). Found by an
independent hostile review; each case failed before the fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from rlinf_http import InferenceHTTPClient, InvalidRequestError, WeightUpdateStepError
from rlinf_http.testing import (
    FakeWorkerProcess,
    FaultSpec,
    RouterProcess,
    add_faults,
    clear_faults,
    control_state,
    launch_router,
    smg_available,
    start_fake_worker,
)

pytestmark = pytest.mark.skipif(not smg_available(), reason="needs the smg extra")


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    with start_fake_worker() as a, start_fake_worker() as b:
        yield [a, b]


@pytest.fixture(scope="module")
def gateway(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    urls = [w.url for w in workers]
    with launch_router(urls, gateway="smg", enable_rl=True, ready_timeout=60) as gw:
        yield gw


def _listed(gw: RouterProcess) -> set[str]:
    with InferenceHTTPClient(gw.url, max_retries=0) as client:
        return {w.url or "" for w in client.list_workers().workers}


@pytest.fixture(autouse=True)
def _reset(gateway: RouterProcess, workers: list[FakeWorkerProcess]) -> Iterator[None]:
    yield
    listed = _listed(gateway)
    with InferenceHTTPClient(gateway.url, max_retries=0) as client:
        for w in workers:
            clear_faults(w.url)
            with InferenceHTTPClient(w.url) as direct:
                direct.continue_generation()
            if w.url not in listed:
                with contextlib.suppress(Exception):
                    client.add_worker(w.url, timeout=60)


def _fail_one(fleet_client: InferenceHTTPClient, bad: str, version: str) -> object:
    fleet = fleet_client.fleet()
    assert fleet.via == "gateway"
    add_faults(bad, FaultSpec(weight_update_error="load"))
    with pytest.raises(WeightUpdateStepError) as info:
        fleet.update_weights(from_disk=f"/ckpt/{version}", version=version)
    report = info.value.report
    assert report.failed == [bad] and report.workers[bad].left == "paused"
    assert report.workers[bad].removed_from_router
    return fleet, report


def test_restore_continues_and_re_adds_a_worker_taken_out_of_smg(
    gateway: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[1].url
    with InferenceHTTPClient(gateway.url, max_retries=0) as client:
        fleet, report = _fail_one(client, bad, "v1")
        assert bad not in _listed(gateway) and control_state(bad)["paused"] is not None
        restored = fleet.restore(report, timeout=30)  # type: ignore[attr-defined]
        assert restored.ok
        assert control_state(bad)["paused"] is None
        assert bad in _listed(gateway)
        # the same fleet goes on working: the re-added worker's new smg id is used
        again = fleet.update_weights(from_disk="/ckpt/v2", version="v2")  # type: ignore[attr-defined]
        assert again.ok, again.summary()
        for w in workers:
            assert control_state(w.url)["weight_version"] == "v2"
        fleet.close()  # type: ignore[attr-defined]


def test_restore_from_a_fleet_built_after_the_take_out(
    gateway: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[0].url
    with InferenceHTTPClient(gateway.url, max_retries=0) as client:
        first, report = _fail_one(client, bad, "v3")
        first.close()  # type: ignore[attr-defined]
        with client.fleet() as later:
            assert bad not in later
            assert later.restore(report, timeout=30).ok  # type: ignore[arg-type]
        assert control_state(bad)["paused"] is None and bad in _listed(gateway)


def test_restore_refuses_what_is_not_a_report(gateway: RouterProcess) -> None:
    with InferenceHTTPClient(gateway.url) as client, client.fleet() as fleet:
        with pytest.raises(InvalidRequestError, match="WeightUpdateReport"):
            fleet.restore("not a report")  # type: ignore[arg-type]


def test_a_take_out_smg_finishes_after_the_step_is_still_restored(
    gateway: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    # smg removes a worker about 5 s after accepting the DELETE; a short
    # continue_timeout ends the step first: the worker is still out, and restore
    # must put it back once the removal is done.
    bad = workers[1].url
    with InferenceHTTPClient(gateway.url, max_retries=0) as client, client.fleet() as fleet:
        add_faults(bad, FaultSpec(weight_update_error="load"))
        report = fleet.update_weights(
            from_disk="/ckpt/v5", version="v5", quorum=1, continue_timeout=1
        )
        assert report.failed == [bad]
        assert report.workers[bad].removed_from_router
        assert fleet.restore(report, timeout=30).ok
        assert bad in _listed(gateway) and control_state(bad)["paused"] is None
