"""The control-plane core without sockets: bodies, argument checks, answers and plans."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rlinf_http import (
    APIResponseValidationError,
    BadRequestError,
    CacheNotFlushedError,
    GenerationControlResult,
    InternalServerError,
    InvalidRequestError,
    Loads,
    WeightUpdateError,
    WeightUpdateResult,
    WeightVersionResult,
    WorkerList,
)
from rlinf_http._core import control
from rlinf_http._core.plans import Call, Plan, Sleep
from rlinf_http._core.responses import RawResponse, status_error

Reply = tuple[int, Any]  # (status, JSON value | bytes)


class Driver:
    """Runs a plan; ``script(method, path, body)`` answers each Call with (status, body)."""

    def __init__(self, script: Callable[[str, str, Any], Reply]) -> None:
        self.script = script
        self.calls: list[tuple[str, str, Any, Call]] = []

    def run(self, plan: Plan[Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            assert not isinstance(step, Sleep)
            op = step.op
            self.calls.append((op.method, op.path, json.loads(op.content or b"null"), step))
            status, payload = self.script(op.method, op.path, self.calls[-1][2])
            content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            raw = RawResponse(op.method, "http://x" + op.path, status, httpx.Headers(), content)
            if raw.is_success:
                try:
                    value = op.parse(raw)
                except Exception as exc:
                    error = exc
            else:
                error = status_error(raw)

    @property
    def paths(self) -> list[str]:
        return [p for _, p, _, _ in self.calls]

    @property
    def bodies(self) -> list[Any]:
        return [b for _, _, b, _ in self.calls]


def ok(body: Any = None) -> Callable[[str, str, Any], Reply]:
    payload = {"success": True, "message": "Success"} if body is None else body
    return lambda m, p, b: (200, payload)


# -- bodies -----------------------------------------------------------------------------


def test_disk_body_and_result() -> None:
    d = Driver(ok({"success": True, "message": "Succeeded", "num_paused_requests": 0}))
    out = d.run(
        control.update_weights_from_disk_plan(
            "/ckpt/7", weight_version="7", extra={"torch_empty_cache": True}
        )
    )
    assert isinstance(out, WeightUpdateResult)
    assert (out.success, out.message, out.num_paused_requests) == (True, "Succeeded", 0)
    assert d.paths == ["/update_weights_from_disk"]
    assert d.bodies == [
        {
            "torch_empty_cache": True,
            "model_path": "/ckpt/7",
            "abort_all_requests": False,
            "flush_cache": True,
            "weight_version": "7",
        }
    ]
    call = d.calls[0][3]
    assert call.max_retries == 0  # a weight load is never resent
    assert call.op.headers == (("content-type", "application/json"),)


def test_multi_rank_disk_answer() -> None:
    answer = {"success": True, "message": "a | b", "num_paused_requests": [0, 0]}
    out = Driver(ok(answer)).run(control.update_weights_from_disk_plan("/m"))
    assert out.num_paused_requests == [0, 0]


@pytest.mark.parametrize(
    ("plan", "path", "body"),
    [
        (lambda: control.pause_generation_plan(), "/pause_generation", {"mode": "abort"}),
        (
            lambda: control.pause_generation_plan("retract"),
            "/pause_generation",
            {"mode": "retract"},
        ),
        (
            lambda: control.continue_generation_plan(),
            "/continue_generation",
            {"torch_empty_cache": True},
        ),
        (lambda: control.release_memory_occupation_plan(), "/release_memory_occupation", {}),
        (
            lambda: control.resume_memory_occupation_plan(["weights"]),
            "/resume_memory_occupation",
            {"tags": ["weights"]},
        ),
        (
            lambda: control.destroy_weights_update_group_plan(),
            "/destroy_weights_update_group",
            {"group_name": "weight_update_group"},
        ),
        (lambda: control.begin_weight_update_plan(), "/begin_weight_update", {"selector": "all"}),
        (lambda: control.end_weight_update_plan(), "/end_weight_update", {}),
        (
            lambda: control.update_weight_version_plan("3"),
            "/update_weight_version",
            {"new_version": "3", "abort_all_requests": True},
        ),
        (
            lambda: control.init_weights_update_group_plan("10.0.0.1", 29500, 1, 3),
            "/init_weights_update_group",
            {
                "master_address": "10.0.0.1",
                "master_port": 29500,
                "rank_offset": 1,
                "world_size": 3,
                "group_name": "weight_update_group",
                "backend": "nccl",
            },
        ),
    ],
)
def test_every_post_sends_a_json_object(
    plan: Callable[[], Plan[Any]], path: str, body: Any
) -> None:
    d = Driver(lambda m, p, b: (200, None))  # JSON null: every parser takes it as success
    d.run(plan())
    assert d.calls[0][0] == "POST" and d.paths == [path]
    assert d.bodies == [body]  # a JSON object, "{}" where every field has its default


def test_distributed_body() -> None:
    d = Driver(ok())
    d.run(
        control.update_weights_from_distributed_plan(
            ["a.weight", "b.bias"],
            ["bfloat16", "torch.float32"],
            [(2, 3), [4]],
            weight_version="5",
            load_format="flattened_bucket",
            selector="target",
        )
    )
    assert d.bodies == [
        {
            "flush_cache": True,
            "abort_all_requests": False,
            "selector": "target",
            "weight_version": "5",
            "load_format": "flattened_bucket",
            "names": ["a.weight", "b.bias"],
            "dtypes": ["bfloat16", "float32"],
            "shapes": [[2, 3], [4]],
            "group_name": "weight_update_group",
        }
    ]


def test_tensor_payload_is_base64() -> None:
    d = Driver(ok())
    raw = b"\x80\x04payload"
    already = base64.b64encode(b"other").decode()
    d.run(control.update_weights_from_tensor_plan([raw, already]))
    sent = d.bodies[0]["serialized_named_tensors"]
    assert sent == [base64.b64encode(raw).decode(), already]
    assert base64.b64decode(sent[0]) == raw


def test_loads_query_and_model() -> None:
    answer = {
        "timestamp": "2026-11-30T00:00:00Z",
        "version": "0.5.23",
        "accelerator": "cuda",
        "num_accelerators": 1,
        "loads": [
            {"dp_rank": 0, "num_running_reqs": 3, "num_waiting_reqs": 1, "token_usage": 0.5},
            {"dp_rank": 1, "num_running_reqs": 2, "num_waiting_reqs": 0, "new_field": 1},
        ],
    }
    d = Driver(lambda m, p, b: (200, answer))
    out = d.run(control.loads_plan(["core", "queues"], dp_rank=1))
    assert d.calls[0][0] == "GET" and d.calls[0][3].op.content is None
    assert d.paths == ["/v1/loads?include=core,queues&dp_rank=1"]
    assert isinstance(out, Loads)
    assert (out.num_running_reqs, out.num_waiting_reqs) == (5, 1)
    assert out.loads[1]["new_field"] == 1  # unknown fields are kept
    assert Driver(lambda m, p, b: (200, answer)).run(control.loads_plan()).version == "0.5.23"


def test_weight_version_reads_model_info() -> None:
    d = Driver(lambda m, p, b: (200, {"model_path": "/m", "weight_version": "12"}))
    assert d.run(control.weight_version_plan()) == "12"
    assert d.paths == ["/model_info"]


# -- every answer shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", ""),
        (b"null", ""),
        (b"Generation paused.", "Generation paused."),
        (b'{"message": "Generation paused successfully.", "status": "ok"}', None),
    ],
)
def test_pause_answers(content: bytes, message: str | None) -> None:
    out = Driver(lambda m, p, b: (200, content)).run(control.pause_generation_plan("in_place"))
    assert isinstance(out, GenerationControlResult)
    if message is None:
        assert (out.message, out.status) == ("Generation paused successfully.", "ok")
    else:
        assert out.message == message


@pytest.mark.parametrize("content", [b"", b"null", b"ok\n", b"{}"])
def test_memory_answers_are_none(content: bytes) -> None:
    assert (
        Driver(lambda m, p, b: (200, content)).run(control.release_memory_occupation_plan()) is None
    )


def test_non_object_json_is_a_validation_error() -> None:
    with pytest.raises(APIResponseValidationError):
        Driver(lambda m, p, b: (200, [1, 2])).run(control.begin_weight_update_plan())


def test_version_result() -> None:
    answer = {"success": True, "message": "Weight version updated to 9", "new_version": "9"}
    out = Driver(ok(answer)).run(control.update_weight_version_plan("9", False))
    assert isinstance(out, WeightVersionResult) and out.new_version == "9"


# -- failures ----------------------------------------------------------------------------


def test_failed_update_carries_the_server_message() -> None:
    refusal = {"success": False, "message": "Failed to load weights: no such file /x"}
    d = Driver(lambda m, p, b: (400, refusal))
    with pytest.raises(WeightUpdateError) as info:
        d.run(control.update_weights_from_disk_plan("/x"))
    exc = info.value
    assert not isinstance(exc, CacheNotFlushedError) and exc.weights_updated is False
    assert isinstance(exc, BadRequestError) and exc.status_code == 400
    assert exc.message == "Failed to load weights: no such file /x"
    assert exc.body == refusal
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is WeightUpdateError and again.message == exc.message


def test_flush_failure_after_load_is_told_apart() -> None:
    refusal = {"success": False, "message": "Weights updated, but cache flush failed"}
    with pytest.raises(CacheNotFlushedError) as info:
        Driver(lambda m, p, b: (400, refusal)).run(control.update_weights_from_disk_plan("/x"))
    assert info.value.weights_updated is True
    assert isinstance(info.value, WeightUpdateError)
    # Without a flush requested, a message about flushing is not taken for one.
    with pytest.raises(WeightUpdateError) as plain:
        Driver(lambda m, p, b: (400, refusal)).run(
            control.update_weights_from_disk_plan("/x", flush_cache=False)
        )
    assert type(plain.value) is WeightUpdateError


def test_success_false_in_a_200_is_a_failure() -> None:
    with pytest.raises(WeightUpdateError, match="no group"):
        Driver(lambda m, p, b: (200, {"success": False, "message": "no group"})).run(
            control.destroy_weights_update_group_plan("g")
        )


def test_error_object_400_and_plain_500() -> None:
    with pytest.raises(WeightUpdateError) as info:
        Driver(lambda m, p, b: (400, {"error": {"message": "IPC weight update failed"}})).run(
            control.end_weight_update_plan()
        )
    assert info.value.message == "IPC weight update failed"
    with pytest.raises(InternalServerError):
        Driver(lambda m, p, b: (500, b"Internal Server Error")).run(
            control.init_weights_update_group_plan("h", 1, 1, 2)
        )


# -- sessions ----------------------------------------------------------------------------


def test_wrapped_session_order() -> None:
    d = Driver(ok())
    d.run(control.update_weights_from_tensor_plan([b"x"], wrap_session=True, selector="draft"))
    assert d.paths == ["/begin_weight_update", "/update_weights_from_tensor", "/end_weight_update"]
    assert d.bodies[0] == {"selector": "draft"} and d.bodies[2] == {}


def test_wrapped_session_ends_after_a_failed_update() -> None:
    def script(m: str, p: str, b: Any) -> Reply:
        if p == "/update_weights_from_distributed":
            return 400, {"success": False, "message": "Failed to receive weights: timeout"}
        if p == "/end_weight_update":
            return 400, {"success": False, "message": "no weight-update session is open"}
        return 200, {"success": True, "message": "Success"}

    d = Driver(script)
    with pytest.raises(WeightUpdateError, match="Failed to receive weights"):
        d.run(
            control.update_weights_from_distributed_plan(
                ["w"], ["float32"], [[1]], wrap_session=True
            )
        )
    assert d.paths[-1] == "/end_weight_update"  # ended; the update's error wins


def test_begin_failure_sends_nothing_else() -> None:
    d = Driver(lambda m, p, b: (400, {"success": False, "message": "already open"}))
    with pytest.raises(WeightUpdateError, match="already open"):
        d.run(control.update_weights_from_tensor_plan([b"x"], wrap_session=True))
    assert d.paths == ["/begin_weight_update"]


# -- bad arguments: raised when the plan is made, before any I/O -------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: control.update_weights_from_disk_plan(""),
        lambda: control.update_weights_from_disk_plan(3),  # type: ignore[arg-type]
        lambda: control.update_weights_from_disk_plan("/m", weight_version=100),  # type: ignore[arg-type]
        lambda: control.update_weights_from_disk_plan("/m", flush_cache="yes"),  # type: ignore[arg-type]
        lambda: control.update_weights_from_disk_plan("/m", extra={"": 1}),
        lambda: control.update_weights_from_disk_plan("/m", extra={"x": object()}),
        lambda: control.pause_generation_plan("stop"),  # type: ignore[arg-type]
        lambda: control.continue_generation_plan(1),  # type: ignore[arg-type]
        lambda: control.release_memory_occupation_plan(["gpu"]),
        lambda: control.release_memory_occupation_plan("weights"),
        lambda: control.release_memory_occupation_plan([]),
        lambda: control.resume_memory_occupation_plan(["weights", "weights"]),
        lambda: control.init_weights_update_group_plan("h", 0, 1, 2),
        lambda: control.init_weights_update_group_plan("h", 29500, 0, 2),
        lambda: control.init_weights_update_group_plan("h", 29500, 2, 2),
        lambda: control.init_weights_update_group_plan("h", 29500, 1, True),
        lambda: control.begin_weight_update_plan("both"),  # type: ignore[arg-type]
        lambda: control.update_weight_version_plan(7),  # type: ignore[arg-type]
        lambda: control.update_weights_from_distributed_plan([], [], []),
        lambda: control.update_weights_from_distributed_plan(["a"], ["f32 x"], [[1]]),
        lambda: control.update_weights_from_distributed_plan(["a"], ["float32"], [[1], [2]]),
        lambda: control.update_weights_from_distributed_plan(["a"], ["float32"], [[-1]]),
        lambda: control.update_weights_from_distributed_plan("a", ["float32"], [[1]]),
        lambda: control.update_weights_from_tensor_plan([]),
        lambda: control.update_weights_from_tensor_plan(b"raw"),  # type: ignore[arg-type]
        lambda: control.update_weights_from_tensor_plan(["not base64!"]),
        lambda: control.update_weights_from_tensor_plan([b"x"], wrap_session=1),  # type: ignore[arg-type]
        lambda: control.loads_plan("everything"),
        lambda: control.loads_plan([]),
        lambda: control.loads_plan(dp_rank=-1),
        lambda: control.health_plan(0),
        lambda: control.discover_workers_plan("gpu"),
    ],
)
def test_bad_arguments_raise_before_io(make: Callable[[], Plan[Any]]) -> None:
    with pytest.raises(InvalidRequestError):
        make()


# -- workers -----------------------------------------------------------------------------


def listing(*entries: tuple[str | None, str, bool]) -> WorkerList:
    return WorkerList.model_validate(
        {
            "workers": [
                {"id": str(i), "url": url, "worker_type": kind, "is_healthy": healthy}
                for i, (url, kind, healthy) in enumerate(entries)
            ]
        }
    )


def test_worker_urls_strip_rank_and_dedupe() -> None:
    workers = listing(
        ("http://10.0.0.1:30000@0", "regular", True),
        ("http://10.0.0.1:30000@1", "regular", True),
        ("http://10.0.0.2:30000/", "regular", False),
        ("http://10.0.0.3:30000", "decode", True),
        (None, "regular", True),
    )
    assert control.worker_urls(workers) == [
        "http://10.0.0.1:30000",
        "http://10.0.0.2:30000",
        "http://10.0.0.3:30000",
    ]
    assert control.worker_urls(workers, "decode") == ["http://10.0.0.3:30000"]
    assert control.worker_urls(workers, healthy_only=True) == [
        "http://10.0.0.1:30000",
        "http://10.0.0.3:30000",
    ]


def test_discovery_router_and_single_server() -> None:
    body = {"workers": [{"id": "a", "url": "http://h:1@0", "worker_type": "prefill"}], "total": 1}
    d = Driver(lambda m, p, b: (200, body))
    assert d.run(control.discover_workers_plan()) == ["http://h:1"]
    assert d.paths == ["/workers"]
    assert Driver(lambda m, p, b: (200, body)).run(control.discover_workers_plan("decode")) == []
    # An sglang server has no /workers: the base URL itself is the one worker.
    assert (
        Driver(lambda m, p, b: (404, {"detail": "Not Found"})).run(control.discover_workers_plan())
        is None
    )


def test_discovery_keeps_other_errors() -> None:
    with pytest.raises(BadRequestError):
        Driver(lambda m, p, b: (400, b"")).run(control.discover_workers_plan())


def test_health_plan() -> None:
    d = Driver(lambda m, p, b: (200, b""))
    assert d.run(control.health_plan(2.0)) is True
    assert d.calls[0][3].timeout == 2.0 and d.calls[0][3].max_retries == 0
    assert Driver(lambda m, p, b: (503, b"")).run(control.health_plan(2.0)) is False
