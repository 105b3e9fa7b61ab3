"""A fake SGLang server implemented as a pure ASGI 3 application.

No web framework is used: routing is a dict lookup, bodies are parsed with the
stdlib :mod:`json`, and all waiting goes through :mod:`anyio`, so the app runs on
asyncio and trio (e.g. under :class:`httpx.ASGITransport`) as well as behind the
socket server in :mod:`rlinf_http.testing._server`.

Output is deterministic: output token ``i`` has id ``1000 + i`` and text
``" tok{i}"`` (see :meth:`FakeSGLangApp.output_text` / :meth:`FakeSGLangApp.output_ids`).
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from ._admin import _AdminMixin
from ._asgi import (
    _INVALID,
    DropConnection,
    Handler,
    Message,
    Receive,
    Scope,
    Send,
    _as_bytes,
    _BadRequest,
    _dumps,
    _Req,
)
from ._config import FakeConfig
from ._control import _ControlMixin
from ._dataplane import _DataPlaneMixin
from ._faults import FaultRegistry, FaultSpec
from ._generate import _GenerateMixin
from ._openai import _OpenAIMixin
from ._rewards import _RewardsMixin
from ._weights_check import _WeightsCheckMixin

__all__ = [
    "DropConnection",
    "FakeConfig",
    "FakeSGLangApp",
    "FaultRegistry",
    "FaultSpec",
    "Message",
    "Receive",
    "Scope",
    "Send",
]


_DATA_PLANE_PATHS = frozenset(
    {
        "/generate",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/encode",
        "/v1/tokenize",
        "/v1/detokenize",
        "/tokenize",
        "/detokenize",
    }
)


class FakeSGLangApp(
    _GenerateMixin,
    _OpenAIMixin,
    _DataPlaneMixin,
    _ControlMixin,
    _AdminMixin,
    _WeightsCheckMixin,
    _RewardsMixin,
):
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
        request_log: the data-plane requests with their routing key, request id,
            rid, priority, LoRA and serving worker (also ``GET /_fake/requests``).
        paused, weight_version, model_path, served_model_name,
        released_memory_tags, lora_adapters: the live control-plane state;
            :meth:`control_state` (``GET /_fake/state``) has all of it.

    The endpoints are grouped by concern: ``_generate`` (``/generate``),
    ``_openai`` (chat and completions), ``_dataplane`` (embeddings, encode,
    tokenize, LoRA), ``_control`` (pause, weights, memory, loads) and ``_admin``
    (health, info, flush, abort); ``_engine`` holds the shared state.
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        super().__init__(config)
        self._build_routes()
        self._worker_urls: dict[Any, str] = {}
        self._worker_header = (self.config.worker_id or "").encode("latin-1")

    # ------------------------------------------------------------------ ASGI entry

    def _log_request(self, req: _Req, scope: Scope) -> None:
        worker = self.config.worker_id
        if worker is not None:
            req.resp_headers.append((b"x-fake-worker", self._worker_header))
        else:
            server = scope.get("server")
            if server:
                worker = self._worker_urls.get(server)
                if worker is None:
                    host = str(server[0])
                    host = f"[{host}]" if ":" in host else host
                    worker = self._worker_urls[server] = f"http://{host}:{server[1]}"
        body = req.json
        headers = req.headers
        if isinstance(body, dict):
            get = body.get
            fields = (get("rid"), get("priority"), get("lora_path"), get("stream") is True)
        else:
            fields = (None, None, None, False)
        # a tuple now, a dict when read: this runs on every data-plane request
        self._request_log.append(
            (
                next(self._request_seq),
                req.path,
                req.method,
                worker,
                headers.get("x-smg-routing-key"),
                headers.get("x-request-id"),
                *fields,
            )
        )

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
        req.query_string = scope.get("query_string", b"")
        if path in _DATA_PLANE_PATHS:
            self._log_request(req, scope)
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
        self._control_routes()
        self._dataplane_routes()
        self._weights_check_routes()
        self._rewards_routes()
        r["/_fake/requests"] = {"GET": self._fake_requests, "DELETE": self._fake_clear_requests}
