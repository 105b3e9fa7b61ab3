"""Status + headers + body bytes -> a model, a value or a typed error (no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pydantic
import pydantic_core

from .._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    DuplicateRequestIdError,
    preview,
    status_error_class,
)
from .retry import RetryPolicy

__all__ = [
    "RawResponse",
    "connection_error",
    "finish",
    "RawHeaders",
    "is_retryable_transport_error",
    "retry_delay_after_error",
    "retry_delay_after_status",
    "decode_json",
    "error_details",
    "explain_tokenizer_error",
    "parse_model",
    "recast",
    "status_error",
    "undecodable",
]

T = TypeVar("T")

# an error code as smg writes them: selector_required, upstream_timeout...
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A fully read HTTP response, as the core sees it.

    ``headers`` is any mapping with lower-case keys (``httpx.Headers`` is
    case-insensitive and fits).
    """

    method: str
    url: str
    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


def decode_json(raw: RawResponse) -> Any:
    """The JSON value of a success body, whatever its ``Content-Type`` says.

    The router serves JSON as ``text/plain`` on some routes, so the header is not
    trusted. Raises :class:`APIResponseValidationError` when the body is not JSON.
    """
    try:
        return pydantic_core.from_json(raw.content)
    except ValueError as exc:
        raise APIResponseValidationError(
            f"{raw.method} {raw.url}: expected a JSON body, got "
            f"{raw.headers.get('content-type', 'no content-type')}: {preview(raw.content)!r}"
            f" ({exc})",
            method=raw.method,
            url=raw.url,
            status_code=raw.status_code,
            raw_body=raw.content,
        ) from None


def undecodable(
    method: str, url: str, status: int, body: bytes, exc: Exception
) -> APIResponseValidationError:
    """The error for a body that does not decode as its ``Content-Encoding`` says."""
    return APIResponseValidationError(
        f"{method} {url}: the body does not decode as its Content-Encoding says: {exc}",
        method=method,
        url=url,
        status_code=status,
        raw_body=body,
    )


def parse_model(adapter: pydantic.TypeAdapter[T], raw: RawResponse) -> T:
    """Validate a success body straight from bytes into a model (or list of models)."""
    try:
        return adapter.validate_json(raw.content)
    except pydantic.ValidationError as exc:
        # Distinguish "not JSON at all" from "JSON of the wrong shape".
        decode_json(raw)
        raise APIResponseValidationError(
            f"{raw.method} {raw.url}: the response does not have the expected shape "
            f"({exc.error_count()} errors; first: {_first_error(exc)}); body: "
            f"{preview(raw.content)!r}",
            method=raw.method,
            url=raw.url,
            status_code=raw.status_code,
            raw_body=raw.content,
        ) from exc


def _first_error(exc: pydantic.ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    return f"{loc or '<root>'}: {err.get('msg')}"


def error_details(
    content: bytes, headers: Mapping[str, str]
) -> tuple[Any, str | None, str | int | None]:
    """``(body, message, code)`` from any error body sglang or its router sends.

    Shapes handled (reference §8.4): ``{"error": {"message", "code", "type"}}``,
    ``{"error": "<string>"}``, OpenAI ``{"object": "error", "message", "code"}``,
    FastAPI ``{"detail": ...}``, router ``{"error": {"type", "code", "message"}}``
    with ``x-smg-error-code``, ``{"error": ..., "code": "WORKER_NOT_FOUND"}``, smg's RL
    plane ``{"error": "<code>", "message": "<text>"}``,
    plain text (also JSON served as ``text/plain``) and empty bodies.
    """
    header_code: str | int | None = headers.get("x-smg-error-code")
    text = content.decode("utf-8", errors="replace")
    try:
        body: Any = json.loads(text) if text.strip() else None
    except Exception:  # not JSON, or nested too deep to parse (RecursionError)
        body = text
    message: str | None = None
    code: str | int | None = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = _as_text(err.get("message"))
            code = err.get("code")
            if message is None:
                message = _as_text(err.get("type"))
        elif isinstance(err, str):
            message = err
            code = body.get("code")
            if code is None and isinstance(body.get("message"), str) and _CODE.fullmatch(err):
                # smg's RL plane: {"error": "<snake_case code>", "message": "<text>"}
                code, message = err, body["message"]
        if message is None:
            message = _as_text(body.get("message"))
            if code is None:
                code = body.get("code")
        if message is None and "detail" in body:
            detail = body["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
    elif isinstance(body, str):
        message = body.strip() or None
    elif body is not None:
        message = json.dumps(body)
    if isinstance(code, (bool, float)) or not isinstance(code, (str, int)):
        code = None
    return body, message, code if code is not None else header_code


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def status_error(raw: RawResponse, sent_request_id: str | None = None) -> APIStatusError:
    """The typed error for a non-success response.

    ``request_id`` is the response's ``x-request-id``, else ``sent_request_id``.
    """
    body, message, code = error_details(raw.content, raw.headers)
    cls = status_error_class(raw.status_code)
    text = f"{raw.method} {raw.url} failed: status={raw.status_code}, body={preview(raw.content)}"
    if raw.status_code == 400 and message is not None and "Duplicate request ID" in message:
        cls = DuplicateRequestIdError
        text += " (a request with this rid is still running: give every request its own rid)"
    return cls(
        text,
        method=raw.method,
        url=raw.url,
        status_code=raw.status_code,
        body=body,
        raw_body=raw.content,
        headers=dict(raw.headers.items()),
        error_message=message,
        code=code,
        request_id=raw.headers.get("x-request-id") or sent_request_id,
    )


E = TypeVar("E", bound=APIStatusError)


def recast(error: APIStatusError, cls: type[E], text: str, code: str | int | None = None) -> E:
    """``error`` as ``cls`` with the message ``text``, keeping its status, body and headers
    (and its code unless ``code`` is given)."""
    return cls(
        text,
        method=error.method,
        url=error.url,
        status_code=error.status_code,
        body=error.body,
        raw_body=error.raw_body,
        headers=error.headers,
        error_message=error.message,
        code=error.code if code is None else code,
        request_id=error.request_id,
    )


#: What to do when a gateway has no tokenizer of its own.
TOKENIZER_HINT = (
    " (the gateway answers /v1/tokenize and /v1/detokenize from its own tokenizer "
    "registry, which has none for this model: register one on the gateway with "
    "POST /v1/tokenizers, or tokenize on a worker: client.copy(base_url=<worker url>))"
)


def explain_tokenizer_error(exc: APIStatusError) -> None:
    """Say what to do on a gateway's "No tokenizers available" answer (in place).

    smg and sglang-router answer ``{"error": {"type": "tokenizer_not_found",
    "message": ...}}`` without a ``code``: the type becomes :attr:`code`.
    """
    if "No tokenizers available" not in (exc.message or "") or not exc.args:
        return
    if TOKENIZER_HINT not in str(exc.args[0]):
        exc.args = (f"{exc.args[0]}{TOKENIZER_HINT}", *exc.args[1:])
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    if exc.code is None and isinstance(error, dict) and isinstance(error.get("type"), str):
        exc.code = error["type"]


def is_retryable_transport_error(exc: BaseException, *, timeouts: bool = False) -> bool:
    """Whether a failure raised before any response arrived may be retried.

    Connection failures are: refused or timed-out connects, a connection reset
    or closed before the response (``RemoteProtocolError``). A failure after the
    response began (transports mark it ``response_started``) never is. A read or write
    timeout is not (the server may still be working on the request, and the
    timeout is the caller's deadline), nor a pool timeout or a bad URL scheme —
    unless ``timeouts`` is set (``post``'s RLinf semantics retry every failure).
    """
    if getattr(exc, "response_started", False):
        return False  # the response had begun: the server has the request
    if timeouts and isinstance(exc, httpx.TimeoutException):
        return True
    return isinstance(exc, (httpx.NetworkError, httpx.ConnectTimeout, httpx.RemoteProtocolError))


def connection_error(exc: BaseException, method: str, url: str) -> APIConnectionError:
    """Our error for a transport failure (an ``httpx.TransportError`` or similar)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return APITimeoutError(
            f"{method} {url} timed out: {type(exc).__name__}: {detail}", method=method, url=url
        )
    return APIConnectionError(
        f"{method} {url} failed: {type(exc).__name__}: {detail}", method=method, url=url
    )


class RawHeaders(Mapping[str, str]):
    """Response headers as the transport received them (``(name, value)`` byte pairs).

    Construction is free; the case-insensitive lookup table is built on first
    use (most successful responses are never asked for a header). Repeated names
    are joined with ``", "``.
    """

    __slots__ = ("_map", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._map: dict[str, str] | None = None

    def _table(self) -> dict[str, str]:
        table = self._map
        if table is None:
            table = {}
            for name, value in self.raw:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                table[key] = f"{table[key]}, {text}" if key in table else text
            self._map = table
        return table

    def __getitem__(self, key: str) -> str:
        return self._table()[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:
        return self._table().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._table()

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


def retry_delay_after_error(
    policy: RetryPolicy, retries: int, exc: BaseException, method: str, url: str
) -> float:
    """The wait before retrying a transport failure; raises our error if no retry."""
    delay = (
        policy.delay_after_connection_error(retries)
        if is_retryable_transport_error(exc, timeouts=policy.retry_timeouts)
        else None
    )
    if delay is None:
        raise connection_error(exc, method, url) from exc
    if getattr(exc, "stale_connection", False):
        # A keep-alive connection the server closed as we used it: retry at once on
        # a fresh one (this still counts as one of the policy's retries).
        return 0.0
    return delay


def retry_delay_after_status(
    policy: RetryPolicy, retries: int, raw: RawResponse, sent_request_id: str | None
) -> float:
    """The wait before retrying a non-success response; raises its error if no retry."""
    delay = policy.delay_after_status(retries, raw.status_code, raw.headers)
    if delay is None:
        raise status_error(raw, sent_request_id)
    return delay


def finish(raw: RawResponse, parse: Callable[[RawResponse], T]) -> T:
    """Turn a complete response into the call's result, or raise its typed error."""
    if not raw.is_success:
        raise status_error(raw)
    return parse(raw)
