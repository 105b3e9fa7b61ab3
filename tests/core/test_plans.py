"""Admin plans driven by a scripted fake driver: fallbacks, polling, deadlines (no sockets)."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rlinf_http import (
    APIConnectionError,
    APITimeoutError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    Worker,
    WorkerNotFoundError,
    WorkerRegistrationError,
)
from rlinf_http._core import plans
from rlinf_http._core.plans import Call, Sleep
from rlinf_http._core.responses import RawResponse, status_error

Reply = tuple[int, Any] | BaseException  # (status, body) or an error to throw in


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(plans, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


class Driver:
    """Runs a plan; ``script(method, path, body)`` answers each Call."""

    def __init__(self, script: Callable[[str, str, Any], Reply], clock: FakeClock | None = None):
        self.script = script
        self.clock = clock
        self.calls: list[tuple[str, str, Any, Call]] = []
        self.sleeps: list[float] = []

    def run(self, plan: plans.Plan[Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if isinstance(step, Sleep):
                assert step.seconds > 0
                self.sleeps.append(step.seconds)
                if self.clock is not None:
                    self.clock.now += step.seconds
                continue
            assert isinstance(step, Call)
            op = step.op
            body = json.loads(op.content) if op.content else None
            self.calls.append((op.method, op.path, body, step))
            reply = self.script(op.method, op.path, body)
            if isinstance(reply, BaseException):
                error = reply
                continue
            status, payload = reply
            if isinstance(payload, (bytes, str)):
                content = payload.encode() if isinstance(payload, str) else payload
            else:
                content = json.dumps(payload).encode()
            raw = RawResponse(op.method, "http://x" + op.path, status, httpx.Headers(), content)
            if raw.is_success:
                value = op.parse(raw)
            else:
                error = status_error(raw)

    @property
    def paths(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.calls]


SERVER_INFO = {"model_path": "/m", "served_model_name": "fake", "tp_size": 1, "version": "0.5"}
MODEL_INFO = {"model_path": "/m", "is_generation": True, "architectures": ["X"]}
WID = "0b1c2d3e-0000-4000-8000-000000000001"


def worker(healthy: bool, status: str | None = None, message: str | None = None) -> dict:
    w: dict[str, Any] = {"id": WID, "url": "http://127.0.0.1:9", "is_healthy": healthy}
    if status is not None:
        w.update(model_id="unknown", worker_type="unknown")
        w["job_status"] = {
            "job_type": "AddWorker",
            "worker_url": "http://127.0.0.1:9",
            "status": status,
            "message": message,
        }
    return w


# -- info fallbacks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "new", "old", "body"),
    [
        (plans.server_info_plan, "/server_info", "/get_server_info", SERVER_INFO),
        (plans.model_info_plan, "/model_info", "/get_model_info", MODEL_INFO),
    ],
)
def test_info_prefers_new_route(plan: Any, new: str, old: str, body: dict) -> None:
    d = Driver(lambda m, p, b: (200, body) if p == new else (500, "unexpected"))
    out = d.run(plan())
    assert out.model_path == "/m"
    assert d.paths == [("GET", new)]


@pytest.mark.parametrize(
    ("plan", "new", "old", "body"),
    [
        (plans.server_info_plan, "/server_info", "/get_server_info", SERVER_INFO),
        (plans.model_info_plan, "/model_info", "/get_model_info", MODEL_INFO),
    ],
)
def test_info_falls_back_on_404(plan: Any, new: str, old: str, body: dict) -> None:
    d = Driver(lambda m, p, b: (404, {"detail": "Not Found"}) if p == new else (200, body))
    out = d.run(plan())
    assert out.model_path == "/m"
    assert d.paths == [("GET", new), ("GET", old)]


def test_info_other_errors_do_not_fall_back() -> None:
    d = Driver(lambda m, p, b: (500, {"error": {"message": "boom"}}))
    with pytest.raises(InternalServerError):
        d.run(plans.server_info_plan())
    assert d.paths == [("GET", "/server_info")]


def test_server_info_text_plain_json_and_extras_kept() -> None:
    body = {**SERVER_INFO, "incremental_streaming_output": True, "custom_flag": 3}
    out = Driver(lambda m, p, b: (200, json.dumps(body))).run(plans.server_info_plan())
    assert out.incremental_streaming_output is True
    assert out["custom_flag"] == 3


def test_models_plan() -> None:
    body = {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "local"}]}
    out = Driver(lambda m, p, b: (200, body)).run(plans.models_plan())
    assert [c.id for c in out.data] == ["fake"]


# -- flush / abort / health_generate ---------------------------------------------------------


def test_flush_cache_server_text() -> None:
    d = Driver(lambda m, p, b: (200, "Cache flushed.\n"))
    out = d.run(plans.flush_cache_plan())
    assert out.flushed is True and out.status_code == 200
    assert out.message == "Cache flushed."
    assert d.paths == [("POST", "/flush_cache")]
    assert d.calls[0][3].max_retries == 0


def test_flush_cache_refused_is_not_flushed() -> None:
    text = "Cache not flushed. Please check if there are running or waiting requests.\n"
    out = Driver(lambda m, p, b: (400, text)).run(plans.flush_cache_plan())
    assert out.flushed is False and out.status_code == 400
    assert "not flushed" in out.message


def test_flush_cache_router_json() -> None:
    body = {"status": "success", "message": "flushed 2", "workers_flushed": 2}
    out = Driver(lambda m, p, b: (200, body)).run(plans.flush_cache_plan())
    assert out.flushed is True
    assert out.message == "flushed 2"
    assert out.details is not None and out.details["workers_flushed"] == 2


def test_abort_request_body() -> None:
    d = Driver(lambda m, p, b: (200, b""))
    assert d.run(plans.abort_request_plan("rid-1")) is None
    assert d.calls[0][:3] == ("POST", "/abort_request", {"rid": "rid-1", "abort_all": False})
    d.run(plans.abort_request_plan("", abort_all=True))
    assert d.calls[1][2] == {"rid": "", "abort_all": True}


@pytest.mark.parametrize("rid", [None, 5, ""])
def test_abort_request_invalid_before_io(rid: Any) -> None:
    d = Driver(lambda m, p, b: (200, b""))
    with pytest.raises(InvalidRequestError):
        d.run(plans.abort_request_plan(rid))
    assert d.calls == []


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        ((200, b""), True),
        ((503, b""), False),
        (APIConnectionError("refused"), False),
        (APITimeoutError("slow"), False),
    ],
)
def test_health_generate(reply: Reply, ok: bool) -> None:
    d = Driver(lambda m, p, b: reply)
    assert d.run(plans.health_generate_plan(7.0)) is ok
    assert d.calls[0][3].timeout == 7.0
    assert d.calls[0][3].max_retries == 0


# -- readiness / list ----------------------------------------------------------------------------


def test_readiness_ready() -> None:
    body = {"status": "ready", "healthy_workers": 2, "total_workers": 2}
    out = Driver(lambda m, p, b: (200, body)).run(plans.readiness_plan())
    assert out.ready and out.healthy_workers == 2


def test_readiness_503_is_not_ready() -> None:
    body = {"status": "not ready", "reason": "insufficient healthy workers"}
    out = Driver(lambda m, p, b: (503, body)).run(plans.readiness_plan())
    assert out.ready is False
    assert out.reason == "insufficient healthy workers"


def test_readiness_503_empty_body_is_not_ready() -> None:
    out = Driver(lambda m, p, b: (503, b"")).run(plans.readiness_plan())
    assert out.ready is False


def test_list_workers() -> None:
    body = {"workers": [worker(True)], "total": 1, "stats": {"regular_count": 1}}
    out = Driver(lambda m, p, b: (200, body)).run(plans.list_workers_plan())
    assert [w.id for w in out.workers] == [WID] and out.total == 1


# -- add_worker ------------------------------------------------------------------------------


def accepted(m: str, p: str, b: Any) -> Reply | None:
    if (m, p) == ("POST", "/workers"):
        return 202, {"status": "accepted", "worker_id": WID, "location": f"/workers/{WID}"}
    return None


def test_add_worker_polls_until_healthy(clock: FakeClock) -> None:
    answers: list[Reply] = [
        (404, {"error": f"Worker {WID} not found", "code": "WORKER_NOT_FOUND"}),
        (200, worker(False, "processing")),
        (200, worker(False)),  # registered, health not yet confirmed
        (200, worker(True)),
    ]

    def script(m: str, p: str, b: Any) -> Reply:
        return accepted(m, p, b) or answers.pop(0)

    d = Driver(script, clock)
    out = d.run(plans.add_worker_plan("http://127.0.0.1:9/", "regular", {"priority": 3}, 30, 0.5))
    assert isinstance(out, Worker) and out.is_healthy and out.id == WID
    assert d.calls[0][:3] == (
        "POST",
        "/workers",
        {"url": "http://127.0.0.1:9", "worker_type": "regular", "priority": 3},
    )
    assert d.paths[1:] == [("GET", f"/workers/{WID}")] * 4
    assert d.sleeps == [0.5, 0.5, 0.5]
    assert answers == []


def test_add_worker_failed_job(clock: FakeClock) -> None:
    answers: list[Reply] = [
        (200, worker(False, "processing")),
        (200, worker(False, "failed", "Worker already exists")),
    ]
    d = Driver(lambda m, p, b: accepted(m, p, b) or answers.pop(0), clock)
    with pytest.raises(WorkerRegistrationError, match="already exists"):
        d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, 30, 0.5))


def test_add_worker_deadline(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: accepted(m, p, b) or (200, worker(False, "processing")), clock)
    with pytest.raises(APITimeoutError, match="processing"):
        d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, 2.0, 0.5))
    # polled over the whole window, never slept past the deadline
    assert sum(d.sleeps) == pytest.approx(2.0)
    assert 4 <= len(d.sleeps) <= 5


def test_add_worker_deadline_while_not_listed(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: accepted(m, p, b) or (404, b""), clock)
    with pytest.raises(APITimeoutError, match="not listed"):
        d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, 1.0, 0.3))


def test_add_worker_dropped_after_listed_is_a_registration_error(clock: FakeClock) -> None:
    # smg 1.13 gives up on a worker (--worker-startup-timeout-secs) by dropping it:
    # the job said "processing", then GET /workers/{id} is a 404
    answers: list[Reply] = [
        (404, b""),  # not listed yet: keep waiting
        (200, worker(False, "processing")),
        (404, {"error": f"Worker {WID} not found", "code": "WORKER_NOT_FOUND"}),
    ]

    def reply(m: str, p: str, b: Any) -> Reply:
        if (m, p) == ("GET", "/workers"):  # the listing never shows it: dropped
            return (200, {"workers": []})
        return accepted(m, p, b) or answers.pop(0)

    d = Driver(reply, clock)
    with pytest.raises(WorkerRegistrationError, match=r"gave up on worker .*processing"):
        d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, 30, 0.5))
    assert answers == []
    # the listing was read over a short grace (3 s), not the whole deadline
    assert 2.5 <= sum(d.sleeps) - 1.0 <= 3.5


def test_add_worker_forgotten_job_then_listed_is_added(clock: FakeClock) -> None:
    # sglang-router 0.3.2, several workers added at once: the job of one still
    # registering is forgotten (404), then the worker shows in the listing
    answers: list[Reply] = [
        (200, worker(False, "processing")),
        (404, {"error": "not found"}),
    ]
    listings: list[Reply] = [
        (200, {"workers": []}),
        (200, {"workers": [worker(False)]}),
        (200, {"workers": [worker(True)]}),
    ]

    def reply(m: str, p: str, b: Any) -> Reply:
        if (m, p) == ("GET", "/workers"):
            return listings.pop(0)
        forgotten: Reply = (404, {"error": "not found"})  # the job stays forgotten
        return accepted(m, p, b) or (answers.pop(0) if answers else forgotten)

    d = Driver(reply, clock)
    out = d.run(plans.add_worker_plan("http://127.0.0.1:9/", "regular", {}, 30, 0.5))
    assert isinstance(out, Worker) and out.is_healthy
    assert answers == [] and listings == []


def test_add_worker_without_worker_id(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: (202, {"status": "accepted"}), clock)
    with pytest.raises(WorkerRegistrationError):
        d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, 5, 0.5))
    assert len(d.calls) == 1


def test_add_worker_post_not_retried(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: accepted(m, p, b) or (200, worker(True)), clock)
    d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, 5, 0.5))
    assert d.calls[0][3].max_retries == 0


@pytest.mark.parametrize("url", ["127.0.0.1:9", "ftp://h:1", "http://", 5, None])
def test_add_worker_invalid_url_before_io(url: Any) -> None:
    d = Driver(lambda m, p, b: (500, b""))
    with pytest.raises(InvalidRequestError):
        d.run(plans.add_worker_plan(url, "regular", {}, 5, 0.5))
    assert d.calls == []


@pytest.mark.parametrize("timeout", [0, -1, "5"])
def test_add_worker_invalid_timeout_before_io(timeout: Any) -> None:
    d = Driver(lambda m, p, b: (500, b""))
    with pytest.raises(InvalidRequestError):
        d.run(plans.add_worker_plan("http://127.0.0.1:9", "regular", {}, timeout, 0.5))
    assert d.calls == []


# -- remove_worker ---------------------------------------------------------------------------


def test_remove_worker_by_url(clock: FakeClock) -> None:
    other = {**worker(True), "id": "other", "url": "http://127.0.0.1:8"}
    mine = {**worker(True), "url": "http://127.0.0.1:9"}
    gets: list[Reply] = [(200, mine), (404, b"")]

    def script(m: str, p: str, b: Any) -> Reply:
        if p == "/workers":
            return 200, {"workers": [other, mine], "total": 2}
        if m == "DELETE":
            return 202, {"status": "accepted", "worker_id": WID}
        return gets.pop(0)

    d = Driver(script, clock)
    assert d.run(plans.remove_worker_plan(None, "http://127.0.0.1:9/", 10, 0.2)) is True
    assert d.paths == [
        ("GET", "/workers"),
        ("DELETE", f"/workers/{WID}"),
        ("GET", f"/workers/{WID}"),
        ("GET", f"/workers/{WID}"),
    ]
    assert d.sleeps == [0.2]


def test_remove_worker_url_as_first_argument(clock: FakeClock) -> None:
    # remove_worker("http://...") resolves the URL; it never sends DELETE /workers/http://...
    mine = {**worker(True), "url": "http://127.0.0.1:9"}
    gets: list[Reply] = [(404, b"")]

    def script(m: str, p: str, b: Any) -> Reply:
        if p == "/workers":
            return 200, {"workers": [mine], "total": 1}
        if m == "DELETE":
            return 202, {"status": "accepted", "worker_id": WID}
        return gets.pop(0)

    d = Driver(script, clock)
    assert d.run(plans.remove_worker_plan("http://127.0.0.1:9/", None, 10, 0.2)) is True
    assert d.paths == [
        ("GET", "/workers"),
        ("DELETE", f"/workers/{WID}"),
        ("GET", f"/workers/{WID}"),
    ]


@pytest.mark.parametrize("first", [None, "http://127.0.0.1:7"])
def test_remove_worker_unknown_url_is_worker_not_found(clock: FakeClock, first: Any) -> None:
    mine = {**worker(True), "url": "http://127.0.0.1:9"}
    d = Driver(lambda m, p, b: (200, {"workers": [mine], "total": 1}), clock)
    url = None if first else "http://127.0.0.1:7"
    with pytest.raises(
        WorkerNotFoundError, match=r"127\.0\.0\.1:7.*registered: http://127\.0\.0\.1:9"
    ):
        d.run(plans.remove_worker_plan(first, url, 10, 0.2))
    assert d.paths == [("GET", "/workers")]


def test_remove_worker_by_id_404_is_false(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: (404, {"error": "not found", "code": "WORKER_NOT_FOUND"}), clock)
    assert d.run(plans.remove_worker_plan(WID, None, 10, 0.2)) is False
    assert d.paths == [("DELETE", f"/workers/{WID}")]


def test_remove_worker_deadline(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: (202, {}) if m == "DELETE" else (200, worker(True)), clock)
    with pytest.raises(APITimeoutError):
        d.run(plans.remove_worker_plan(WID, None, 1.0, 0.25))
    assert sum(d.sleeps) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("wid", "url"),
    [
        (None, None),
        (WID, "http://127.0.0.1:9"),
        ("http://127.0.0.1:8", "http://127.0.0.1:9"),
        ("", None),
        ("not a url", None),  # hostile review D8: was sent as DELETE /workers/not a url
        ("127.0.0.1:9/x", None),
    ],
)
def test_remove_worker_needs_exactly_one(wid: Any, url: Any) -> None:
    d = Driver(lambda m, p, b: (200, {}))
    with pytest.raises(InvalidRequestError):
        d.run(plans.remove_worker_plan(wid, url, 10, 0.2))
    assert d.calls == []


# -- wait_until_ready --------------------------------------------------------------------------


def test_wait_until_ready_router(clock: FakeClock) -> None:
    answers: list[Reply] = [
        APIConnectionError("refused"),
        (503, {"status": "not ready", "reason": "insufficient healthy workers"}),
        (200, {"status": "ready", "healthy_workers": 1, "total_workers": 1}),
    ]
    d = Driver(lambda m, p, b: answers.pop(0), clock)
    assert d.run(plans.wait_until_ready_plan(10, 0.1)) == "router"
    assert d.paths == [("GET", "/readiness")] * 3
    assert d.sleeps == [0.1, 0.1]
    assert all(c[3].max_retries == 0 for c in d.calls)


def test_wait_until_ready_router_200_not_ready_keeps_polling(clock: FakeClock) -> None:
    answers: list[Reply] = [
        (200, {"status": "not ready", "healthy_workers": 0}),
        (200, {"status": "ready", "healthy_workers": 1}),
    ]
    d = Driver(lambda m, p, b: answers.pop(0), clock)
    assert d.run(plans.wait_until_ready_plan(10, 0.1)) == "router"
    assert len(d.calls) == 2


def test_wait_until_ready_server(clock: FakeClock) -> None:
    health: list[Reply] = [(503, b""), APIConnectionError("reset"), (200, b"")]

    def script(m: str, p: str, b: Any) -> Reply:
        if p == "/readiness":
            return 404, {"detail": "Not Found"}
        return health.pop(0)

    d = Driver(script, clock)
    assert d.run(plans.wait_until_ready_plan(10, 0.1)) == "server"
    # /readiness is asked once; from then on only /health
    assert d.paths == [("GET", "/readiness")] + [("GET", "/health")] * 3


def test_wait_until_ready_deadline(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: APIConnectionError("refused"), clock)
    with pytest.raises(APITimeoutError, match="refused"):
        d.run(plans.wait_until_ready_plan(1.0, 0.3))
    assert sum(d.sleeps) == pytest.approx(1.0)


def test_wait_until_ready_invalid_timeout() -> None:
    with pytest.raises(InvalidRequestError):
        Driver(lambda m, p, b: (200, b"")).run(plans.wait_until_ready_plan(0, 0.1))


# -- wait_until_ready stops on what waiting cannot fix, and says what it waits for --


def _resolver_error() -> APIConnectionError:
    import socket

    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
    except httpx.ConnectError as exc:
        try:
            raise APIConnectionError(f"GET x failed: {exc}") from exc
        except APIConnectionError as err:
            return err


def test_plan_stops_at_once_on_401(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: (401, {"error": "bad key"}), clock)
    with pytest.raises(Exception, match="401"):
        d.run(plans.wait_until_ready_plan(300, 0.1))
    assert d.sleeps == []


def test_plan_stops_when_neither_readiness_nor_health_exists(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: (404, {"detail": "Not Found"}), clock)
    with pytest.raises(NotFoundError):
        d.run(plans.wait_until_ready_plan(300, 0.1))
    assert d.paths == [("GET", "/readiness"), ("GET", "/health")]
    assert d.sleeps == []


def test_plan_stops_at_once_on_a_name_that_does_not_resolve(clock: FakeClock) -> None:
    err = _resolver_error()
    d = Driver(lambda m, p, b: err, clock)
    with pytest.raises(APIConnectionError, match="does not resolve") as info:
        d.run(plans.wait_until_ready_plan(300, 0.1))
    assert not isinstance(info.value, APITimeoutError)
    assert d.sleeps == []


def test_plan_deadline_says_what_the_last_probe_got(clock: FakeClock) -> None:
    d = Driver(lambda m, p, b: (503, {"error": {"message": "no healthy workers"}}), clock)
    with pytest.raises(APITimeoutError, match=r"last: HTTP 503.*no healthy workers"):
        d.run(plans.wait_until_ready_plan(1.0, 0.3))
