"""``fleet.update_weights(...)``: the RL step, on fake worker processes behind the real gateways.

Each fault leaves every worker continued or reported paused on purpose, never
hangs, and ends in a typed outcome: a worker down, a load that fails, a load
past its deadline, a flush that fails after the swap, a pause that never
completes (a hung answer, and a SIGSTOPped worker). Run behind sglang-router
0.3.2 and smg 1.13, and on a single server (a fleet of one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from control_helpers import (
    add_fault,
    clear_faults,
    control_state,
    requests_to,
    running,
    wait_until,
)

from rlinf_http import (
    APIConnectionError,
    CacheNotFlushedError,
    EngineBusyError,
    Fleet,
    FleetError,
    InferenceHTTPClient,
    InvalidRequestError,
    WeightUpdateError,
    WeightUpdateReport,
    WeightUpdateStepError,
    WorkerNotFoundError,
)
from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
    start_fake_worker,
)

GATEWAYS = [
    pytest.param(
        "sglang-router",
        marks=pytest.mark.skipif(not router_available(), reason="sglang-router not installed"),
    ),
    pytest.param("smg", marks=pytest.mark.skipif(not smg_available(), reason="smg not installed")),
]

#: 10 ms per token: generations are running while the step pauses them.
CONFIG = FakeConfig(itl_s=0.01, stale_label_after_flush_failure=True)
#: Generous bound for "does not hang" (not a timing check).
NO_HANG_S = 60.0


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    with (
        start_fake_worker(config=CONFIG) as a,
        start_fake_worker(config=CONFIG) as b,
        start_fake_worker(config=CONFIG) as c,
    ):
        yield [a, b, c]


@pytest.fixture(scope="module", params=GATEWAYS)
def router(
    request: pytest.FixtureRequest, workers: list[FakeWorkerProcess]
) -> Iterator[RouterProcess]:
    with launch_router([w.url for w in workers], gateway=request.param, ready_timeout=60) as r:
        yield r


def _reset(router: RouterProcess, workers: list[FakeWorkerProcess]) -> None:
    """Every worker continued, without faults, and in the router's rotation."""
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        listed = {w.url for w in client.list_workers().workers}
        for w in workers:
            os.kill(w.pid, signal.SIGCONT)
            clear_faults(w.url)
            with InferenceHTTPClient(w.url) as direct:
                direct.continue_generation()
            if w.url not in listed:
                client.add_worker(w.url, timeout=60)


@pytest.fixture
def fleet(router: RouterProcess, workers: list[FakeWorkerProcess]) -> Iterator[Fleet]:
    _reset(router, workers)
    with InferenceHTTPClient(router.url, max_retries=0) as client, client.fleet() as f:
        assert set(f.urls) == {w.url for w in workers}
        yield f
    _reset(router, workers)


def _listed(router: RouterProcess) -> set[str]:
    with InferenceHTTPClient(router.url) as client:
        return {w.url for w in client.list_workers().workers}


def _timed(fn: object) -> float:
    t0 = time.monotonic()
    assert callable(fn)
    fn()
    return time.monotonic() - t0


# -- the step itself ---------------------------------------------------------------------


def test_every_worker_updates_stamps_and_continues(
    fleet: Fleet, workers: list[FakeWorkerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rlinf_http"):
        report = fleet.update_weights(from_disk="/ckpt/step-1", version="s1")
    assert isinstance(report, WeightUpdateReport)
    assert report.ok and report.quorum_met and report.quorum == 3
    assert sorted(report.updated) == sorted(fleet.urls) and not report.failed
    for w in report.workers.values():
        assert w.outcome == "updated" and w.left == "continued"
        assert None not in (w.pause_s, w.drain_s, w.load_s, w.continue_s)
        assert [p for p in w.phases] == ["pause", "drain", "load", "stamp", "continue"]
    for w in workers:
        state = control_state(w.url)
        assert state["paused"] is None and state["weight_version"] == "s1"
        assert state["model_path"] == "/ckpt/step-1"
    lines = [r for r in caplog.records if r.message.startswith("update_weights 's1'")]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert report.restore_hint == ""


def test_the_stamp_never_aborts_requests_in_flight(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    """A generation running across the step finishes normally, on both versions."""
    with InferenceHTTPClient(router.url) as client:
        results: list[object] = []

        def generate() -> None:
            results.append(
                client.generate("hi", sampling_params={"max_new_tokens": 60, "ignore_eos": True})
            )

        t = threading.Thread(target=generate)
        t.start()
        time.sleep(0.2)  # let it run a few tokens (any split works)
        fleet.update_weights(from_disk="/ckpt/step-2", version="s2", pause="retract")
        t.join(NO_HANG_S)
    (out,) = results
    assert out.meta_info.finish_reason is not None  # type: ignore[attr-defined]
    assert out.meta_info.finish_reason.type == "length"  # type: ignore[attr-defined]


def test_distributed_and_tensor_run_inside_a_session(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    offsets = list(range(1, len(fleet) + 1))
    fleet.init_weights_update_group("127.0.0.1", 29500, offsets, len(fleet) + 1)
    try:
        report = fleet.update_weights(
            from_distributed=(["w"], ["bfloat16"], [[2, 2]]), version="d1", pause="abort"
        )
        assert report.ok and report.source == "distributed"
        report = fleet.update_weights(from_tensor=[b"payload"], version="t1", pause="in_place")
        assert report.ok and report.source == "tensor"
    finally:
        fleet.destroy_weights_update_group()
    for w in workers:
        state = control_state(w.url)
        assert state["weight_version"] == "t1" and not state["weight_update_session"]
        kinds = [u["kind"] for u in state["weight_updates"][-2:]]
        assert kinds == ["distributed", "tensor"]


def test_arguments_are_checked_before_any_io(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    before = requests_to(workers[0].url, "/pause_generation")
    bad: list[dict[str, object]] = [
        {"version": "v"},
        {"from_disk": "/a", "from_tensor": [b"x"], "version": "v"},
        {"from_disk": "/a", "version": 8},
        {"from_disk": "/a", "version": "v", "pause": "stop"},
        {"from_disk": "/a", "version": "v", "quorum": 0},
        {"from_disk": "/a", "version": "v", "quorum": 4},
        {"from_disk": "/a", "version": "v", "quorum": 1.5},
        {"from_disk": "/a", "version": "v", "quorum": True},
        {"from_disk": "/a", "version": "v", "load_timeout": 0},
        {"from_distributed": (["w"], ["bfloat16"]), "version": "v"},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidRequestError):
            fleet.update_weights(**kwargs)  # type: ignore[arg-type]
    assert requests_to(workers[0].url, "/pause_generation") == before


# -- faults ------------------------------------------------------------------------------


def test_a_failed_load_leaves_the_worker_paused_and_out_of_the_router(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[1].url
    add_fault(bad, weight_update_error="load")
    with pytest.raises(WeightUpdateStepError) as info:
        fleet.update_weights(from_disk="/ckpt/step-3", version="s3")
    report = info.value.report
    assert info.value.result is report and list(info.value.errors) == [bad]
    assert isinstance(info.value.errors[bad], WeightUpdateError)
    assert not report.quorum_met and report.failed == [bad]
    failed = report.workers[bad]
    assert failed.failed_phase == "load" and failed.left == "paused"
    assert failed.removed_from_router and report.router_url == router.url
    assert "continue" not in failed.phases
    assert control_state(bad)["paused"] == "retract"
    assert control_state(bad)["weight_version"] != "s3"
    assert bad not in _listed(router)
    for w in workers:
        if w.url != bad:
            assert report.workers[w.url].outcome == "updated"
            assert control_state(w.url)["paused"] is None
            assert control_state(w.url)["weight_version"] == "s3"
    assert f"add_worker('{bad}')" in report.restore_hint
    assert f"fleet.client('{bad}').continue_generation()" in report.restore_hint
    # undo: the worker is continued and back in the rotation
    restored = fleet.restore(report)
    assert restored.ok and list(restored) == [bad]
    assert control_state(bad)["paused"] is None
    assert bad in _listed(router)


def test_a_quorum_lets_the_step_succeed_without_a_failed_worker(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[2].url
    add_fault(bad, weight_update_error="load")
    report = fleet.update_weights(from_disk="/ckpt/step-4", version="s4", quorum=2)
    assert report.quorum_met and report.quorum == 2 and report.failed == [bad]
    assert not report.ok and report.workers[bad].left == "paused"
    assert bad not in _listed(router)
    report = fleet.update_weights(from_disk="/ckpt/step-5", version="s5", quorum=0.5)
    assert report.quorum == 2


def test_a_load_past_its_deadline_counts_as_failed(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    slow = workers[0].url
    add_fault(slow, path="/update_weights_from_disk", delay_s=30)
    took = time.monotonic()
    with pytest.raises(WeightUpdateStepError) as info:
        fleet.update_weights(from_disk="/ckpt/step-6", version="s6", load_timeout=1.0)
    took = time.monotonic() - took
    assert took < NO_HANG_S
    report = info.value.report
    failed = report.workers[slow]
    assert failed.failed_phase == "load" and isinstance(failed.error, TimeoutError)
    assert failed.left == "paused" and failed.removed_from_router
    assert sorted(report.updated) == sorted(u for u in fleet.urls if u != slow)


def test_a_flush_that_fails_after_the_swap_counts_as_updated(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    """The weights ARE swapped: flushed once idle (paused: at once) and relabelled."""
    url = workers[1].url
    add_fault(url, weight_update_error="flush")
    report = fleet.update_weights(from_disk="/ckpt/step-7", version="s7")
    assert report.ok and report.quorum_met
    worker = report.workers[url]
    assert isinstance(worker.phases["load"].error, CacheNotFlushedError)
    assert worker.phases["flush"].ok and worker.outcome == "updated"
    assert control_state(url)["weight_version"] == "s7"
    assert fleet.check_weight_version("s7").ok  # the stale label was relabelled


def test_a_flush_still_failing_is_reported_pending(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    url = workers[1].url
    add_fault(url, weight_update_error="flush")
    add_fault(url, path="/flush_cache", status=400, body="Flush cache failed.\n", times=None)
    report = fleet.update_weights(from_disk="/ckpt/step-8", version="s8")
    assert report.quorum_met and not report.ok
    assert report.flush_pending == [url] and report.workers[url].left == "continued"
    assert "flush_cache()" in report.restore_hint


def test_a_worker_down_fails_at_the_pause(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    with start_fake_worker(config=CONFIG) as extra:
        with InferenceHTTPClient(router.url) as client:
            client.add_worker(extra.url, timeout=60)
            big = client.fleet()
        extra.stop()
        try:
            report = big.update_weights(from_disk="/ckpt/step-9", version="s9", quorum=3)
            down = report.workers[extra.url]
            assert down.failed_phase == "pause" and down.left == "unknown"
            assert isinstance(down.error, APIConnectionError)
            assert len(report.updated) == 3 and down.removed_from_router
            assert extra.url not in _listed(router)
        finally:
            # the step took it out already: an unregistered URL raises WorkerNotFoundError
            with (
                InferenceHTTPClient(router.url) as client,
                contextlib.suppress(WorkerNotFoundError),
            ):
                client.remove_worker(url=extra.url)
            big.close()


def test_a_pause_that_never_answers_stops_the_step_before_loading(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    hung = workers[2].url
    add_fault(hung, path="/pause_generation", hang=True)
    took = time.monotonic()
    with pytest.raises(WeightUpdateStepError) as info:
        fleet.update_weights(from_disk="/ckpt/step-10", version="s10", pause_timeout=1.0)
    assert time.monotonic() - took < NO_HANG_S
    report = info.value.report
    assert report.workers[hung].failed_phase == "pause"
    assert report.workers[hung].left == "unknown" and report.workers[hung].removed_from_router
    for w in workers:
        if w.url != hung:  # the quorum could not be met: nothing loaded, all continued
            assert report.workers[w.url].outcome == "not_loaded"
            assert report.workers[w.url].left == "continued"
            state = control_state(w.url)
            assert state["paused"] is None and state["weight_version"] != "s10"


def test_a_stopped_worker_fails_at_the_pause_and_the_others_update(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    stopped = workers[0]
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        took = time.monotonic()
        report = fleet.update_weights(
            from_disk="/ckpt/step-11", version="s11", quorum=2, pause_timeout=1.0
        )
        assert time.monotonic() - took < NO_HANG_S
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    assert report.workers[stopped.url].failed_phase == "pause"
    assert len(report.updated) == 2 and report.quorum_met


def test_async_update_weights(fleet: Fleet, workers: list[FakeWorkerProcess]) -> None:
    async def main() -> WeightUpdateReport:
        with anyio.fail_after(NO_HANG_S):
            return await fleet.async_update_weights(from_disk="/ckpt/step-12", version="s12")

    report = anyio.run(main)
    assert report.ok
    assert {control_state(w.url)["weight_version"] for w in workers} == {"s12"}


# -- a single server ---------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeWorkerProcess]:
    with start_fake_worker(config=CONFIG) as w:
        yield w


def test_a_single_server_is_a_fleet_of_one(server: FakeWorkerProcess) -> None:
    with InferenceHTTPClient(server.url, max_retries=0) as client, client.fleet() as fleet:
        report = fleet.update_weights(from_disk="/ckpt/one", version="o1", pause="abort")
        assert report.ok and report.router_url is None
        add_fault(server.url, weight_update_error="load")
        with pytest.raises(WeightUpdateStepError) as info:
            fleet.update_weights(from_disk="/ckpt/two", version="o2")
        failed = info.value.report.workers[server.url]
        assert failed.left == "paused" and not failed.removed_from_router
        assert control_state(server.url)["paused"] == "retract"
        fleet.restore(info.value.report)
        assert control_state(server.url)["paused"] is None


# -- safe defaults -----------------------------------------------------------------------


def _generate_in_background(url: str, tokens: int) -> threading.Thread:
    def run() -> None:
        with InferenceHTTPClient(url) as client:
            client.generate("hi", sampling_params={"max_new_tokens": tokens, "ignore_eos": True})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_release_memory_waits_for_idle_or_says_what_runs(server: FakeWorkerProcess) -> None:
    """Never sent into sglang's 400 (or its scheduler assert) on a busy engine."""
    with InferenceHTTPClient(server.url) as client:
        thread = _generate_in_background(server.url, 3000)  # ~30 s at 10 ms per token
        wait_until(lambda: running(server.url) == 1, "the generation to run")
        with pytest.raises(EngineBusyError) as info:
            client.release_memory_occupation(idle_timeout=0.3)
        assert info.value.running == 1 and "1 requests running" in str(info.value)
        assert requests_to(server.url, "/release_memory_occupation") == 0
        with Fleet.from_urls([server.url]) as fleet, pytest.raises(FleetError) as fleet_info:
            fleet.release_memory_occupation(["kv_cache"], idle_timeout=0.3)
        assert isinstance(fleet_info.value.errors[server.url], EngineBusyError)
        assert requests_to(server.url, "/release_memory_occupation") == 0
        # paused with retract: the held request waits, sglang ignores it -> released
        client.pause_generation(mode="retract")
        try:
            client.release_memory_occupation(idle_timeout=5)
            assert control_state(server.url)["released_memory_tags"] == [
                "cuda_graph",
                "kv_cache",
                "weights",
            ]
            client.resume_memory_occupation()
        finally:
            client.continue_generation()
        client.abort_request(abort_all=True)
        thread.join(NO_HANG_S)


def test_release_memory_waits_until_the_requests_end(server: FakeWorkerProcess) -> None:
    with InferenceHTTPClient(server.url) as client:
        thread = _generate_in_background(server.url, 30)  # ~0.3 s
        wait_until(lambda: running(server.url) == 1, "the generation to run")
        client.release_memory_occupation(["kv_cache"], idle_timeout=NO_HANG_S)
        assert not thread.is_alive() or running(server.url) == 0
        thread.join(NO_HANG_S)
        assert control_state(server.url)["released_memory_tags"] == ["kv_cache"]


def test_update_weight_version_keeps_sglangs_default_and_says_so(server: FakeWorkerProcess) -> None:
    """The client's call aborts like sglang (documented); the step's stamp does not."""
    assert "aborts every request in flight" in (
        InferenceHTTPClient.update_weight_version.__doc__ or ""
    )
    with InferenceHTTPClient(server.url) as client:
        thread = _generate_in_background(server.url, 3000)
        wait_until(lambda: running(server.url) == 1, "the generation to run")
        client.update_weight_version("relabel", abort_all_requests=False)
        assert running(server.url) == 1
        client.update_weight_version("relabel-2")  # sglang's default: aborts it
        thread.join(NO_HANG_S)
        assert not thread.is_alive() and running(server.url) == 0


def test_in_place_flushes_after_the_continue(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    """``in_place`` holds the running requests: the flush waits until after the continue."""
    url = workers[0].url
    thread = _generate_in_background(url, 40)  # ~0.4 s, held by the pause, then ends
    wait_until(lambda: running(url) == 1, "the generation to run")
    add_fault(url, weight_update_error="flush")
    report = fleet.update_weights(from_disk="/ckpt/step-13", version="s13", pause="in_place")
    thread.join(NO_HANG_S)
    worker = report.workers[url]
    assert isinstance(worker.phases["load"].error, CacheNotFlushedError)
    assert list(worker.phases)[-2:] == ["continue", "flush"] and worker.phases["flush"].ok
    assert worker.outcome == "updated" and worker.left == "continued"
    assert report.ok


def test_async_load_past_its_deadline_and_the_error_pickles(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    slow = workers[2].url
    add_fault(slow, path="/update_weights_from_disk", delay_s=30)

    async def main() -> WeightUpdateStepError:
        with anyio.fail_after(NO_HANG_S), pytest.raises(WeightUpdateStepError) as info:
            await fleet.async_update_weights(
                from_disk="/ckpt/step-14", version="s14", load_timeout=1.0, quorum=3
            )
        return info.value

    error = anyio.run(main)
    assert error.report.failed == [slow] and error.report.workers[slow].left == "paused"
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, WeightUpdateStepError) and copy.report.failed == [slow]
    assert isinstance(copy.report.workers[slow].error, TimeoutError)


def test_a_failed_stamp_leaves_the_worker_paused_and_take_out_can_be_declined(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    url = workers[1].url
    add_fault(url, path="/update_weight_version", weight_update_error="load")
    report = fleet.update_weights(
        from_disk="/ckpt/step-15", version="s15", quorum=2, take_out_failed=False
    )
    worker = report.workers[url]
    assert worker.failed_phase == "stamp" and isinstance(worker.error, WeightUpdateError)
    assert worker.left == "paused" and not worker.removed_from_router
    assert report.router_url is None and url in _listed(router)
    assert control_state(url)["paused"] == "retract"
    assert "add_worker" not in report.restore_hint
    assert fleet.restore(report).ok and control_state(url)["paused"] is None
