"""A fake SGLang server implemented as a pure ASGI 3 application.

No web framework is used: routing is a dict lookup, bodies are parsed with the
stdlib :mod:`json`, and all waiting goes through :mod:`anyio`, so the app runs on
asyncio and trio (e.g. under :class:`httpx.ASGITransport`) as well as behind the
socket server in :mod:`rlinf_http.testing._server`.

Output is deterministic: output token ``i`` has id ``1000 + i`` and text
``" tok{i}"`` (see :meth:`FakeSGLangApp.output_text` / :meth:`FakeSGLangApp.output_ids`).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import anyio

__all__ = ["DropConnection", "FakeConfig", "FakeSGLangApp", "FaultRegistry", "FaultSpec"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


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


@dataclass
class FakeConfig:
    """Configuration of :class:`FakeSGLangApp`.

    ``model_path`` must be an existing local directory so that a real
    sglang-router trying to load a tokenizer from it stays offline.
    """

    model_path: str = _PKG_DIR
    served_model_name: str = "fake-model"
    tokenizer_path: str | None = None
    #: time to first token (seconds)
    ttft_s: float = 0.0
    #: inter-token latency (seconds per output token after the first)
    itl_s: float = 0.0
    #: server flag ``--incremental-streaming-output``: streams send disjoint deltas
    incremental_streaming: bool = False
    default_max_new_tokens: int = 128
    stream_interval: int = 1
    #: simulate an old server: only ``/get_server_info`` and ``/get_model_info`` exist
    legacy_info_routes_only: bool = False
    #: if set, generation stops after this many tokens with finish_reason "stop"
    #: (matched ``eos_token_id``) unless ``ignore_eos`` is requested
    eos_after: int | None = None
    eos_token_id: int = 2
    version: str = "0.5.23-fake"
    max_total_num_tokens: int = 1 << 20
    model_type: str = "fake"
    architectures: list[str] = field(default_factory=lambda: ["FakeForCausalLM"])

    def __post_init__(self) -> None:
        if self.tokenizer_path is None:
            self.tokenizer_path = self.model_path
        if self.stream_interval < 1:
            raise ValueError("stream_interval must be >= 1")


@dataclass
class FaultSpec:
    """One injected fault.

    A fault applies to the next ``times`` requests whose path equals ``path``
    (``None`` = any path; ``method`` optionally restricts the HTTP method).
    ``times=None`` means forever. Stream faults (``stream_error_after``,
    ``truncate_stream_after``) only match streaming requests (``"stream": true``).

    Effects, in order: sleep ``delay_s``; then ``drop`` (close the connection
    without a response), ``hang`` (never answer until the client disconnects),
    ``status`` (answer with ``status``/``body``/``content_type``/``headers``),
    ``malformed`` (200 with a body that is not valid JSON), or the stream faults.
    A fault with only ``delay_s`` delays the normal answer.

    Note: under :class:`httpx.ASGITransport` ``drop``/``truncate_stream_after``
    surface as :class:`DropConnection` raised into the caller, and ``hang``
    never returns (ASGITransport has no timeouts) - use a socket server for those.
    """

    path: str | None = None
    times: int | None = 1
    status: int | None = None
    body: Any = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    malformed: bool = False
    stream_error_after: int | None = None
    truncate_stream_after: int | None = None
    hang: bool = False
    method: str | None = None

    @property
    def is_stream_fault(self) -> bool:
        """True if this fault only acts on streaming responses."""
        return self.stream_error_after is not None or self.truncate_stream_after is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        """Build a spec from a JSON object (unknown keys raise ``ValueError``)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FaultSpec field(s): {sorted(unknown)}")
        return cls(**data)


class FaultRegistry:
    """Thread-safe list of pending :class:`FaultSpec` (``app.faults``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[list[Any]] = []  # [spec, remaining]

    def add(self, *specs: FaultSpec) -> None:
        """Queue faults; they are matched in insertion order."""
        with self._lock:
            for spec in specs:
                self._active.append([spec, spec.times])

    def clear(self) -> int:
        """Remove all pending faults; returns how many were removed."""
        with self._lock:
            n = len(self._active)
            self._active.clear()
            return n

    def pending(self) -> list[FaultSpec]:
        """The faults that still apply to future requests."""
        with self._lock:
            return [entry[0] for entry in self._active]

    def __len__(self) -> int:
        return len(self._active)

    def take(self, path: str, method: str, is_stream: bool) -> FaultSpec | None:
        """Consume and return the first fault matching this request, if any."""
        if not self._active:
            return None
        with self._lock:
            for i, entry in enumerate(self._active):
                spec: FaultSpec = entry[0]
                if spec.path is not None and spec.path != path:
                    continue
                if spec.method is not None and spec.method.upper() != method:
                    continue
                if spec.is_stream_fault and not is_stream:
                    continue
                if entry[1] is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._active[i]
                return spec
        return None


# ---------------------------------------------------------------------------
# deterministic tokens

_OUT_BASE_ID = 1000
_PIECES: list[str] = []
_IDS: list[int] = []
_LPS = [-(j + 1) / 16 for j in range(16)]  # exact binary fractions


def _ensure_tokens(n: int) -> None:
    if n > len(_PIECES):
        start = len(_PIECES)
        _PIECES.extend(f" tok{i}" for i in range(start, n))
        _IDS.extend(_OUT_BASE_ID + (i % 30000) for i in range(start, n))


_ensure_tokens(256)


def _out_text(lo: int, hi: int) -> str:
    _ensure_tokens(hi)
    return "".join(_PIECES[lo:hi])


def _out_ids(lo: int, hi: int) -> list[int]:
    _ensure_tokens(hi)
    return _IDS[lo:hi]


def _word_id(word: str) -> int:
    return 100 + zlib.crc32(word.encode()) % 30000


_SAMPLING_KEYS = (
    "max_new_tokens",
    "stop",
    "stop_token_ids",
    "stop_regex",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "min_new_tokens",
    "n",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "custom_params",
    "stream_interval",
    "logit_bias",
    "sampling_seed",
    "beam_width",
    "watermark",
)
_SAMPLING_KEY_SET = frozenset(_SAMPLING_KEYS)
_SAMPLING_EXPECTED = ", ".join(f"`{k}`" for k in _SAMPLING_KEYS)

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


class _Item:
    """One generation (one prompt x one sample)."""

    __slots__ = (
        "abort_at",
        "aborted",
        "finish",
        "index",
        "logprob_start_len",
        "n_out",
        "prompt_ids",
        "prompt_len",
        "prompt_words",
        "return_logprob",
        "return_text",
        "rid",
        "sample",
        "sent",
        "stream_interval",
        "top_logprobs_num",
    )

    def __init__(self) -> None:
        self.aborted = False
        self.abort_at = 0.0
        self.sent = 0
        self.prompt_ids: list[int] | None = None
        self.prompt_words: list[str] | None = None
        self.prompt_len = 1
        self.return_logprob = False
        self.return_text = False
        self.logprob_start_len = -1
        self.top_logprobs_num = 0
        self.stream_interval = 1
        self.index = 0
        self.sample = 0
        self.rid = ""
        self.n_out = 0
        self.finish: dict[str, Any] = {}


class _Job:
    __slots__ = ("abort_pending", "batch", "event", "items", "start")

    def __init__(self, items: list[_Item], batch: bool) -> None:
        self.items = items
        self.batch = batch
        self.start = time.monotonic()
        self.event: anyio.Event | None = None
        self.abort_pending = False

    def abort(self, item: _Item) -> None:
        if not item.aborted:
            item.aborted = True
            item.abort_at = time.monotonic()
            self.abort_pending = True
            if self.event is not None:
                self.event.set()


_ABORT_FINISH = {
    "type": "abort",
    "message": "Abort request",
    "status_code": None,
    "err_type": None,
}


class _Req:
    __slots__ = ("body", "fault", "headers", "json", "method", "path", "receive", "rid_b", "send")

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
        headers = [*_SSE_HEADERS_BASE, (b"x-request-id", self.req.rid_b)]
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
Emit = Callable[[_Item, int, int, "dict[str, Any] | None"], Awaitable[bool]]


class FakeSGLangApp:
    """A deterministic fake SGLang server (pure ASGI 3 app).

    Use it in-process with ``httpx.AsyncClient(transport=httpx.ASGITransport(app))``
    or over real sockets with :class:`rlinf_http.testing.FakeServer`.

    Attributes:
        config: the :class:`FakeConfig`.
        faults: :class:`FaultRegistry`; ``app.faults.add(FaultSpec(...))``.
        stats: snapshot dict with ``requests`` (count per path), ``last_bodies``,
            ``last_headers``, ``in_flight``, ``max_in_flight``, ``disconnects``
            (requests cancelled by a client disconnect), ``aborted`` (generations
            aborted via ``/abort_request``) and ``faults_injected``. Over sockets the
            client may see a response a moment before ``in_flight`` is decremented.
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config if config is not None else FakeConfig()
        self.faults = FaultRegistry()
        self._stats_lock = threading.Lock()
        self._stats: dict[str, Any] = {}
        self.reset_stats()
        self._running: dict[str, tuple[_Job, _Item]] = {}
        self._req_counter = itertools.count(1)
        self._created = int(time.time())
        self._routes: dict[str, dict[str, Handler]] = {}
        self._build_routes()

    # ------------------------------------------------------------------ public helpers

    @staticmethod
    def output_text(num_tokens: int, start: int = 0) -> str:
        """Text of output tokens ``start..num_tokens-1`` (e.g. ``" tok0 tok1"``)."""
        return _out_text(start, num_tokens)

    @staticmethod
    def output_ids(num_tokens: int, start: int = 0) -> list[int]:
        """Ids of output tokens ``start..num_tokens-1`` (``1000 + i``)."""
        return list(_out_ids(start, num_tokens))

    @staticmethod
    def output_logprob(i: int) -> float:
        """Log-probability reported for output token ``i``."""
        return _LPS[i % 16]

    @property
    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the request statistics."""
        with self._stats_lock:
            s = self._stats
            return {
                "requests": dict(s["requests"]),
                "last_bodies": dict(s["last_bodies"]),
                "last_headers": dict(s["last_headers"]),
                "in_flight": s["in_flight"],
                "max_in_flight": s["max_in_flight"],
                "disconnects": s["disconnects"],
                "aborted": s["aborted"],
                "faults_injected": s["faults_injected"],
            }

    def reset_stats(self) -> None:
        """Zero all statistics (``in_flight`` is kept)."""
        with self._stats_lock:
            in_flight = self._stats.get("in_flight", 0)
            self._stats = {
                "requests": {},
                "last_bodies": {},
                "last_headers": {},
                "in_flight": in_flight,
                "max_in_flight": in_flight,
                "disconnects": 0,
                "aborted": 0,
                "faults_injected": 0,
            }

    @property
    def running_requests(self) -> int:
        """Number of generations currently running."""
        return len(self._running)

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # disconnected before the body arrived
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            val = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {val}" if name in headers else val
        rid = headers.get("x-request-id")
        rid_b = rid.encode("latin-1") if rid else b"fake-%d" % next(self._req_counter)
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = _INVALID
        req = _Req(method, path, headers, body, parsed, rid_b, send, receive)
        internal = path.startswith("/_fake/")
        st = self._stats
        if not internal:
            with self._stats_lock:
                st = self._stats
                reqs = st["requests"]
                reqs[path] = reqs.get(path, 0) + 1
                st["last_bodies"][path] = (
                    body.decode("utf-8", "replace") if parsed is _INVALID else parsed
                )
                st["last_headers"][path] = headers
                st["in_flight"] += 1
                if st["in_flight"] > st["max_in_flight"]:
                    st["max_in_flight"] = st["in_flight"]
        try:
            if not internal and len(self.faults):
                is_stream = isinstance(parsed, dict) and parsed.get("stream") is True
                req.fault = self.faults.take(path, method, is_stream)
                if req.fault is not None:
                    with self._stats_lock:
                        self._stats["faults_injected"] += 1
                    if await self._apply_fault(req, req.fault):
                        return
            methods = self._routes.get(path)
            if methods is None:
                await self._respond_json(req, 404, {"detail": "Not Found"})
                return
            handler = methods.get(method)
            if handler is None:
                await self._respond_json(req, 405, {"detail": "Method Not Allowed"})
                return
            try:
                await handler(req)
            except _BadRequest as e:
                await self._respond_json(req, e.status, e.payload)
        except anyio.get_cancelled_exc_class():
            with self._stats_lock:
                self._stats["disconnects"] += 1
            raise
        finally:
            if not internal:
                with self._stats_lock:
                    self._stats["in_flight"] -= 1

    # ------------------------------------------------------------------ responses

    async def _respond(
        self,
        req: _Req,
        status: int,
        body: bytes,
        content_type: bytes | None = b"application/json",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [(b"content-length", b"%d" % len(body)), (b"x-request-id", req.rid_b)]
        if content_type is not None:
            headers.append((b"content-type", content_type))
        if extra:
            headers.extend(extra)
        await req.send({"type": "http.response.start", "status": status, "headers": headers})
        await req.send({"type": "http.response.body", "body": body})

    async def _respond_json(self, req: _Req, status: int, obj: Any) -> None:
        await self._respond(req, status, _dumps(obj))

    async def _apply_fault(self, req: _Req, f: FaultSpec) -> bool:
        """Apply a fault; returns True if the request has been answered."""
        if f.delay_s > 0:
            await anyio.sleep(f.delay_s)
        if f.drop:
            raise DropConnection("dropped (injected fault)")
        if f.hang:
            while True:
                msg = await req.receive()
                if msg["type"] == "http.disconnect":
                    with self._stats_lock:
                        self._stats["disconnects"] += 1
                    return True
        extra = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in f.headers.items()
        ]
        if f.status is not None:
            body: bytes
            ctype = "application/json"
            if isinstance(f.body, bytes):
                body = f.body
                ctype = "application/octet-stream"
            elif isinstance(f.body, str):
                body = f.body.encode("utf-8")
                ctype = "text/plain; charset=utf-8"
            elif f.body is None:
                body = _dumps({"error": {"message": f"injected fault (HTTP {f.status})"}})
            else:
                body = _dumps(f.body)
            if f.content_type is not None:
                ctype = f.content_type
            await self._respond(req, f.status, body, ctype.encode("latin-1"), extra)
            return True
        if f.malformed:
            body = b'{"text": "truncated json' if f.body is None else _as_bytes(f.body)
            ctype = f.content_type or "application/json"
            await self._respond(req, 200, body, ctype.encode("latin-1"), extra)
            return True
        return False

    # ------------------------------------------------------------------ routing

    def _build_routes(self) -> None:
        r = self._routes
        both: dict[str, Handler] = {"POST": self._generate, "PUT": self._generate}
        r["/generate"] = both
        r["/v1/chat/completions"] = {"POST": self._chat}
        r["/v1/completions"] = {"POST": self._completions}
        r["/health"] = {"GET": self._health}
        r["/health_generate"] = {"GET": self._health_generate}
        r["/get_server_info"] = {"GET": self._server_info}
        r["/get_model_info"] = {"GET": self._model_info}
        if not self.config.legacy_info_routes_only:
            r["/server_info"] = {"GET": self._server_info}
            r["/model_info"] = {"GET": self._model_info}
        r["/v1/models"] = {"GET": self._models}
        r["/flush_cache"] = {"GET": self._flush_cache, "POST": self._flush_cache}
        r["/abort_request"] = {"POST": self._abort_request}
        r["/get_load"] = {"GET": self._get_load}
        r["/_fake/faults"] = {
            "POST": self._fake_add_faults,
            "DELETE": self._fake_clear_faults,
            "GET": self._fake_list_faults,
        }
        r["/_fake/stats"] = {"GET": self._fake_stats, "DELETE": self._fake_reset_stats}

    # ------------------------------------------------------------------ simple endpoints

    async def _health(self, req: _Req) -> None:
        await self._respond(req, 200, b"", None)

    async def _health_generate(self, req: _Req) -> None:
        if self.config.ttft_s > 0:
            await anyio.sleep(self.config.ttft_s)
        await self._respond(req, 200, b"", None)

    def server_info(self) -> dict[str, Any]:
        """The JSON served by ``/server_info``."""
        c = self.config
        return {
            "model_path": c.model_path,
            "tokenizer_path": c.tokenizer_path,
            "served_model_name": c.served_model_name,
            "tp_size": 1,
            "dp_size": 1,
            "version": c.version,
            "incremental_streaming_output": c.incremental_streaming,
            "stream_output": c.incremental_streaming,
            "stream_interval": c.stream_interval,
            "skip_tokenizer_init": False,
            "status": "ready",
            "max_total_num_tokens": c.max_total_num_tokens,
            "max_req_input_len": c.max_total_num_tokens,
            "internal_states": [{"last_gen_throughput": 0.0}],
        }

    def model_info(self) -> dict[str, Any]:
        """The JSON served by ``/model_info``."""
        c = self.config
        return {
            "model_path": c.model_path,
            "tokenizer_path": c.tokenizer_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": c.model_type,
            "architectures": list(c.architectures),
            "served_model_name": c.served_model_name,
        }

    async def _server_info(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.server_info())

    async def _model_info(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.model_info())

    async def _models(self, req: _Req) -> None:
        c = self.config
        card = {
            "id": c.served_model_name,
            "object": "model",
            "created": self._created,
            "owned_by": "sglang",
            "root": c.model_path,
            "parent": None,
            "max_model_len": c.max_total_num_tokens,
        }
        await self._respond_json(req, 200, {"object": "list", "data": [card]})

    async def _flush_cache(self, req: _Req) -> None:
        if self._running:
            msg = b"Cache not flushed. Please check if there are running or waiting requests.\n"
            await self._respond(req, 400, msg, b"text/plain; charset=utf-8")
        else:
            await self._respond(req, 200, b"Cache flushed.\n", b"text/plain; charset=utf-8")

    async def _abort_request(self, req: _Req) -> None:
        body = req.json
        if not isinstance(body, dict):
            raise _err("Invalid abort request body")
        rid = body.get("rid")
        abort_all = bool(body.get("abort_all", False))
        n = 0
        prefix = f"{rid}_" if isinstance(rid, str) else None
        for key, (job, item) in list(self._running.items()):
            if abort_all or key == rid or (prefix is not None and key.startswith(prefix)):
                if not item.aborted:
                    job.abort(item)
                    n += 1
        if n:
            with self._stats_lock:
                self._stats["aborted"] += n
        await self._respond(req, 200, b"", None)

    async def _get_load(self, req: _Req) -> None:
        num_tokens = 0
        for _job, item in self._running.values():
            num_tokens += item.prompt_len + item.n_out
        load = {
            "dp_rank": 0,
            "num_reqs": len(self._running),
            "num_waiting_reqs": 0,
            "num_tokens": num_tokens,
            "num_pending_tokens": 0,
            "ts_tic": time.time(),
        }
        await self._respond_json(req, 200, [load])

    async def _fake_add_faults(self, req: _Req) -> None:
        body = req.json
        specs_raw = body if isinstance(body, list) else [body]
        try:
            specs = [FaultSpec.from_dict(d) for d in specs_raw if isinstance(d, dict)]
        except (TypeError, ValueError) as e:
            raise _err(str(e)) from None
        if len(specs) != len(specs_raw):
            raise _err("expected a FaultSpec object or a list of them")
        self.faults.add(*specs)
        await self._respond_json(req, 200, {"added": len(specs), "pending": len(self.faults)})

    async def _fake_clear_faults(self, req: _Req) -> None:
        await self._respond_json(req, 200, {"cleared": self.faults.clear()})

    async def _fake_list_faults(self, req: _Req) -> None:
        out = []
        for spec in self.faults.pending():
            d = {f.name: getattr(spec, f.name) for f in fields(spec)}
            if isinstance(d["body"], bytes):
                d["body"] = d["body"].decode("utf-8", "replace")
            out.append(d)
        await self._respond_json(req, 200, out)

    async def _fake_stats(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.stats)

    async def _fake_reset_stats(self, req: _Req) -> None:
        self.reset_stats()
        await self._respond_json(req, 200, {"reset": True})

    # ------------------------------------------------------------------ generation core

    def _plan(self, item: _Item, max_new: int, ignore_eos: bool) -> None:
        eos_after = self.config.eos_after
        if eos_after is not None and not ignore_eos and eos_after < max_new:
            item.n_out = eos_after
            item.finish = {"type": "stop", "matched": self.config.eos_token_id}
        else:
            item.n_out = max_new
            item.finish = {"type": "length", "length": max_new}

    def _tokens_at(self, elapsed: float, n_out: int) -> int:
        c = self.config
        if elapsed < c.ttft_s:
            return 0
        if c.itl_s <= 0:
            return n_out
        return min(n_out, 1 + int((elapsed - c.ttft_s) / c.itl_s))

    def _register(self, job: _Job) -> None:
        for item in job.items:
            self._running[item.rid] = (job, item)

    def _unregister(self, job: _Job) -> None:
        running = self._running
        for item in job.items:
            entry = running.get(item.rid)
            if entry is not None and entry[0] is job:
                del running[item.rid]

    async def _run_nonstream(self, job: _Job) -> None:
        """Wait as long as the slowest item needs; aborted items stop early."""
        c = self.config
        if c.ttft_s <= 0 and c.itl_s <= 0:
            return
        while True:
            target = -1.0
            for it in job.items:
                if not it.aborted:
                    d = c.ttft_s + c.itl_s * max(it.n_out - 1, 0)
                    target = max(target, d)
            if target < 0:
                break
            remaining = target - (time.monotonic() - job.start)
            if remaining <= 0:
                break
            job.event = anyio.Event()
            with anyio.move_on_after(remaining):
                await job.event.wait()
        for it in job.items:
            if it.aborted:
                it.n_out = self._tokens_at(it.abort_at - job.start, it.n_out)
                it.finish = _ABORT_FINISH

    async def _run_stream(self, job: _Job, emit: Emit) -> None:
        """Drive all items in lock-step; calls ``emit(item, k0, k1, finish)``."""
        c = self.config
        items = job.items
        live = list(items)
        step = 0
        while live:
            if job.abort_pending:
                job.abort_pending = False
                for it in list(live):
                    if it.aborted:
                        live.remove(it)
                        k = min(step, it.n_out)
                        it.finish = _ABORT_FINISH
                        if not await emit(it, it.sent, k, _ABORT_FINISH):
                            return
                        it.sent = k
                continue
            t_next = c.ttft_s + c.itl_s * step
            delay = job.start + t_next - time.monotonic()
            if delay > 0:
                job.event = anyio.Event()
                with anyio.move_on_after(delay):
                    await job.event.wait()
                if job.abort_pending:
                    continue
            step += 1
            for it in list(live):
                k = min(step, it.n_out)
                finished = step >= it.n_out
                if finished or k - it.sent >= it.stream_interval:
                    if finished:
                        live.remove(it)
                    if not await emit(it, it.sent, k, it.finish if finished else None):
                        return
                    it.sent = k

    def _gen_obj(
        self, job: _Job, it: _Item, k0: int, k1: int, finish: dict[str, Any] | None, first: bool
    ) -> dict[str, Any]:
        incremental = self.config.incremental_streaming and k0 >= 0
        lo = k0 if incremental and k0 > 0 else 0
        meta: dict[str, Any] = {
            "id": it.rid,
            "finish_reason": finish,
            "prompt_tokens": it.prompt_len,
            "completion_tokens": k1,
            "cached_tokens": 0,
            "weight_version": "default",
            "e2e_latency": time.monotonic() - job.start,
        }
        if it.return_logprob:
            self._add_logprobs(meta, it, lo, k1, with_input=first or not incremental)
        obj: dict[str, Any] = {
            "text": _out_text(lo, k1),
            "output_ids": _out_ids(lo, k1),
            "meta_info": meta,
        }
        if job.batch:
            obj["index"] = it.index
        return obj

    def _add_logprobs(
        self, meta: dict[str, Any], it: _Item, lo: int, hi: int, with_input: bool
    ) -> None:
        _ensure_tokens(hi)
        text = it.return_text
        topn = it.top_logprobs_num
        out = [[_LPS[i % 16], _IDS[i], _PIECES[i] if text else None] for i in range(lo, hi)]
        meta["output_token_logprobs"] = out
        meta["output_token_logprobs_length"] = len(out)
        if topn > 0:
            meta["output_top_logprobs"] = [
                [
                    [_LPS[i % 16] - j, _IDS[i] + j * 7, _PIECES[i] if text else None]
                    for j in range(topn)
                ]
                for i in range(lo, hi)
            ]
        if with_input:
            if it.prompt_ids is None:
                words = it.prompt_words or [""]
                it.prompt_ids = [_word_id(w) for w in words]
            ids = it.prompt_ids
            start = it.logprob_start_len
            if start < 0 or start >= len(ids):
                start = max(len(ids) - 1, 0)
            words_ = it.prompt_words

            def piece(p: int) -> str | None:
                if not text:
                    return None
                if words_ is not None and p < len(words_):
                    return words_[p] if p == 0 else " " + words_[p]
                return f"<{ids[p]}>"

            inp: list[list[Any]] = []
            for p in range(start, len(ids)):
                inp.append([None if p == start else -1.0, ids[p], piece(p)])
            meta["input_token_logprobs"] = inp
            if topn > 0:
                meta["input_top_logprobs"] = [
                    None
                    if p == start
                    else [[-1.0 - j, ids[p] + j * 7, piece(p)] for j in range(topn)]
                    for p in range(start, len(ids))
                ]

    # ------------------------------------------------------------------ /generate

    def _parse_generate(self, body: Any) -> tuple[list[_Item], bool]:
        if body is _INVALID or not isinstance(body, dict):
            raise _BadRequest(
                {
                    "object": "error",
                    "message": "Invalid request body: expected a JSON object",
                    "type": "Bad Request",
                    "param": None,
                    "code": 400,
                }
            )
        text = body.get("text")
        input_ids = body.get("input_ids")
        prompts_words: list[list[str] | None] = []
        prompts_ids: list[list[int] | None] = []
        batch: bool
        if text is not None:
            if isinstance(text, str):
                texts = [text]
                batch = False
            elif isinstance(text, list) and all(isinstance(t, str) for t in text):
                texts = text
                batch = True
            else:
                raise _err("text must be a string or a list of strings")
            if not texts or any(t == "" for t in texts):
                raise _err("text cannot be empty.")
            for t in texts:
                prompts_words.append(t.split())
                prompts_ids.append(None)
        elif input_ids is not None:
            if not isinstance(input_ids, list) or not input_ids:
                raise _err("input_ids cannot be empty.")
            if isinstance(input_ids[0], list):
                batch = True
                rows = input_ids
            else:
                batch = False
                rows = [input_ids]
            for row in rows:
                if not isinstance(row, list) or not row:
                    raise _err("input_ids cannot be empty.")
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in row):
                    raise _err("input_ids must contain integers")
                prompts_ids.append(row)
                prompts_words.append(None)
        else:
            raise _err("Either text, input_ids or input_embeds should be provided.")
        nprompts = len(prompts_ids)

        sp_raw = body.get("sampling_params")
        sps: list[dict[str, Any]]
        if sp_raw is None:
            sps = [{}] * nprompts
        elif isinstance(sp_raw, dict):
            sps = [sp_raw] * nprompts
        elif isinstance(sp_raw, list):
            if len(sp_raw) != nprompts or not all(isinstance(s, dict) for s in sp_raw):
                raise _err("sampling_params list length must match the batch size")
            sps = sp_raw
        else:
            raise _BadRequest({"error": "invalid type: sampling_params, expected a map"})
        checked: set[int] = set()
        for sp in sps:
            if id(sp) in checked:
                continue
            checked.add(id(sp))
            for k in sp:
                if k not in _SAMPLING_KEY_SET:
                    raise _BadRequest(
                        {"error": f"unknown field `{k}`, expected one of {_SAMPLING_EXPECTED}"}
                    )
        ns = {_get_int(sp, "n", 1) for sp in sps}
        if len(ns) != 1:
            raise _err("The n parameter must be the same for all requests in a batch.")
        n = ns.pop()
        if n < 1:
            raise _err("n must be at least 1")
        if n > 1:
            batch = True
        total = nprompts * n

        def per_item(key: str, default: Any) -> list[Any]:
            v = body.get(key)
            if v is None:
                return [default] * nprompts
            if isinstance(v, list):
                if n > 1:
                    raise _err(f"{key} must not be a list when n > 1")
                if len(v) != nprompts:
                    raise _err(f"{key} list length must match the batch size")
                return v
            return [v] * nprompts

        return_logprob = per_item("return_logprob", False)
        start_len = per_item("logprob_start_len", -1)
        topn = per_item("top_logprobs_num", 0)
        return_text = bool(body.get("return_text_in_logprobs", False))
        rid = body.get("rid")
        rids: list[str]
        if rid is None:
            rids = [uuid.uuid4().hex for _ in range(total)]
        elif isinstance(rid, str):
            rids = [rid] if total == 1 else [f"{rid}_{i}" for i in range(total)]
        elif isinstance(rid, list):
            if len(rid) != nprompts or not all(isinstance(r, str) for r in rid):
                raise _err("The rid list length must match the batch size")
            if len(set(rid)) != len(rid):
                raise _err("Duplicate request IDs detected within the request.")
            rids = list(rid) if n == 1 else [f"{r}_{j}" for r in rid for j in range(n)]
        else:
            raise _err("rid must be a string or a list of strings")
        for r in rids:
            if r in self._running:
                raise _err(f"Duplicate request ID {r} is already running.")

        items: list[_Item] = []
        default_interval = self.config.stream_interval
        default_max = self.config.default_max_new_tokens
        for p in range(nprompts):
            sp = sps[p]
            max_new = _get_int(sp, "max_new_tokens", default_max)
            if max_new < 0:
                raise _err("max_new_tokens must be at least 0")
            interval = _get_int(sp, "stream_interval", default_interval)
            ignore_eos = bool(sp.get("ignore_eos", False))
            words = prompts_words[p]
            ids = prompts_ids[p]
            plen = max(len(words), 1) if words is not None else len(ids or ())
            for s in range(n):
                it = _Item()
                it.index = p * n + s
                it.sample = s
                it.rid = rids[it.index]
                it.prompt_words = words
                it.prompt_ids = ids
                it.prompt_len = plen
                it.return_logprob = bool(return_logprob[p])
                it.logprob_start_len = int(start_len[p])
                it.top_logprobs_num = int(topn[p])
                it.return_text = return_text
                it.stream_interval = max(interval, 1)
                self._plan(it, max_new, ignore_eos)
                items.append(it)
        return items, batch

    async def _generate(self, req: _Req) -> None:
        items, batch = self._parse_generate(req.json)
        job = _Job(items, batch)
        stream = bool(req.json.get("stream", False))
        self._register(job)
        try:
            if stream:
                await self._generate_stream(req, job)
                return
            await self._run_nonstream(job)
            objs = [self._gen_obj(job, it, -1, it.n_out, it.finish, True) for it in items]
            for o in objs:
                o.pop("index", None)
        finally:
            self._unregister(job)
        await self._respond_json(req, 200, objs if batch else objs[0])

    async def _generate_stream(self, req: _Req, job: _Job) -> None:
        sse = _SSE(req)
        await sse.start()
        first_seen: set[int] = set()

        async def emit(it: _Item, k0: int, k1: int, finish: dict[str, Any] | None) -> bool:
            first = it.index not in first_seen
            first_seen.add(it.index)
            return await sse.data(self._gen_obj(job, it, k0, k1, finish, first))

        await self._run_stream(job, emit)
        await sse.done()

    # ------------------------------------------------------------------ OpenAI endpoints

    def _openai_body(self, req: _Req) -> dict[str, Any]:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid JSON body", 400, "Bad Request")
        return body

    def _openai_items(
        self, body: dict[str, Any], prompt_lens: list[int], max_new: int
    ) -> list[_Item]:
        n = body.get("n")
        n = 1 if n is None else n
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _openai_err("n must be a positive integer")
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 0:
            raise _openai_err("max_tokens must be a non-negative integer")
        ignore_eos = bool(body.get("ignore_eos", False))
        items = []
        base = uuid.uuid4().hex
        for p, plen in enumerate(prompt_lens):
            for s in range(n):
                it = _Item()
                it.index = p * n + s
                it.sample = s
                it.rid = base if it.index == 0 else f"{base}_{it.index}"
                it.prompt_len = plen
                it.stream_interval = self.config.stream_interval
                self._plan(it, max_new, ignore_eos)
                items.append(it)
        return items

    @staticmethod
    def _oai_finish(it: _Item) -> str:
        t = it.finish.get("type")
        return "length" if t == "length" else "abort" if t == "abort" else "stop"

    async def _chat(self, req: _Req) -> None:
        body = self._openai_body(req)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _openai_err("Messages cannot be empty.")
        words = 0
        for m in messages:
            if not isinstance(m, dict):
                raise _openai_err("Each message must be an object")
            content = m.get("content")
            if isinstance(content, str):
                words += len(content.split())
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        words += len(part["text"].split())
        max_new = body.get("max_completion_tokens")
        if max_new is None:
            max_new = body.get("max_tokens")
        if max_new is None:
            max_new = self.config.default_max_new_tokens
        items = self._openai_items(body, [max(words, 1)], max_new)
        await self._openai_run(req, body, items, chat=True)

    async def _completions(self, req: _Req) -> None:
        body = self._openai_body(req)
        prompt = body.get("prompt")
        lens: list[int]
        if isinstance(prompt, str) and prompt:
            lens = [max(len(prompt.split()), 1)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            lens = [max(len(p.split()), 1) for p in prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            lens = [len(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, list) and p for p in prompt):
            lens = [len(p) for p in prompt]
        else:
            raise _openai_err("prompt must be a non-empty string, list of strings or token ids")
        max_new = body.get("max_tokens")
        items = self._openai_items(body, lens, 16 if max_new is None else max_new)
        await self._openai_run(req, body, items, chat=False)

    async def _openai_run(
        self, req: _Req, body: dict[str, Any], items: list[_Item], chat: bool
    ) -> None:
        job = _Job(items, True)
        model = body.get("model") or self.config.served_model_name
        created = int(time.time())
        rid = items[0].rid
        self._register(job)
        try:
            if body.get("stream"):
                await self._openai_stream(req, body, job, chat, model, created, rid)
                return
            await self._run_nonstream(job)
        finally:
            self._unregister(job)
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for it in items:
            completion_tokens += it.n_out
            text = _out_text(0, it.n_out)
            choice: dict[str, Any] = {"index": it.index}
            if chat:
                choice["message"] = {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": None,
                    "tool_calls": None,
                }
            else:
                choice["text"] = text
            choice["logprobs"] = None
            choice["finish_reason"] = self._oai_finish(it)
            choice["matched_stop"] = it.finish.get("matched")
            choices.append(choice)
        prompt_tokens = self._prompt_tokens(items)
        resp = {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        await self._respond_json(req, 200, resp)

    @staticmethod
    def _prompt_tokens(items: list[_Item]) -> int:
        # every prompt is counted once even if it has n samples
        return sum(it.prompt_len for it in items if it.sample == 0)

    async def _openai_stream(
        self,
        req: _Req,
        body: dict[str, Any],
        job: _Job,
        chat: bool,
        model: str,
        created: int,
        rid: str,
    ) -> None:
        sse = _SSE(req)
        await sse.start()
        obj_name = "chat.completion.chunk" if chat else "text_completion"
        started: set[int] = set()

        def chunk(choice: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": rid,
                "object": obj_name,
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": None,
            }

        async def emit(it: _Item, k0: int, k1: int, finish: dict[str, Any] | None) -> bool:
            if chat and it.index not in started:
                started.add(it.index)
                role = {
                    "index": it.index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                    "matched_stop": None,
                }
                if not await sse.data(chunk(role)):
                    return False
            if k1 > k0:
                delta_text = _out_text(k0, k1)
                c: dict[str, Any] = {"index": it.index}
                if chat:
                    c["delta"] = {"content": delta_text}
                else:
                    c["text"] = delta_text
                c["logprobs"] = None
                c["finish_reason"] = None
                c["matched_stop"] = None
                if not await sse.data(chunk(c)):
                    return False
            if finish is not None:
                c = {"index": it.index}
                if chat:
                    c["delta"] = {}
                else:
                    c["text"] = ""
                c["logprobs"] = None
                c["finish_reason"] = self._oai_finish(it)
                c["matched_stop"] = finish.get("matched")
                if not await sse.data(chunk(c)):
                    return False
            return True

        await self._run_stream(job, emit)
        if sse.finished:
            return
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            prompt_tokens = self._prompt_tokens(job.items)
            completion_tokens = sum(it.sent for it in job.items)
            usage_chunk = {
                "id": rid,
                "object": obj_name,
                "created": created,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
            if not await sse.data(usage_chunk):
                return
        await sse.done()


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return _dumps(v)
