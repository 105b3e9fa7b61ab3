"""Shapes of model resolution, routed_worker_id, target_worker and smg's error bodies
(respx: the real gateways are in test_smg_dataplane.py)."""

from __future__ import annotations

import copy
import json
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from rlinf_http import (
    BadRequestError,
    InferenceHTTPClient,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from rlinf_http._core.plans import Call
from rlinf_http._core.served_model import pick_model, served_models_plan
from rlinf_http._core.targeting import target_index
from rlinf_http.models import WorkerList

BASE = "http://127.0.0.1:30000"
HI = [{"role": "user", "content": "hi"}]
CHAT = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
NOT_FOUND = {
    "error": {
        "type": "invalid_request_error",
        "code": "model_not_found",
        "message": "No worker available for model 'old'",
        "param": None,
    }
}


def listing(*ids: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        yield router


def sent_model(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)["model"]


# -- the plan (no I/O) -------------------------------------------------------------------


def test_plan_reads_v1_models_and_leaves_adapters_out() -> None:
    from rlinf_http._core.responses import RawResponse
    from rlinf_http.models import ModelList

    plan = served_models_plan()
    step = next(plan)
    assert isinstance(step, Call) and step.op.path == "/v1/models"
    body = {
        "data": [
            {"id": "base", "parent": None},
            {"id": "adapter", "root": "/a", "parent": "base"},
        ]
    }
    raw = RawResponse("GET", BASE + "/v1/models", 200, {}, json.dumps(body).encode())
    with pytest.raises(StopIteration) as done:
        plan.send(step.op.parse(raw))
    assert done.value.value == ("base",)
    assert isinstance(step.op.parse(raw), ModelList)


def test_pick_model_one_several_none() -> None:
    assert pick_model(("a",), BASE) == "a"
    with pytest.raises(InvalidRequestError, match="several models \\('a', 'b'\\)"):
        pick_model(("a", "b"), BASE)
    with pytest.raises(InvalidRequestError, match="lists no model"):
        pick_model((), BASE)


def test_target_index_orders() -> None:
    workers = WorkerList.model_validate(
        {
            "workers": [
                {"id": "b", "url": "http://w1", "runtime_type": "sglang"},
                {"id": "a", "url": "http://w2", "runtime_type": "sglang"},
            ]
        }
    )
    assert target_index(workers, "http://w1", BASE, by_model=False) == 0
    assert target_index(workers, "http://w1", BASE, by_model=True) == 1
    with pytest.raises(InvalidRequestError, match="not a worker of"):
        target_index(workers, "http://w3", BASE, by_model=False)


# -- resolution through the client -------------------------------------------------------


def test_several_served_models_raise_naming_them(mock: respx.MockRouter) -> None:
    mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a", "b")))
    chat = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    with InferenceHTTPClient(BASE) as client:
        with pytest.raises(InvalidRequestError, match="'a', 'b'"):
            client.chat_completion(HI)
        with pytest.raises(InvalidRequestError, match="'a', 'b'"):
            client.embed("x")
        client.chat_completion(HI, "b")
    assert chat.calls.last is not None and sent_model(chat) == "b"
    assert chat.call_count == 1


def test_bad_arguments_raise_before_v1_models_is_read(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    with InferenceHTTPClient(BASE) as client:
        with pytest.raises(InvalidRequestError):
            client.chat_completion([])
        with pytest.raises(InvalidRequestError):
            client.completion_many([object()])  # type: ignore[list-item]
        with pytest.raises(InvalidRequestError):
            client.tokenize(3)  # type: ignore[arg-type]
    assert models.call_count == 0


def test_explicit_model_never_reads_the_list(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    chat = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    with InferenceHTTPClient(BASE) as client:
        client.chat_completion(HI, "/models/Qwen")
    assert sent_model(chat) == "/models/Qwen" and models.call_count == 0


def test_model_not_found_refreshes_once_and_resends_once(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(
        side_effect=[
            httpx.Response(200, json=listing("old")),
            httpx.Response(200, json=listing("new")),
            httpx.Response(200, json=listing("newer")),
        ]
    )
    chat = mock.post("/v1/chat/completions").mock(
        side_effect=lambda req: (
            httpx.Response(200, json=CHAT)
            if json.loads(req.content)["model"] == "new"
            else httpx.Response(
                404, json=NOT_FOUND, headers={"x-smg-error-code": "model_not_found"}
            )
        )
    )
    with InferenceHTTPClient(BASE) as client:
        client.chat_completion(HI)
        assert (models.call_count, chat.call_count) == (2, 2)
        assert sent_model(chat) == "new"
        client.chat_completion(HI)  # the refreshed list is kept
        assert (models.call_count, chat.call_count) == (2, 3)


def test_model_not_found_is_raised_when_no_retry_is_left(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("old")))
    chat = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(404, json=NOT_FOUND))
    with InferenceHTTPClient(BASE) as client:
        with pytest.raises(NotFoundError) as info:
            client.chat_completion(HI, max_retries=0)
        assert (models.call_count, chat.call_count) == (2, 1)
        # one refresh and one resend at most, even with retries to spare
        with pytest.raises(NotFoundError):
            client.chat_completion(HI, max_retries=5)
        assert (models.call_count, chat.call_count) == (3, 3)
        # an explicit model is never resent
        with pytest.raises(NotFoundError):
            client.chat_completion(HI, "old", max_retries=5)
        assert (models.call_count, chat.call_count) == (3, 4)
    assert info.value.code == "model_not_found"


def test_no_model_list_sends_the_library_default(mock: respx.MockRouter) -> None:
    mock.get("/v1/models").mock(return_value=httpx.Response(404, text="Not Found"))
    chat = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    with InferenceHTTPClient(BASE) as client:
        client.chat_completion(HI)
    assert sent_model(chat) == "sglang-model"


def test_sync_threads_read_the_list_once(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    client = InferenceHTTPClient(BASE)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            client.chat_completion(HI)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    client.close()
    assert not errors and models.call_count == 1


@pytest.mark.anyio
async def test_async_tasks_read_the_list_once(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    chat = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    async with InferenceHTTPClient(BASE) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(client.async_chat_completion, HI)
    assert models.call_count == 1 and chat.call_count == 8


def test_copies_and_pickles_start_with_an_empty_cache(mock: respx.MockRouter) -> None:
    models = mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    client = InferenceHTTPClient(BASE)
    client.chat_completion(HI)
    for other in (client.copy(), pickle.loads(pickle.dumps(client)), copy.copy(client)):
        if other._driver is client._driver:
            continue  # a shallow copy shares its driver (and cache) by design
        assert other._driver.served_models.ids is None
        other.chat_completion(HI)
        other.close()
    client.close()
    assert models.call_count == 3


# -- routed_worker_id on every path ------------------------------------------------------


def test_routed_worker_id_on_the_httpx_and_retry_paths(mock: respx.MockRouter) -> None:
    header = {"x-smg-routed-worker-id": "http://10.0.0.7:8000"}
    mock.post("/v1/chat/completions").mock(
        side_effect=[
            httpx.Response(503, json={"error": "busy"}),
            httpx.Response(200, json=CHAT, headers=header),
        ]
    )
    with InferenceHTTPClient(BASE) as client:
        out = client.chat_completion(HI, "m")
    assert out.routed_worker_id == "http://10.0.0.7:8000"
    assert out.request_id is not None


def test_routed_worker_id_on_a_users_client() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=CHAT, headers={"X-SMG-Routed-Worker-Id": "http://w"})

    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        out = InferenceHTTPClient(BASE, http_client=http).chat_completion(HI, "m")
    assert out.routed_worker_id == "http://w"


# -- smg's error bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (404, NotFoundError), (503, ServiceUnavailableError)],
)
def test_smg_error_body_shapes(mock: respx.MockRouter, status: int, cls: type) -> None:
    body = {"error": {"type": "invalid_request_error", "message": "bad", "param": "model"}}
    mock.post("/generate").mock(
        return_value=httpx.Response(status, json=body, headers={"X-SMG-Error-Code": "some_code"})
    )
    with InferenceHTTPClient(BASE, max_retries=0) as client:
        with pytest.raises(cls) as info:
            client.generate("x")
    assert (info.value.code, info.value.message, info.value.param) == ("some_code", "bad", "model")


def test_body_code_wins_over_header_and_param_absent(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(
        return_value=httpx.Response(404, json=NOT_FOUND, headers={"x-smg-error-code": "other"})
    )
    with InferenceHTTPClient(BASE, max_retries=0) as client:
        with pytest.raises(NotFoundError) as info:
            client.generate("x")
    assert info.value.code == "model_not_found" and info.value.param is None


def test_tokenizer_registry_error_shape(mock: respx.MockRouter) -> None:
    mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    body = {
        "error": {
            "message": "No tokenizers available. Use POST /v1/tokenizers to add one.",
            "type": "tokenizer_not_found",
        }
    }
    mock.post("/v1/tokenize").mock(return_value=httpx.Response(400, json=body))
    mock.post("/v1/detokenize").mock(return_value=httpx.Response(422, text="missing field"))
    with InferenceHTTPClient(BASE, max_retries=0) as client:
        with pytest.raises(BadRequestError, match="POST /v1/tokenizers") as info:
            client.tokenize("x")
        with pytest.raises(UnprocessableEntityError):  # other errors pass unchanged
            client.detokenize([1])
    assert info.value.code == "tokenizer_not_found"


@pytest.mark.anyio
async def test_fanout_item_model_not_found_refreshes_for_the_next_call(
    mock: respx.MockRouter,
) -> None:
    models = mock.get("/v1/models").mock(
        side_effect=[
            httpx.Response(200, json=listing("old")),
            httpx.Response(200, json=listing("new")),
        ]
    )
    chat = mock.post("/v1/chat/completions").mock(
        side_effect=lambda req: (
            httpx.Response(200, json=CHAT)
            if json.loads(req.content)["model"] == "new"
            else httpx.Response(404, json=NOT_FOUND)
        )
    )
    async with InferenceHTTPClient(BASE, max_retries=0) as client:
        first = await client.async_chat_completion_many([HI] * 3, return_exceptions=True)
        assert all(isinstance(r, NotFoundError) for r in first)  # never resent
        assert (models.call_count, chat.call_count) == (2, 3)
        again = await client.async_chat_completion_many([HI] * 3, return_exceptions=True)
        assert not any(isinstance(r, Exception) for r in again)
    assert sent_model(chat) == "new"


def test_a_forked_child_starts_with_an_empty_cache(mock: respx.MockRouter) -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    mock.get("/v1/models").mock(return_value=httpx.Response(200, json=listing("a")))
    mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
    client = InferenceHTTPClient(BASE)
    client.chat_completion(HI)
    with client._driver.served_models.lock:  # a parent's thread mid-read at fork time
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            fresh = client._driver.served_models
            os._exit(0 if fresh.ids is None and not fresh.lock.locked() else 1)
    _, status = os.waitpid(pid, 0)
    client.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_bad_arguments_with_a_target_worker_url_raise_before_any_request() -> None:
    # hostile review D7: the URL was resolved (GET /workers) before the arguments were checked
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        return httpx.Response(500)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with InferenceHTTPClient("http://127.0.0.1:9", http_client=http, max_retries=0) as client:
        url = "http://127.0.0.1:31000"
        with pytest.raises(InvalidRequestError, match="max_tokens"):
            client.chat_completion(
                [{"role": "user", "content": "hi"}], max_new_tokens=3, target_worker=url
            )
        with pytest.raises(InvalidRequestError):
            client.chat_completion_many([[{"role": "user"}]], max_new_tokens=3, target_worker=url)
        with pytest.raises(InvalidRequestError):
            client.completion(None, target_worker=url)  # type: ignore[arg-type]
    assert sent == []
