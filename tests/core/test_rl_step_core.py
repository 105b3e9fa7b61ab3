"""The RL step's plans without sockets: drain check, idle wait, taking workers out, quorum."""

from __future__ import annotations

import types
from typing import Any

import pytest
from test_plans import Driver, FakeClock, Reply

from rlinf_http import APITimeoutError, EngineBusyError, InvalidRequestError
from rlinf_http._core import rl_step
from rlinf_http._fleet._step import _quorum


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(rl_step, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def loads(running: int, waiting: int = 0) -> dict[str, Any]:
    return {"loads": [{"dp_rank": 0, "num_running_reqs": running, "num_waiting_reqs": waiting}]}


def test_drain_waits_for_ready_503_and_no_running_request(clock: FakeClock) -> None:
    ready = iter([200, 503, 503])
    running = iter([1, 1, 0])

    def script(method: str, path: str, body: Any) -> Reply:
        if path == "/ready":
            return (next(ready), b"")
        return (200, loads(next(running)))

    driver = Driver(script, clock)
    driver.run(rl_step.drain_plan("retract", 10))
    assert driver.paths == [("GET", "/ready"), ("GET", "/v1/loads")] * 3
    assert len(driver.sleeps) == 2


def test_drain_past_its_deadline_says_what_did_not_happen(clock: FakeClock) -> None:
    driver = Driver(lambda m, p, b: (200, b"") if p == "/ready" else (200, loads(2)), clock)
    with pytest.raises(APITimeoutError) as info:
        driver.run(rl_step.drain_plan("abort", 1))
    assert "not paused" in str(info.value) and "2 requests still running" in str(info.value)


def test_drain_without_ready_or_loads_takes_the_worker_at_its_word() -> None:
    driver = Driver(lambda m, p, b: (404, b""))
    driver.run(rl_step.drain_plan("retract", 5))
    assert driver.paths == [("GET", "/ready"), ("GET", "/v1/loads")]


def test_drain_in_place_does_not_wait_for_the_held_requests() -> None:
    driver = Driver(lambda m, p, b: (503, b""))
    driver.run(rl_step.drain_plan("in_place", 5))
    assert driver.paths == [("GET", "/ready")]


@pytest.mark.parametrize(("mode", "timeout"), [("stop", 1.0), ("retract", -1), ("abort", None)])
def test_drain_arguments(mode: Any, timeout: Any) -> None:
    with pytest.raises(InvalidRequestError):
        rl_step.drain_plan(mode, timeout)


def test_release_is_not_sent_to_a_busy_engine(clock: FakeClock) -> None:
    driver = Driver(lambda m, p, b: (200, loads(3, 1)), clock)
    with pytest.raises(EngineBusyError) as info:
        driver.run(rl_step.release_when_idle_plan(["kv_cache"], 2))
    assert (info.value.running, info.value.waiting) == (3, 1)
    assert ("POST", "/release_memory_occupation") not in driver.paths


def test_release_on_a_paused_engine_ignores_waiting_requests() -> None:
    def script(method: str, path: str, body: Any) -> Reply:
        if path == "/v1/loads":
            return (200, loads(0, 4))
        if path == "/ready":
            return (503, b"")
        return (200, b"null")

    driver = Driver(script)
    driver.run(rl_step.release_when_idle_plan(None, 2))
    assert driver.paths[-1] == ("POST", "/release_memory_occupation")
    assert driver.calls[-1][2] == {}


def test_release_arguments_are_checked_before_any_io() -> None:
    with pytest.raises(InvalidRequestError):
        rl_step.release_when_idle_plan(["vram"], 2)
    with pytest.raises(InvalidRequestError):
        rl_step.release_when_idle_plan(None, -1)


def test_take_out_deletes_every_rank_entry_then_waits_until_unlisted(clock: FakeClock) -> None:
    listings = iter(
        [
            [("a1", "http://w:1@0"), ("a2", "http://w:1@1"), ("b", "http://w:2")],
            [("a2", "http://w:1@1"), ("b", "http://w:2")],
            [("b", "http://w:2")],
        ]
    )

    def script(method: str, path: str, body: Any) -> Reply:
        if method == "GET":
            workers = [{"id": i, "url": u} for i, u in next(listings)]
            return (200, {"workers": workers})
        return (202, {"status": "accepted"})

    driver = Driver(script, clock)
    out = driver.run(rl_step.take_out_plan(["http://w:1", "http://w:9"], 10))
    assert out == {"http://w:1": True, "http://w:9": False}
    assert [p for m, p in driver.paths if m == "DELETE"] == ["/workers/a1", "/workers/a2"]


def test_take_out_reports_a_worker_still_listed_at_the_deadline(clock: FakeClock) -> None:
    def script(method: str, path: str, body: Any) -> Reply:
        if method == "GET":
            return (200, {"workers": [{"id": "a", "url": "http://w:1"}]})
        return (500, b"")

    out = Driver(script, clock).run(rl_step.take_out_plan(["http://w:1"], 1))
    assert out == {"http://w:1": False}


@pytest.mark.parametrize(
    ("quorum", "workers", "count"),
    [(None, 3, 3), (2, 3, 2), (1, 1, 1), (0.5, 3, 2), (1.0, 3, 3), (0.34, 3, 2), (0.3, 10, 3)],
)
def test_quorum(quorum: Any, workers: int, count: int) -> None:
    assert _quorum(quorum, workers) == count


@pytest.mark.parametrize("quorum", [0, 4, -1, 0.0, 1.5, float("nan"), True, "all"])
def test_bad_quorum(quorum: Any) -> None:
    with pytest.raises(InvalidRequestError):
        _quorum(quorum, 3)
