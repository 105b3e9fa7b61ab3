"""The fake server's extra data plane over real sockets: embeddings, /encode,
tokenize / detokenize, request ids, routing keys and the request log, priority,
LoRA adapters."""

from __future__ import annotations

import base64
import math
import struct
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fake_helpers import wait_for

from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp


def _close(a: list[float], b: list[float], tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- embeddings


def test_embeddings_are_deterministic_unit_vectors(server: FakeServer, http: httpx.Client) -> None:
    app = server.app
    r = http.post(server.url + "/v1/embeddings", json={"input": "hello big world"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"data", "model", "object", "usage"}
    assert body["object"] == "list"
    assert body["model"] == app.model_path  # sglang reports the model path here
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
    (item,) = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    vec = item["embedding"]
    assert len(vec) == 16
    assert math.isclose(math.fsum(x * x for x in vec), 1.0, rel_tol=1e-9)
    assert vec == app.embedding("hello big world")
    again = http.post(server.url + "/v1/embeddings", json={"input": "hello big world"}).json()
    assert again["data"][0]["embedding"] == vec

    many = http.post(server.url + "/v1/embeddings", json={"input": ["a b", "c"]}).json()
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert many["data"][0]["embedding"] != many["data"][1]["embedding"]
    assert many["usage"]["prompt_tokens"] == 3

    # token ids embed like the text they tokenize to
    ids = http.post(server.url + "/v1/tokenize", json={"prompt": "a b"}).json()["tokens"]
    by_ids = http.post(server.url + "/v1/embeddings", json={"input": ids}).json()
    assert by_ids["data"][0]["embedding"] == many["data"][0]["embedding"]
    batch_ids = http.post(server.url + "/v1/embeddings", json={"input": [ids, ids]}).json()
    assert len(batch_ids["data"]) == 2


def test_embeddings_base64_and_dimensions(server: FakeServer, http: httpx.Client) -> None:
    expected = server.app.embedding("x y")
    r = http.post(server.url + "/v1/embeddings", json={"input": "x y", "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert _close(list(struct.unpack(f"<{len(raw) // 4}f", raw)), expected)
    r = http.post(server.url + "/v1/embeddings", json={"input": "x y", "dimensions": 4})
    short = r.json()["data"][0]["embedding"]
    assert len(short) == 4
    assert math.isclose(math.fsum(x * x for x in short), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize(
    "body",
    [
        {"input": ""},
        {"input": []},
        {},
        {"input": "a", "encoding_format": "hex"},
        {"input": "a", "dimensions": 1000},
        {"input": "a", "dimensions": 0},
        {"input": [[1, "x"]]},
    ],
)
def test_embeddings_bad_input_is_an_error_response(
    server: FakeServer, http: httpx.Client, body: dict[str, Any]
) -> None:
    r = http.post(server.url + "/v1/embeddings", json=body)
    assert r.status_code == 400
    err = r.json()
    assert err["object"] == "error" and err["code"] == 400 and err["message"]


def test_encode_native(server: FakeServer, http: httpx.Client) -> None:
    app = server.app
    r = http.post(server.url + "/encode", json={"text": "a b c", "rid": "e1"})
    assert r.status_code == 200
    out = r.json()
    assert out["embedding"] == app.embedding("a b c")
    assert out["meta_info"]["id"] == "e1"
    assert out["meta_info"]["prompt_tokens"] == 3
    assert out["meta_info"]["weight_version"] == "default"
    batch = http.put(server.url + "/encode", json={"text": ["a", "b"], "rid": "eb"}).json()
    assert [o["meta_info"]["id"] for o in batch] == ["eb_0", "eb_1"]
    ids = http.post(server.url + "/encode", json={"input_ids": [[5, 6], [7]]}).json()
    assert [o["meta_info"]["prompt_tokens"] for o in ids] == [2, 1]
    assert ids[0]["embedding"] == app.embedding([5, 6])
    r = http.post(server.url + "/encode", json={"rid": "x"})
    assert r.status_code == 400 and "message" in r.json()["error"]


# --------------------------------------------------------------------------- tokenize


def test_tokenize_detokenize_round_trip(server: FakeServer, http: httpx.Client) -> None:
    url = server.url
    r = http.post(url + "/v1/tokenize", json={"prompt": "the cat sat"})
    assert r.status_code == 200
    tok = r.json()
    assert set(tok) == {"tokens", "count", "max_model_len"}
    assert tok["count"] == len(tok["tokens"]) == 3
    assert tok["max_model_len"] == 32768
    # the same count /generate reports as prompt_tokens
    gen = http.post(url + "/generate", json={"text": "the cat sat"}).json()
    assert gen["meta_info"]["prompt_tokens"] == 3
    r = http.post(url + "/v1/detokenize", json={"tokens": tok["tokens"]})
    assert r.json() == {"text": "the cat sat"}

    many = http.post(url + "/tokenize", json={"prompt": ["a b", "c"]}).json()
    assert many["count"] == [2, 1]
    back = http.post(url + "/detokenize", json={"tokens": many["tokens"]}).json()
    assert back == {"text": ["a b", "c"]}
    chat = http.post(
        url + "/v1/tokenize", json={"messages": [{"role": "user", "content": "hi there"}]}
    ).json()
    assert chat["count"] == 2
    out_ids = FakeSGLangApp.output_ids(3)
    assert http.post(url + "/v1/detokenize", json={"tokens": out_ids}).json() == {
        "text": "tok0 tok1 tok2"
    }
    assert http.post(url + "/v1/detokenize", json={"tokens": []}).json() == {"text": ""}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/tokenize", {}),
        ("/v1/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "a"}]}),
        ("/v1/tokenize", {"prompt": 3}),
        ("/v1/detokenize", {"tokens": "a"}),
        ("/v1/detokenize", {"tokens": [1, "2"]}),
    ],
)
def test_tokenize_bad_input(
    server: FakeServer, http: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    r = http.post(server.url + path, json=body)
    assert r.status_code == 400
    assert r.json()["object"] == "error"


# --------------------------------------------------------------------------- request ids


def test_rid_is_echoed_for_single_and_batch(server: FakeServer, http: httpx.Client) -> None:
    url = server.url
    one = http.post(url + "/generate", json={"text": "a", "rid": "r-1"}).json()
    assert one["meta_info"]["id"] == "r-1"
    batch = http.post(url + "/generate", json={"text": ["a", "b"], "rid": "b"}).json()
    assert [o["meta_info"]["id"] for o in batch] == ["b_0", "b_1"]
    listed = http.post(url + "/generate", json={"text": ["a", "b"], "rid": ["x", "y"]}).json()
    assert [o["meta_info"]["id"] for o in listed] == ["x", "y"]
    for bad in (["x", "x"], ["only-one"], 5):
        r = http.post(url + "/generate", json={"text": ["a", "b"], "rid": bad})
        assert r.status_code == 400 and r.json()["error"]["message"]
    chat = http.post(
        url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "rid": "chat-1", "max_tokens": 2},
    ).json()
    assert chat["id"] == "chat-1"


@pytest.fixture
def slow() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.02)) as srv:
        yield srv


def test_running_rid_is_rejected_then_reusable(slow: FakeServer, http: httpx.Client) -> None:
    url = slow.url
    results: list[httpx.Response] = []
    body = {"text": "a", "rid": "dup", "sampling_params": {"max_new_tokens": 400}}

    def run() -> None:
        with httpx.Client(trust_env=False, timeout=30) as c:
            results.append(c.post(url + "/generate", json=body))

    t = threading.Thread(target=run)
    t.start()
    try:
        wait_for(lambda: slow.app.running_requests == 1, what="request running")
        r = http.post(url + "/generate", json={"text": "b", "rid": "dup"})
        assert r.status_code == 400  # rejected before it runs
        assert r.json() == {"error": {"message": "Duplicate request ID detected: dup"}}
        assert http.post(url + "/abort_request", json={"rid": "dup"}).status_code == 200
    finally:
        t.join(30)
    assert results[0].json()["meta_info"]["finish_reason"]["type"] == "abort"
    short = {"text": "b", "rid": "dup", "sampling_params": {"max_new_tokens": 1}}
    again = http.post(url + "/generate", json=short)
    assert again.status_code == 200 and again.json()["meta_info"]["id"] == "dup"


# --------------------------------------------------------------------------- routing keys, log


def test_request_log_records_routing_key_rid_and_worker(
    server: FakeServer, http: httpx.Client
) -> None:
    url = server.url
    http.post(
        url + "/generate",
        json={"text": "a", "rid": "k1", "priority": 7},
        headers={"X-SMG-Routing-Key": "session-1", "X-Request-Id": "req-9"},
    )
    http.post(
        url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "a"}], "stream": True, "max_tokens": 1},
        headers={"X-SMG-Routing-Key": "session-2"},
    )
    http.get(url + "/v1/models")  # not a data-plane call: not logged
    log = http.get(url + "/_fake/requests").json()
    assert [e["path"] for e in log] == ["/generate", "/v1/chat/completions"]
    first, second = log
    assert first["routing_key"] == "session-1" and first["request_id"] == "req-9"
    assert (first["rid"], first["priority"], first["stream"]) == ("k1", 7, False)
    assert first["worker"] == url
    assert second["routing_key"] == "session-2" and second["stream"] is True
    assert second["seq"] > first["seq"]
    assert server.app.request_log == log
    assert http.delete(url + "/_fake/requests").status_code == 200
    assert http.get(url + "/_fake/requests").json() == []


def test_worker_id_header_and_record(http: httpx.Client) -> None:
    with FakeServer(config=FakeConfig(worker_id="w-7")) as srv:
        r = http.post(srv.url + "/generate", json={"text": "a"})
        assert r.headers["x-fake-worker"] == "w-7"
        with http.stream("POST", srv.url + "/generate", json={"text": "a", "stream": True}) as s:
            assert s.headers["x-fake-worker"] == "w-7"
            s.read()
        assert "x-fake-worker" not in http.get(srv.url + "/health").headers
        assert {e["worker"] for e in srv.app.request_log} == {"w-7"}


# --------------------------------------------------------------------------- priority, LoRA


def test_priority_must_be_an_integer(server: FakeServer, http: httpx.Client) -> None:
    r = http.post(server.url + "/generate", json={"text": "a", "priority": "high"})
    assert r.status_code == 400
    assert (
        http.post(server.url + "/generate", json={"text": "a", "priority": -3}).status_code == 200
    )


def test_lora_adapters_load_use_list_unload(server: FakeServer, http: httpx.Client) -> None:
    url = server.url
    gen = {"text": "a", "lora_path": "ad1"}
    r = http.post(url + "/generate", json=gen)
    assert r.status_code == 400 and "ad1" in r.json()["error"]["message"]

    r = http.post(url + "/load_lora_adapter", json={"lora_name": "ad1", "lora_path": "/loras/1"})
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "error_message": "",
        "loaded_adapters": {"ad1": "/loras/1"},
    }
    r = http.post(url + "/load_lora_adapter", json={"lora_name": "ad1", "lora_path": "/loras/1"})
    assert r.status_code == 400 and r.json()["success"] is False
    r = http.post(url + "/load_lora_adapter", json={"lora_name": "ad2"})
    assert r.status_code == 400 and r.json()["type"] == "Bad Request"

    assert http.post(url + "/generate", json=gen).status_code == 200
    both = {"text": ["a", "b"], "lora_path": ["ad1", None]}
    assert http.post(url + "/generate", json=both).status_code == 200
    chat = {"messages": [{"role": "user", "content": "a"}], "lora_path": "ad1", "max_tokens": 1}
    assert http.post(url + "/v1/chat/completions", json=chat).status_code == 200
    models = http.get(url + "/v1/models").json()["data"]
    assert [(m["id"], m["parent"]) for m in models] == [("fake-model", None), ("ad1", "fake-model")]
    assert models[1]["root"] == "/loras/1"
    lora = http.get(url + "/v1/loads", params={"include": "lora"}).json()["loads"][0]["lora"]
    assert lora["slots_used"] == 1 and lora["slots_total"] == 8

    r = http.post(url + "/unload_lora_adapter", json={"lora_name": "ad1"})
    assert r.json() == {"success": True, "error_message": "", "loaded_adapters": {}}
    r = http.post(url + "/unload_lora_adapter", json={"lora_name": "ad1"})
    assert r.status_code == 400 and r.json()["success"] is False
    assert http.post(url + "/generate", json=gen).status_code == 400
    assert server.app.lora_adapters == {}


def test_lora_disabled(http: httpx.Client) -> None:
    with FakeServer(config=FakeConfig(enable_lora=False)) as srv:
        r = http.post(srv.url + "/load_lora_adapter", json={"lora_name": "a", "lora_path": "/a"})
        assert r.status_code == 400 and "not enabled" in r.json()["error_message"]
        r = http.post(srv.url + "/generate", json={"text": "a", "lora_path": "a"})
        assert r.status_code == 400 and "not enabled" in r.json()["error"]["message"]
        assert http.post(srv.url + "/generate", json={"text": "a", "lora_path": None}).is_success
