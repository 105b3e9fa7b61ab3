"""Bad input, broken responses and cross-process errors: typed, and never resent twice."""

from __future__ import annotations

import gzip
import math
import pickle
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

import rlinf_http
from rlinf_http import (
    APIConnectionError,
    APIResponseValidationError,
    InferenceHTTPClient,
    InvalidRequestError,
    RLinfHTTPError,
    StreamErrorEvent,
)
from rlinf_http._core.requests import _sampling_to_wire
from rlinf_http._core.streams import GenerateStreamParser

BASE = "http://fake-host:1234"


class BreakingServer:
    """Answers every request with a 200 whose body stops half-way, then closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests += 1
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"text": ')

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def breaking() -> Iterator[BreakingServer]:
    server = BreakingServer()
    yield server
    server.close()


@pytest.mark.parametrize("transport", ["auto", "httpx"])
def test_body_broken_after_the_status_line_is_not_resent(
    breaking: BreakingServer, transport: Any
) -> None:
    # The server had the request (it answered 200): resending would run the
    # generation again. Same rule on both transports.
    client = InferenceHTTPClient(f"http://127.0.0.1:{breaking.port}", transport=transport)
    with pytest.raises(APIConnectionError):
        client.generate(prompt="hi", max_retries=2)
    assert breaking.requests == 1
    client.close()


@pytest.mark.anyio
async def test_body_broken_after_the_status_line_is_not_resent_async(
    breaking: BreakingServer, anyio_backend: str
) -> None:
    async with InferenceHTTPClient(f"http://127.0.0.1:{breaking.port}") as client:
        with pytest.raises(APIConnectionError):
            await client.async_generate(prompt="hi", max_retries=2)
    assert breaking.requests == 1


def test_undecodable_content_encoding_is_a_validation_error() -> None:
    with respx.mock(base_url=BASE, using="httpx") as mock:
        mock.post("/generate").mock(
            side_effect=lambda request: httpx.Response(
                200,
                headers={"content-encoding": "gzip"},
                stream=httpx.ByteStream(b"not gzip at all"),
            )
        )
        with pytest.raises(APIResponseValidationError, match="Content-Encoding"):
            InferenceHTTPClient(BASE).generate(prompt="x")
        good = {"text": "a", "output_ids": [], "meta_info": {"completion_tokens": 1}}
        mock.post("/generate").respond(
            200,
            headers={"content-encoding": "gzip"},
            content=gzip.compress(httpx.Response(200, json=good).content),
        )
        assert InferenceHTTPClient(BASE).generate(prompt="x").text == "a"


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0, 0, True, "5"])
def test_timeouts_must_be_finite_and_positive(bad: Any) -> None:
    with pytest.raises(InvalidRequestError):
        InferenceHTTPClient(BASE, connect_timeout=bad)
    with pytest.raises(InvalidRequestError):
        InferenceHTTPClient(BASE, health_timeout=bad)
    client = InferenceHTTPClient(BASE)
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as mock:
        route = mock.post("/generate").respond(200, json={})
        with pytest.raises(InvalidRequestError):
            client.generate(prompt="x", timeout=bad)
        with pytest.raises(InvalidRequestError):
            client.generate(prompt="x", timeout=httpx.Timeout(5.0, read=bad))
        with pytest.raises(InvalidRequestError):
            client.post("/x", {}, timeout_s=bad)
        with pytest.raises(InvalidRequestError):
            client.add_worker("http://127.0.0.1:1", timeout=5, poll_interval=bad)
        assert route.call_count == 0


@pytest.mark.parametrize("path", ["/a\x01", "/a b", "/a#frag", "/a\r\nx: y"])
def test_bad_paths_are_rejected_before_io(path: str) -> None:
    with pytest.raises(InvalidRequestError):
        InferenceHTTPClient(BASE).post(path, {})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"x": "a\r\nevil: 1"}},
        {"headers": {"bad name": "1"}},
        {"api_key": "secret\n"},
    ],
)
def test_header_injection_is_rejected_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        InferenceHTTPClient(BASE, **kwargs)


def _all_error_classes() -> list[type[RLinfHTTPError]]:
    return [
        obj
        for name in rlinf_http.__all__
        if isinstance(obj := getattr(rlinf_http, name), type) and issubclass(obj, RLinfHTTPError)
    ]


def test_every_error_pickles_with_its_attributes() -> None:
    # Ray and multiprocessing ship exceptions between processes with pickle.
    with respx.mock(base_url=BASE, using="httpx") as mock:
        mock.post("/generate").respond(
            503, json={"error": {"message": "busy", "code": "no_available_workers"}}
        )
        with pytest.raises(rlinf_http.ServiceUnavailableError) as info:
            InferenceHTTPClient(BASE, max_retries=0).generate(prompt="x")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is rlinf_http.ServiceUnavailableError
    assert (copy.status_code, copy.code, copy.message) == (503, "no_available_workers", "busy")
    assert str(copy) == str(info.value)
    event = StreamErrorEvent("boom", error={"message": "boom"}, code=500, url="u")
    again = pickle.loads(pickle.dumps(event))
    assert (again.error, again.code, str(again)) == ({"message": "boom"}, 500, "boom")
    for cls in _all_error_classes():
        error = cls("message")
        error.extra = 1  # type: ignore[attr-defined]
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is cls and str(back) == "message" and back.extra == 1


def test_error_null_in_a_chunk_is_not_an_error_event() -> None:
    parser = GenerateStreamParser("auto", "u")
    chunk = b'data: {"text": "a", "output_ids": [1], "meta_info": {"completion_tokens": 1}, '
    items = parser.feed(chunk + b'"error": null}\n\ndata: [DONE]\n\n')
    assert [c.text for c in items] == ["a"] and parser.done


def test_revised_cumulative_text_gives_the_changed_tail_as_delta() -> None:
    parser = GenerateStreamParser("cumulative", "u")
    first = parser.feed(
        b'data: {"text": "hello wor", "output_ids": [1, 2], "meta_info": '
        b'{"completion_tokens": 2}}\n\n'
    )
    second = parser.feed(
        b'data: {"text": "hello world!", "output_ids": [1, 3, 4], "meta_info": '
        b'{"completion_tokens": 3}}\n\n'
    )
    assert first[0].delta == "hello wor"
    assert second[0].delta == "ld!"  # not the whole text again


def test_mutated_sampling_list_is_checked_again() -> None:
    params: dict[str, Any] = {"stop_token_ids": [1, 2]}
    _sampling_to_wire(params)
    params["stop_token_ids"].append("x")
    with pytest.raises(InvalidRequestError):
        _sampling_to_wire(params)
