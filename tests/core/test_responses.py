"""The sans-I/O response side: error bodies (reference §8.4 / §5.6), status mapping, 2xx parsing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from rlinf_http import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RLinfHTTPError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from rlinf_http._core.requests import build_chat_completion, build_generate
from rlinf_http._core.responses import (
    RawResponse,
    connection_error,
    decode_json,
    error_details,
    finish,
    is_retryable_transport_error,
    status_error,
)

URL = "http://127.0.0.1:30000/generate"


def raw(
    content: bytes | str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    url: str = URL,
) -> RawResponse:
    data = content.encode() if isinstance(content, str) else content
    return RawResponse(method, url, status, httpx.Headers(headers or {}), data)


# -- every error-body shape ------------------------------------------------------------

ROUTER_503 = {
    "error": {
        "type": "Service Unavailable",
        "code": "no_available_workers",
        "message": "No available workers (all circuits open or unhealthy)",
    }
}


@pytest.mark.parametrize(
    ("content", "headers", "message", "code"),
    [
        # sglang ValueError -> 400 {"error": {"message"}}
        (
            b'{"error": {"message": "input_ids cannot be empty."}}',
            {},
            "input_ids cannot be empty.",
            None,
        ),
        # 0.5.23 contract: error is a string
        (
            b'{"error": "unknown field `foo`, expected one of ..."}',
            {},
            "unknown field `foo`, expected one of ...",
            None,
        ),
        # OpenAI ErrorResponse, int code
        (
            json.dumps(
                {
                    "object": "error",
                    "message": "Internal server error: boom",
                    "type": "InternalServerError",
                    "param": None,
                    "code": 500,
                }
            ).encode(),
            {},
            "Internal server error: boom",
            500,
        ),
        # nested OpenAI error with string code
        (
            json.dumps(
                {
                    "error": {
                        "message": "The model 'x' does not exist",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": "model_not_found",
                    }
                }
            ).encode(),
            {},
            "The model 'x' does not exist",
            "model_not_found",
        ),
        # 0.5.23 streaming-style error object
        (
            b'{"error": {"message": "bad", "type": "invalid_request_error", "code": 400,'
            b' "retryable": false}}',
            {},
            "bad",
            400,
        ),
        # router 503 with x-smg-error-code
        (
            json.dumps(ROUTER_503).encode(),
            {"x-smg-error-code": "no_available_workers"},
            "No available workers (all circuits open or unhealthy)",
            "no_available_workers",
        ),
        # router error object without message: type is the message
        (b'{"error": {"type": "Service Unavailable"}}', {}, "Service Unavailable", None),
        # {"error": "...", "code": "WORKER_NOT_FOUND"}
        (
            b'{"error": "Worker not found", "code": "WORKER_NOT_FOUND"}',
            {},
            "Worker not found",
            "WORKER_NOT_FOUND",
        ),
        # FastAPI detail string and list
        (b'{"detail": "Not Found"}', {}, "Not Found", None),
        # plain text router 422 / 415 / 400
        (
            b"Failed to deserialize the JSON body into the target type: text: invalid type"
            b" at line 1 column 9",
            {"content-type": "text/plain; charset=utf-8"},
            "Failed to deserialize the JSON body into the target type: text: invalid type"
            " at line 1 column 9",
            None,
        ),
        (
            b"Expected request with `Content-Type: application/json`",
            {"content-type": "text/plain"},
            "Expected request with `Content-Type: application/json`",
            None,
        ),
        # JSON served as text/plain is still parsed
        (
            json.dumps(ROUTER_503).encode(),
            {"content-type": "text/plain; charset=utf-8"},
            "No available workers (all circuits open or unhealthy)",
            "no_available_workers",
        ),
        # empty body: only the header code
        (b"", {"x-smg-error-code": "no_workers"}, None, "no_workers"),
        (b"   ", {}, None, None),
        # a bool code is not a code
        (b'{"message": "m", "code": true}', {}, "m", None),
    ],
)
def test_error_details_shapes(
    content: bytes, headers: dict[str, str], message: str | None, code: Any
) -> None:
    _body, got_message, got_code = error_details(content, httpx.Headers(headers))
    assert got_message == message
    assert got_code == code


def test_error_details_detail_list_is_rendered() -> None:
    content = b'{"detail": [{"loc": ["body", "text"], "msg": "field required"}]}'
    body, message, _ = error_details(content, {})
    assert body == {"detail": [{"loc": ["body", "text"], "msg": "field required"}]}
    assert message is not None
    assert "field required" in message


def test_error_details_body_code_wins_over_header() -> None:
    _, _, code = error_details(
        json.dumps(ROUTER_503).encode(), httpx.Headers({"x-smg-error-code": "other"})
    )
    assert code == "no_available_workers"


def test_error_details_invalid_utf8_and_non_object_json() -> None:
    body, message, _ = error_details(b"\xff\xfe oops", {})
    assert isinstance(body, str)
    assert message is not None and "oops" in message
    body, message, _ = error_details(b"[1, 2]", {})
    assert body == [1, 2]
    assert message == "[1, 2]"


# -- status -> error class ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (415, UnsupportedMediaTypeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, ServiceUnavailableError),
        (504, InternalServerError),
        (599, InternalServerError),
        (302, APIStatusError),
        (408, APIStatusError),
        (418, APIStatusError),
    ],
)
def test_status_error_class(status: int, cls: type[APIStatusError]) -> None:
    err = status_error(raw(b'{"error": {"message": "m"}}', status))
    assert type(err) is cls
    assert err.status_code == status
    assert isinstance(err, APIStatusError)
    assert isinstance(err, RLinfHTTPError)
    assert isinstance(err, RuntimeError)


def test_status_error_attributes_and_message() -> None:
    content = json.dumps(ROUTER_503).encode()
    err = status_error(
        raw(
            content,
            503,
            {
                "x-smg-error-code": "no_available_workers",
                "X-Request-Id": "gnt-123",
                "content-type": "application/json",
            },
        )
    )
    assert isinstance(err, ServiceUnavailableError)
    assert err.status_code == 503
    assert err.body == ROUTER_503
    assert err.raw_body == content
    assert err.request_id == "gnt-123"
    assert err.code == "no_available_workers"
    assert err.message == "No available workers (all circuits open or unhealthy)"
    assert err.method == "POST"
    assert err.url == URL
    assert err.headers["x-request-id"] == "gnt-123"
    # The RLinf message format, which callers may match on.
    assert str(err).startswith(f"POST {URL} failed: status=503, body=")
    assert "no_available_workers" in str(err)


def test_status_error_plain_text_body() -> None:
    err = status_error(raw("Failed to parse the request body as JSON: EOF", 400))
    assert isinstance(err, BadRequestError)
    assert err.body == "Failed to parse the request body as JSON: EOF"
    assert err.message == "Failed to parse the request body as JSON: EOF"
    assert err.request_id is None


def test_status_error_empty_401() -> None:
    err = status_error(raw(b"", 401))
    assert isinstance(err, AuthenticationError)
    assert err.body is None
    assert err.raw_body == b""
    assert err.message is None


def test_status_error_message_truncates_long_body() -> None:
    body = "x" * 5000
    err = status_error(raw(body, 500))
    assert len(str(err)) < 1000
    assert "more chars" in str(err)
    assert err.raw_body == body.encode()  # the full body is kept on the error


def test_finish_raises_or_parses() -> None:
    with pytest.raises(NotFoundError):
        finish(raw(b"Not Found", 404), decode_json)
    assert finish(raw(b'{"a": 1}', 201), decode_json) == {"a": 1}


# -- 2xx parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"<html>502 Bad Gateway</html>", b'{"text": "trunc', b"\xff\xfe"],
)
def test_generate_200_not_json(content: bytes) -> None:
    op = build_generate("x", None, None, False, {})
    with pytest.raises(APIResponseValidationError) as info:
        op.parse(raw(content))
    err = info.value
    assert err.status_code == 200
    assert err.raw_body == content
    assert err.url == URL
    assert URL in str(err)


@pytest.mark.parametrize(
    "content",
    [
        b'{"text": 5, "output_ids": [], "meta_info": {}}',
        b'{"text": "a", "output_ids": ["x"], "meta_info": {}}',
        b'{"text": "a", "output_ids": [1], "meta_info": []}',
        b'"just a string"',
        b"42",
    ],
)
def test_generate_200_wrong_shape(content: bytes) -> None:
    op = build_generate("x", None, None, False, {})
    with pytest.raises(APIResponseValidationError, match="expected"):
        op.parse(raw(content))


@pytest.mark.parametrize(
    "content",
    [
        b'{"unexpected": 1}',
        b"{}",
        b'{"error": {"message": "something went wrong"}}',
    ],
)
def test_generate_200_object_without_generate_fields_is_rejected(content: bytes) -> None:
    # A 200 whose JSON object has none of text / output_ids / meta_info is not a
    # /generate result; silently returning an empty GenerateOutput hides the problem.
    op = build_generate("x", None, None, False, {})
    with pytest.raises(APIResponseValidationError):
        op.parse(raw(content))


@pytest.mark.parametrize(
    "content",
    [
        b"{}",
        b'{"object": "error", "message": "boom", "type": "InternalServerError", "code": 500}',
    ],
)
def test_chat_200_error_object_is_rejected(content: bytes) -> None:
    op = build_chat_completion([{"role": "user", "content": "x"}], "m", {})
    with pytest.raises(APIResponseValidationError):
        op.parse(raw(content, url="http://h/v1/chat/completions"))


@pytest.mark.parametrize(
    "content",
    [b"no", b'{"choices": [{"index": 0}]}', b'{"choices": "x"}', b"[]"],
)
def test_chat_200_invalid(content: bytes) -> None:
    op = build_chat_completion([{"role": "user", "content": "x"}], "m", {})
    with pytest.raises(APIResponseValidationError):
        op.parse(raw(content, url="http://h/v1/chat/completions"))


def test_decode_json_ignores_content_type() -> None:
    assert decode_json(raw(b'{"a": [1]}', headers={"content-type": "text/plain"})) == {"a": [1]}
    with pytest.raises(APIResponseValidationError, match="text/html"):
        decode_json(raw(b"<p>", headers={"content-type": "text/html"}))


# -- transport failures -----------------------------------------------------------------


def test_connection_error_types() -> None:
    req = httpx.Request("POST", URL)
    timeout = connection_error(httpx.ConnectTimeout("slow", request=req), "POST", URL)
    assert type(timeout) is APITimeoutError
    assert isinstance(timeout, TimeoutError)
    assert isinstance(timeout, APIConnectionError)
    assert timeout.method == "POST" and timeout.url == URL
    assert URL in str(timeout) and "POST" in str(timeout)
    refused = connection_error(httpx.ConnectError("refused", request=req), "POST", URL)
    assert type(refused) is APIConnectionError
    assert "refused" in str(refused)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (httpx.ConnectError("x"), True),
        (httpx.ConnectTimeout("x"), True),
        (httpx.ReadError("x"), True),
        # A read/write/pool timeout is the caller's deadline (and the server may be
        # working on the request): never retried.
        (httpx.ReadTimeout("x"), False),
        (httpx.WriteTimeout("x"), False),
        (httpx.PoolTimeout("x"), False),
        (httpx.WriteError("x"), True),
        (httpx.RemoteProtocolError("x"), True),
        (httpx.UnsupportedProtocol("x"), False),
        (httpx.ProxyError("x"), False),
    ],
)
def test_retryable_transport_errors(exc: Exception, retryable: bool) -> None:
    assert is_retryable_transport_error(exc) is retryable
