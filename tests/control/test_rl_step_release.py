"""What ``fleet.update_weights(...)`` leaves for the callers of failed workers, and the way back.

- The requests a failed worker holds paused are aborted once it is out of the
  router: callers get them back (finish reason ``abort``) and can resume them
  elsewhere, instead of hanging until ``restore`` (``abort_failed=False`` keeps
  them held; an abort that fails is reported, never raised over the step's own
  error; ``in_place`` ends them as aborted at restore, as sglang 0.5.23 does).
- A load that fails on every worker the router lists keeps them in it, paused:
  the router is never left with no worker.
- ``restore`` re-adds the workers at once, within a timeout of their own.

On fake worker processes behind sglang-router 0.3.2 and smg 1.13 (``--enable-rl``:
the fleet goes through smg's RL plane). Each case failed before its fix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import anyio
import pytest
from control_helpers import add_fault, control_state, fake_stats, running, wait_until
from rl_step_cluster import cluster_router, cluster_workers  # noqa: F401 (fixtures)
from rl_step_cluster import listed as _listed
from rl_step_cluster import reset as _reset

from rlinf_http import (
    APIStatusError,
    FinishAbort,
    FinishLength,
    Fleet,
    GenerateOutput,
    InferenceHTTPClient,
    InvalidRequestError,
    WeightUpdateError,
    WeightUpdateReport,
    WeightUpdateStepError,
)
from rlinf_http.testing import (
    FakeWorkerProcess,
    RouterProcess,
)

#: Generous bound for "does not hang" (not a timing check).
NO_HANG_S = 60.0
#: A generation long enough to be running when the step pauses (~3 s unpaused).
TOKENS = 300


@pytest.fixture
def fleet(router: RouterProcess, workers: list[FakeWorkerProcess]) -> Iterator[Fleet]:
    _reset(router, workers)
    with InferenceHTTPClient(router.url, max_retries=0) as client, client.fleet() as f:
        assert set(f.urls) == {w.url for w in workers}
        yield f
    _reset(router, workers)


class _Generation:
    """One generation on one worker, in a thread: its output once it returns."""

    def __init__(self, url: str, tokens: int = TOKENS) -> None:
        self.out: GenerateOutput | None = None

        def run() -> None:
            with InferenceHTTPClient(url, max_retries=0) as client:
                params = {"max_new_tokens": tokens, "ignore_eos": True}
                self.out = client.generate("hi", sampling_params=params)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        wait_until(lambda: running(url) >= 1, "the generation to run")

    def result(self) -> GenerateOutput:
        self.thread.join(NO_HANG_S)
        assert not self.thread.is_alive(), "the generation is still held"
        assert self.out is not None
        return self.out


# -- D2: the requests a failed worker holds ----------------------------------------------


def test_held_requests_of_a_failed_worker_come_back_aborted_and_resume_elsewhere(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[1].url
    held = _Generation(bad)
    add_fault(bad, weight_update_error="load")
    report = fleet.update_weights(from_disk="/ckpt/r1", version="r1", quorum=2)
    failed = report.workers[bad]
    assert failed.failed_phase == "load" and isinstance(failed.error, WeightUpdateError)
    assert failed.left == "paused" and failed.removed_from_router
    assert failed.requests_aborted is True and failed.phases["abort"].ok
    assert "held requests aborted" in report.summary()
    # back before any restore, as aborted, from the paused worker (out of the router)
    out = held.result()
    assert isinstance(out.meta_info.finish_reason, FinishAbort)
    assert control_state(bad)["paused"] == "retract" and bad not in _listed(router)
    done = out.meta_info.completion_tokens or 0
    assert done < TOKENS
    # it finishes on a worker that updated: the router no longer sends to the failed one
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        resumed = client.resume(out)
    assert isinstance(resumed.meta_info.finish_reason, FinishLength)
    assert resumed.meta_info.completion_tokens == TOKENS
    assert resumed.meta_info.weight_version == "r1"


def test_abort_failed_false_keeps_the_requests_held_until_restore(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[2].url
    pauses = fake_stats(bad)["requests"].get("/pause_generation", 0)
    with pytest.raises(InvalidRequestError, match="abort_failed"):
        fleet.update_weights(from_disk="/ckpt/r2", version="r2", abort_failed=1)  # type: ignore[arg-type]
    assert fake_stats(bad)["requests"].get("/pause_generation", 0) == pauses  # before any I/O
    held = _Generation(bad, tokens=40)
    add_fault(bad, weight_update_error="load")
    report = fleet.update_weights(
        from_disk="/ckpt/r2", version="r2", quorum=2, abort_failed=False, take_out_failed=False
    )
    kept = report.workers[bad]
    assert kept.requests_aborted is None and "abort" not in kept.phases
    assert held.thread.is_alive()  # held by the pause
    assert fleet.restore(report).ok
    out = held.result()
    assert isinstance(out.meta_info.finish_reason, FinishLength)  # continued, not aborted


def test_an_abort_that_fails_is_reported_and_the_step_keeps_its_own_error(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[0].url
    held = _Generation(bad, tokens=40)
    add_fault(bad, weight_update_error="load")
    add_fault(bad, path="/abort_request", status=500, times=None)
    with pytest.raises(WeightUpdateStepError) as info:
        fleet.update_weights(from_disk="/ckpt/r3", version="r3", take_out_failed=False)
    assert list(info.value.errors) == [bad]
    assert isinstance(info.value.errors[bad], WeightUpdateError)  # the load's, not the abort's
    failed = info.value.report.workers[bad]
    assert failed.failed_phase == "load" and failed.requests_aborted is False
    assert isinstance(failed.phases["abort"].error, APIStatusError)
    assert "abort failed" in str(info.value)
    assert held.thread.is_alive()  # still held: the restore continues it
    assert fleet.restore(info.value.report).ok
    assert isinstance(held.result().meta_info.finish_reason, FinishLength)


def test_async_step_aborts_the_held_requests(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    bad = workers[1].url
    add_fault(bad, weight_update_error="load")

    async def main() -> tuple[WeightUpdateReport, GenerateOutput]:
        outs: list[GenerateOutput] = []
        async with InferenceHTTPClient(bad, max_retries=0) as client:

            async def generate() -> None:
                params = {"max_new_tokens": TOKENS, "ignore_eos": True}
                outs.append(await client.async_generate("hi", sampling_params=params))

            with anyio.fail_after(NO_HANG_S):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(generate)
                    while running(bad) < 1:
                        await anyio.sleep(0.01)
                    report = await fleet.async_update_weights(
                        from_disk="/ckpt/r4", version="r4", quorum=2, take_out_failed=False
                    )
        return report, outs[0]

    report, out = anyio.run(main)
    assert report.workers[bad].requests_aborted is True
    assert isinstance(out.meta_info.finish_reason, FinishAbort)
    assert control_state(bad)["paused"] == "retract"


def test_in_place_requests_end_aborted_at_restore(
    fleet: Fleet, workers: list[FakeWorkerProcess]
) -> None:
    """sglang 0.5.23 ends a request ``in_place`` keeps at its next forward pass:
    the abort is sent, the request comes back (aborted) once continued."""
    bad = workers[2].url
    held = _Generation(bad)
    add_fault(bad, weight_update_error="load")
    report = fleet.update_weights(
        from_disk="/ckpt/r5", version="r5", quorum=2, pause="in_place", take_out_failed=False
    )
    assert report.workers[bad].requests_aborted is True
    assert held.thread.is_alive() and control_state(bad)["paused"] == "in_place"
    assert fleet.restore(report).ok
    out = held.result()
    assert isinstance(out.meta_info.finish_reason, FinishAbort)
    assert (out.meta_info.completion_tokens or 0) < TOKENS  # not run to its end


def test_the_fake_holds_in_place_requests_through_an_abort_like_sglang(
    workers: list[FakeWorkerProcess],
) -> None:
    url = workers[0].url
    with InferenceHTTPClient(url) as client:
        for mode, finish_while_paused in (("retract", True), ("in_place", False)):
            aborted = fake_stats(url)["aborted"]
            held = _Generation(url)
            client.pause_generation(mode=mode)
            try:
                client.abort_request(abort_all=True)
                if finish_while_paused:  # back in the waiting queue: aborted at once
                    out = held.result()
                else:  # still in the running batch: no forward pass while paused
                    wait_until(lambda n=aborted: fake_stats(url)["aborted"] > n, "the abort")
                    assert held.thread.is_alive()
            finally:
                client.continue_generation()
            assert isinstance(held.result().meta_info.finish_reason, FinishAbort)
            if finish_while_paused:
                assert out.meta_info.finish_reason == FinishAbort(
                    type="abort", message="Abort in waiting queue"
                )


# -- D3: every worker failed; restore ------------------------------------------------------


def test_a_load_failing_everywhere_keeps_the_workers_in_the_router(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    urls = sorted(w.url for w in workers)
    for url in urls:
        add_fault(url, weight_update_error="load")

    async def main() -> WeightUpdateStepError:
        with anyio.fail_after(NO_HANG_S), pytest.raises(WeightUpdateStepError) as info:
            await fleet.async_update_weights(from_disk="/ckpt/r6", version="r6", quorum=1)
        return info.value

    error = anyio.run(main)
    report = error.report
    assert sorted(report.failed) == urls and sorted(report.kept_in_router) == urls
    assert report.removed_from_router == [] and _listed(router) == set(urls)
    assert "taking them out would leave it with none" in str(error)
    assert all(control_state(u)["paused"] == "retract" for u in urls)
    # kept in the router, not aborted: a resume could only land on a paused worker
    assert all(report.workers[u].requests_aborted is None for u in urls)
    assert "add_worker" not in report.restore_hint
    # the same fleet loads again (through smg's RL plane too): no restore needed
    report = fleet.update_weights(from_disk="/ckpt/r7", version="r7")
    assert report.ok and fleet.check_weight_version("r7").ok
    assert all(control_state(u)["paused"] is None for u in urls)


def test_restore_re_adds_the_workers_at_once(
    fleet: Fleet, router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    """Both re-adds are under way at the same time (a sequential restore reaches the
    second worker only once the first is back), and the restore ends in time."""
    a, b = workers[0].url, workers[1].url
    for url in (a, b):
        add_fault(url, weight_update_error="load")
    report = fleet.update_weights(from_disk="/ckpt/r8", version="r8", quorum=1)
    assert sorted(report.removed_from_router) == sorted([a, b])
    # both gateways read /server_info and /model_info of a worker they add (and give
    # up on one that takes a second): each answer held back a while
    probes = ("/server_info", "/model_info")

    def probed(u: str) -> int:
        return sum(fake_stats(u)["requests"].get(p, 0) for p in probes)

    before = {u: probed(u) for u in (a, b)}
    for url in (a, b):
        for path in probes:
            add_fault(url, path=path, delay_s=0.3)
    restored: list[object] = []

    def restore() -> None:
        try:
            restored.append(fleet.restore(report, timeout=30))
        except Exception as exc:  # read below
            restored.append(exc)

    thread = threading.Thread(target=restore)
    thread.start()

    def both_adding() -> bool:
        return all(probed(u) > before[u] and fake_stats(u)["in_flight"] >= 1 for u in (a, b))

    wait_until(both_adding, "both re-adds under way at once")
    thread.join(NO_HANG_S)
    assert not thread.is_alive()
    (result,) = restored
    assert getattr(result, "ok", False), result
    assert {a, b} <= _listed(router)
