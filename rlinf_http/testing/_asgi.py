"""ASGI plumbing shared by the fake server's handlers: request object, JSON and SSE
responses, and the error payloads sglang uses."""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._faults import FaultSpec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class DropConnection(Exception):
    """Raised by the app to make the HTTP server close the connection abruptly.

    The socket server in :mod:`rlinf_http.testing._server` aborts the TCP
    connection (RST where possible) without sending any (further) bytes. Under
    :class:`httpx.ASGITransport` the exception propagates to the caller.

    With ``graceful=True`` the server closes the socket normally (FIN) instead,
    after flushing what was already sent (used to truncate streams).
    """

    def __init__(self, message: str = "connection dropped", *, graceful: bool = False) -> None:
        super().__init__(message)
        self.graceful = graceful


_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(obj: Any) -> bytes:
    return _encode_json(obj).encode("utf-8")


class _BadRequest(Exception):
    def __init__(self, payload: Any, status: int = 400) -> None:
        super().__init__(str(payload))
        self.payload = payload
        self.status = status


def _err(message: str) -> _BadRequest:
    return _BadRequest({"error": {"message": message}})


def _openai_err(message: str, status: int = 400, type_: str = "BadRequestError") -> _BadRequest:
    body = {"object": "error", "message": message, "type": type_, "param": None, "code": status}
    return _BadRequest(body, status)


def _json_type_name(v: Any) -> str:
    if isinstance(v, str):
        return f'string "{v}"'
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "sequence"
    if isinstance(v, dict):
        return "map"
    return repr(v)


def _get_int(d: dict[str, Any], key: str, default: int) -> int:
    v = d.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _BadRequest({"error": f"invalid type: {_json_type_name(v)}, expected i64"})
    return v


class _Req:
    __slots__ = (
        "body",
        "fault",
        "headers",
        "json",
        "method",
        "path",
        "query_string",
        "receive",
        "resp_headers",
        "rid_b",
        "send",
    )

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        parsed: Any,
        rid_b: bytes,
        send: Send,
        receive: Receive,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.json = parsed
        self.rid_b = rid_b
        self.send = send
        self.receive = receive
        self.fault: FaultSpec | None = None
        self.query_string = b""
        #: headers added to every response to this request (e.g. ``x-fake-worker``)
        self.resp_headers: list[tuple[bytes, bytes]] = []

    def query(self) -> dict[str, str]:
        """The query parameters (last value wins)."""
        if not self.query_string:
            return {}
        pairs = urllib.parse.parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True)
        return dict(pairs)


_INVALID = object()
_SSE_HEADERS_BASE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"


class _SSE:
    """Writes ``data: <json>\\n\\n`` events and applies stream faults."""

    __slots__ = ("count", "fault", "finished", "req")

    def __init__(self, req: _Req) -> None:
        self.req = req
        self.fault = req.fault if req.fault is not None and req.fault.is_stream_fault else None
        self.count = 0
        self.finished = False

    async def start(self) -> None:
        headers = [*_SSE_HEADERS_BASE, (b"x-request-id", self.req.rid_b), *self.req.resp_headers]
        await self.req.send({"type": "http.response.start", "status": 200, "headers": headers})

    async def _fault_hit(self) -> bool:
        f = self.fault
        if f is None:
            return False
        if f.truncate_stream_after is not None and self.count >= f.truncate_stream_after:
            raise DropConnection("truncated stream (injected fault)", graceful=True)
        if f.stream_error_after is not None and self.count >= f.stream_error_after:
            err = {"error": {"message": "injected stream error", "code": 500}}
            await self.req.send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + _dumps(err) + b"\n\n",
                    "more_body": True,
                }
            )
            await self.req.send({"type": "http.response.body", "body": _DONE, "more_body": False})
            self.finished = True
            return True
        return False

    async def data(self, obj: Any) -> bool:
        """Send one event; returns False if the stream was ended by a fault."""
        if self.finished:
            return False
        if self.fault is not None and await self._fault_hit():
            return False
        await self.req.send(
            {
                "type": "http.response.body",
                "body": b"data: " + _dumps(obj) + b"\n\n",
                "more_body": True,
            }
        )
        self.count += 1
        return True

    async def done(self) -> None:
        if self.finished:
            return
        if self.fault is not None and await self._fault_hit():
            return
        self.finished = True
        await self.req.send({"type": "http.response.body", "body": _DONE, "more_body": False})


Handler = Callable[[_Req], Awaitable[None]]


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return _dumps(v)


# ---------------------------------------------------------------------------
# control-request bodies (sglang's msgspec structs validated through pydantic)

_REQUIRED: Any = object()


class _Field:
    """One field of a request struct: a type check and a default (or required)."""

    __slots__ = ("check", "default", "expected")

    def __init__(self, expected: str, check: Callable[[Any], bool], default: Any) -> None:
        self.expected = expected
        self.check = check
        self.default = default


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_b64(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def f_str(default: Any = _REQUIRED) -> _Field:
    return _Field("a valid string", lambda v: isinstance(v, str), default)


def f_opt_str(default: str | None = None) -> _Field:
    return _Field("a valid string or null", lambda v: v is None or isinstance(v, str), default)


def f_int(default: Any = _REQUIRED) -> _Field:
    return _Field("a valid integer", _is_int, default)


def f_bool(default: Any = _REQUIRED) -> _Field:
    return _Field("a valid boolean", lambda v: isinstance(v, bool), default)


def f_literal(*values: str, default: Any = _REQUIRED) -> _Field:
    expected = "one of " + ", ".join(repr(v) for v in values)
    return _Field(expected, lambda v: v in values, default)


def f_str_list(default: Any = _REQUIRED, *, nullable: bool = False) -> _Field:
    def check(v: Any) -> bool:
        if v is None:
            return nullable
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    return _Field("a valid list of strings", check, default)


def f_shape_list(default: Any = _REQUIRED) -> _Field:
    def check(v: Any) -> bool:
        return isinstance(v, list) and all(
            isinstance(s, list) and all(_is_int(d) for d in s) for s in v
        )

    return _Field("a valid list of lists of integers", check, default)


def f_b64_list(default: Any = _REQUIRED) -> _Field:
    def check(v: Any) -> bool:
        return isinstance(v, list) and all(_is_b64(x) for x in v)

    return _Field("a valid list of base64 strings", check, default)


def f_dict(default: Any = _REQUIRED, *, nullable: bool = False) -> _Field:
    return _Field(
        "a valid dictionary",
        lambda v: isinstance(v, dict) or (nullable and v is None),
        default,
    )


def _validation_error(loc: str, msg: str) -> _BadRequest:
    """sglang turns FastAPI's 422 validation errors into this 400."""
    return _openai_err(f"1 validation error: {loc}: {msg}", 400, "Bad Request")


def _struct_body(req: _Req, spec: dict[str, _Field]) -> dict[str, Any]:
    """Validate a JSON body like sglang's request structs.

    The body is required even when every field has a default (send ``{}``);
    unknown keys are ignored; types are strict.
    """
    body = req.json
    if body is None:
        raise _validation_error("body", "Field required")
    if body is _INVALID or not isinstance(body, dict):
        raise _validation_error("body", "Input should be a valid dictionary")
    out: dict[str, Any] = {}
    for name, fld in spec.items():
        if name not in body:
            if fld.default is _REQUIRED:
                raise _validation_error(f"body.{name}", "Field required")
            out[name] = fld.default
            continue
        v = body[name]
        if not fld.check(v):
            raise _validation_error(f"body.{name}", f"Input should be {fld.expected}")
        out[name] = v
    return out
