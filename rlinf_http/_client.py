"""``InferenceHTTPClient``: the public surface (typed endpoints, streams, admin).

Each method validates and builds its request in :mod:`rlinf_http._core`, then
calls one of the I/O drivers of :class:`~rlinf_http._base_client.BaseClient`.
The fan-out methods live in :mod:`rlinf_http._fanout` and the rest of the data
plane (completions, embeddings, tokenizer, LoRA) in :mod:`rlinf_http._dataplane`;
the client inherits both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, overload

import anyio
import anyio.abc
import httpx

from ._base_client import NOT_GIVEN, BaseClient, TimeoutTypes
from ._control import ControlMixin
from ._core import plans
from ._core.dataplane import (
    steering_fields,
    with_routing_key,
)
from ._core.requests import (
    DEFAULT_CHAT_MODEL,
    Operation,
    build_chat_completion,
    build_generate,
    build_health,
    build_post,
    check_timeout,
)
from ._core.retry import RetryPolicy
from ._core.streams import ChatStreamParser, GenerateStreamChunk, GenerateStreamParser, StreamMode
from ._dataplane import DataPlaneMixin
from ._endpoints._async.fleet import AsyncFleetAccess
from ._endpoints._sync.fleet import FleetAccess
from ._errors import InvalidRequestError
from ._fanout import AsCompleted, Messages, OneSample, Sampling
from ._fleet._fleet import register_client_class
from ._streaming import AsyncStream, Stream
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    FlushCacheResult,
    GenerateOutput,
    ModelInfo,
    ModelList,
    Readiness,
    ServerInfo,
    Worker,
    WorkerList,
)

__all__ = ["AsCompleted", "InferenceHTTPClient"]

Prompt = str | Sequence[str] | None
InputIds = Sequence[int] | Sequence[Sequence[int]] | None

_SEED_POST_RETRY_STATUSES = frozenset({500, 502, 503, 504})


def _check_stream_mode(mode: object) -> StreamMode:
    if mode == "auto" or mode == "cumulative" or mode == "incremental":
        return mode
    raise InvalidRequestError(
        f"stream_mode must be 'auto', 'cumulative' or 'incremental', got {mode!r}"
    )


class InferenceHTTPClient(AsyncFleetAccess, FleetAccess, ControlMixin, DataPlaneMixin, BaseClient):
    """A typed client for an sglang router or a single sglang server.

    A drop-in for RLinf's ``InferenceHTTPClient``: the same constructor, methods
    and semantics, returning typed models instead of dicts (models still support
    ``out["text"]``).

    - Sync methods need no set-up: a pooled, thread-safe session is created on
      first use. Async methods share one lazily created ``httpx.AsyncClient``.
      ``with`` / ``close()`` and ``async with`` / ``aclose()`` release the
      sockets; using the client afterwards opens a fresh session.
    - Only connecting is bounded (``connect_timeout``, 10 s by default); reads,
      writes and waits for a pooled connection are never capped, since a
      generation can take many minutes. Put deadlines around calls with
      ``asyncio.wait_for`` / ``anyio.fail_after``; a cancelled call leaves the
      client usable. A per-call ``timeout=`` overrides this.
    - Environment proxies (``HTTP_PROXY``...) are ignored.
    - Failures raise the typed errors of :mod:`rlinf_http` (all
      :class:`~rlinf_http.RLinfHTTPError`); transient ones are retried by one
      :class:`~rlinf_http.RetryPolicy` (``max_retries`` times, 2 by default).
    - It can be pickled (Ray actors, multiprocessing) and survives ``os.fork()``:
      the copy opens its own sessions.

    Args:
        base_url: the router or server URL, e.g. ``http://127.0.0.1:30000``.
        connect_timeout: seconds allowed to open a TCP connection (``None``: no bound).
        max_connections: the cap on open (and keep-alive) connections.
        max_retries: retries of the typed calls (default: ``retry_policy``'s, else 2;
            ``post`` keeps its own default 0).
        headers: extra headers sent with every request.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        http_client: an ``httpx.Client`` for sync calls, used as given (its
            transport, hooks, headers and timeouts apply; it is not closed here).
        async_http_client: the same for async calls.
        retry_policy: the full retry policy (``max_retries`` overrides its count).
        health_timeout: the bound on ``health()`` calls, in seconds.
        transport: ``"auto"`` or ``"rlinf"`` (rlinf-http's fast HTTP/1.1 transports:
            blocking sockets for sync calls, asyncio's or trio's for async ones)
            or ``"httpx"`` (httpx's own).
        log_bodies: include request bodies in the ``rlinf_http`` debug log lines.
    """

    def __enter__(self) -> InferenceHTTPClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> InferenceHTTPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"InferenceHTTPClient({self.base_url!r})"

    # -- /generate -------------------------------------------------------------------

    @overload
    def generate(
        self,
        prompt: str,
        input_ids: None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    def generate(
        self,
        prompt: None = None,
        *,
        input_ids: Sequence[int],
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    def generate(
        self,
        prompt: str | None = None,
        input_ids: Sequence[int] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput | list[GenerateOutput]: ...

    @overload
    def generate(
        self,
        prompt: Prompt = None,
        input_ids: InputIds = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[True],
        stream_mode: StreamMode = "auto",
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> Stream[GenerateStreamChunk]: ...

    @overload
    def generate(
        self,
        prompt: Sequence[str] | None = None,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> list[GenerateOutput]: ...

    def generate(
        self,
        prompt: Prompt = None,
        input_ids: InputIds = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: bool = False,
        stream_mode: StreamMode = "auto",
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput | list[GenerateOutput] | Stream[GenerateStreamChunk]:
        """``POST /generate`` (sglang's native API).

        Give exactly one of ``prompt`` (a string, or a list of strings for a batch)
        or ``input_ids`` (a list of token ids, or a list of lists for a batch).
        Extra keyword arguments are sent as top-level fields
        (``top_logprobs_num``, ``logprob_start_len``...); a sampling parameter
        given as a keyword raises :class:`~rlinf_http.InvalidRequestError` (it
        belongs in ``sampling_params``). ``rid`` is the request id (generated
        when absent, so the request can be aborted; for a batch a prefix or one
        per prompt); ``routing_key`` is sent as ``X-SMG-Routing-Key``;
        ``priority`` and ``lora_path`` (a loaded adapter's name) are typed
        fields. A batch, or ``n > 1`` samples,
        returns a list in input order (prompt-major). The sglang router refuses
        text batches (HTTP 422; 0.3.2 passes 2-D ``input_ids`` and ``n > 1``):
        send batches to a server, or use :meth:`generate_many` to fan single
        prompts out.

        With ``stream=True`` it returns a :class:`Stream` of
        :class:`GenerateStreamChunk` (``chunk.text`` so far, ``chunk.delta``
        new), whether the server streams cumulatively (the default) or
        incrementally; ``stream_mode`` fixes the mode instead of detecting it.
        Retries happen only before the stream's first byte.
        """
        op = with_routing_key(
            build_generate(
                prompt,
                input_ids,
                sampling_params,
                return_logprob,
                extra,
                stream=stream,
                rid=rid,
                priority=priority,
                lora_path=lora_path,
            ),
            routing_key,
        )
        if stream:
            mode = _check_stream_mode(stream_mode)
            parser = functools.partial(GenerateStreamParser, mode)
            return self._stream(op, parser, timeout, self._policy(max_retries))
        return self._send(op, timeout=timeout, retry=self._policy(max_retries))

    @overload
    async def async_generate(
        self,
        prompt: str,
        input_ids: None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    async def async_generate(
        self,
        prompt: None = None,
        *,
        input_ids: Sequence[int],
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    async def async_generate(
        self,
        prompt: str | None = None,
        input_ids: Sequence[int] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput | list[GenerateOutput]: ...

    @overload
    async def async_generate(
        self,
        prompt: Prompt = None,
        input_ids: InputIds = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[True],
        stream_mode: StreamMode = "auto",
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> AsyncStream[GenerateStreamChunk]: ...

    @overload
    async def async_generate(
        self,
        prompt: Sequence[str] | None = None,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> list[GenerateOutput]: ...

    async def async_generate(
        self,
        prompt: Prompt = None,
        input_ids: InputIds = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: bool = False,
        stream_mode: StreamMode = "auto",
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
        **extra: Any,
    ) -> GenerateOutput | list[GenerateOutput] | AsyncStream[GenerateStreamChunk]:
        """Async :meth:`generate` (``stream=True`` returns an :class:`AsyncStream`)."""
        op = with_routing_key(
            build_generate(
                prompt,
                input_ids,
                sampling_params,
                return_logprob,
                extra,
                stream=stream,
                rid=rid,
                priority=priority,
                lora_path=lora_path,
            ),
            routing_key,
        )
        if stream:
            mode = _check_stream_mode(stream_mode)
            parser = functools.partial(GenerateStreamParser, mode)
            return await self._astream(op, parser, timeout, self._policy(max_retries))
        return await self._asend(op, timeout=timeout, retry=self._policy(max_retries))

    # -- /v1/chat/completions -----------------------------------------------------------

    @overload
    def chat_completion(
        self,
        messages: Messages,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ChatCompletion: ...

    @overload
    def chat_completion(
        self,
        messages: Messages,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Stream[ChatCompletionChunk]: ...

    def chat_completion(
        self,
        messages: Messages,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """``POST /v1/chat/completions``; ``kwargs`` are sent as JSON fields.

        OpenAI fields (``temperature``, ``max_tokens``, ``stream_options``...) and
        sglang extras (``top_k``, ``regex``, ``chat_template_kwargs``...) alike.
        The router accepts any ``model`` string. ``stream=True`` returns a
        :class:`Stream` of :class:`ChatCompletionChunk`. sglang-native names
        with an OpenAI spelling (``max_new_tokens``) raise
        :class:`~rlinf_http.InvalidRequestError`. ``routing_key`` is sent as
        ``X-SMG-Routing-Key``; ``priority`` and ``lora_path`` are typed fields.
        """
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path)
        op = with_routing_key(
            build_chat_completion(messages, model, fields, stream=stream), routing_key
        )
        if stream:
            return self._stream(op, ChatStreamParser, timeout, self._policy(max_retries))
        return self._send(op, timeout=timeout, retry=self._policy(max_retries))

    @overload
    async def async_chat_completion(
        self,
        messages: Messages,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ChatCompletion: ...

    @overload
    async def async_chat_completion(
        self,
        messages: Messages,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsyncStream[ChatCompletionChunk]: ...

    async def async_chat_completion(
        self,
        messages: Messages,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """Async :meth:`chat_completion`."""
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path)
        op = with_routing_key(
            build_chat_completion(messages, model, fields, stream=stream), routing_key
        )
        if stream:
            return await self._astream(op, ChatStreamParser, timeout, self._policy(max_retries))
        return await self._asend(op, timeout=timeout, retry=self._policy(max_retries))

    # -- /health -----------------------------------------------------------------------

    def health(self) -> bool:
        """``GET /health`` -> ``True`` on 2xx. Never raises; bounded by ``health_timeout``."""
        try:
            return self._send(build_health(), timeout=self.health_timeout, retry=self._policy(0))
        except Exception:
            return False

    async def async_health(self) -> bool:
        """Async :meth:`health`. Never raises (a cancelled caller still sees its cancel)."""
        with anyio.move_on_after(self.health_timeout):
            try:
                return await self._asend(
                    build_health(), timeout=self.health_timeout, retry=self._policy(0)
                )
            except Exception:
                pass
        return False

    # -- generic POST (the RLinf signature) ------------------------------------------------

    def _post_op(
        self,
        path: str,
        body: Any,
        msgpack: bool,
        timeout_s: float | None,
        max_retries: int,
        retry_backoff_s: float,
    ) -> tuple[Operation[Any], TimeoutTypes, RetryPolicy]:
        op = build_post(path, body, msgpack=msgpack)
        timeout: TimeoutTypes = NOT_GIVEN
        if timeout_s is not None:
            timeout = httpx.Timeout(
                check_timeout(timeout_s, "timeout_s"), connect=self.connect_timeout
            )
        if isinstance(retry_backoff_s, bool) or not isinstance(retry_backoff_s, (int, float)):
            raise InvalidRequestError(f"retry_backoff_s must be a number, got {retry_backoff_s!r}")
        policy = RetryPolicy(
            max_retries=max_retries,
            retry_statuses=_SEED_POST_RETRY_STATUSES,
            retry_timeouts=True,  # the RLinf client retried every failure, timeouts too
            backoff="linear",
            initial_delay=float(retry_backoff_s),
            max_delay=float(retry_backoff_s) * (max_retries + 1)
            if isinstance(max_retries, int) and max_retries > 0
            else float(retry_backoff_s),
            jitter=0.0,
            max_retry_after=self.retry_policy.max_retry_after,
        )
        return op, timeout, policy

    def post(
        self,
        path: str,
        body: Any,
        *,
        msgpack: bool = False,
        timeout_s: float | None = None,
        max_retries: int = 0,
        retry_backoff_s: float = 0.0,
    ) -> Any:
        """``POST <base_url><path>`` and return the decoded body (the RLinf signature).

        Args:
            path: the path below the base URL (``"/v1/actions/generations"``).
            body: JSON-serialisable data, or with ``msgpack=True`` anything the
                sglang numpy codec packs (numpy arrays; torch tensors are converted).
            msgpack: send and expect ``application/msgpack`` (needs the
                ``rlinf-http[msgpack]`` extra).
            timeout_s: bound on each request's read, write and pool wait (connect
                stays bounded by ``connect_timeout``); ``None`` waits forever.
            max_retries: retries on connection failures, timeouts and 500/502/503/504.
            retry_backoff_s: linear backoff: waits ``retry_backoff_s * (n + 1)``
                before retry ``n + 1`` (a ``Retry-After`` header wins).

        A non-2xx answer raises an :class:`~rlinf_http.APIStatusError` subclass,
        a ``RuntimeError`` whose message reads ``POST <url> failed: status=...,
        body=...`` as the RLinf client's did. An empty 2xx body returns ``None``.
        """
        op, timeout, policy = self._post_op(
            path, body, msgpack, timeout_s, max_retries, retry_backoff_s
        )
        return self._send(op, timeout=timeout, retry=policy)

    async def async_post(
        self,
        path: str,
        body: Any,
        *,
        msgpack: bool = False,
        timeout_s: float | None = None,
        max_retries: int = 0,
        retry_backoff_s: float = 0.0,
    ) -> Any:
        """Async :meth:`post`."""
        op, timeout, policy = self._post_op(
            path, body, msgpack, timeout_s, max_retries, retry_backoff_s
        )
        return await self._asend(op, timeout=timeout, retry=policy)

    # -- server administration ---------------------------------------------------------------

    def server_info(self) -> ServerInfo:
        """``GET /server_info`` (falls back to ``/get_server_info`` on older servers)."""
        return self._run(plans.server_info_plan())

    async def async_server_info(self) -> ServerInfo:
        """Async :meth:`server_info`."""
        return await self._arun(plans.server_info_plan())

    def model_info(self) -> ModelInfo:
        """``GET /model_info`` (falls back to ``/get_model_info``)."""
        return self._run(plans.model_info_plan())

    async def async_model_info(self) -> ModelInfo:
        """Async :meth:`model_info`."""
        return await self._arun(plans.model_info_plan())

    def models(self) -> ModelList:
        """``GET /v1/models``."""
        return self._run(plans.models_plan())

    async def async_models(self) -> ModelList:
        """Async :meth:`models`."""
        return await self._arun(plans.models_plan())

    def flush_cache(self) -> FlushCacheResult:
        """``POST /flush_cache`` (server or router); ``flushed=False`` if it was refused."""
        return self._run(plans.flush_cache_plan())

    async def async_flush_cache(self) -> FlushCacheResult:
        """Async :meth:`flush_cache`."""
        return await self._arun(plans.flush_cache_plan())

    def abort_request(self, rid: str = "", *, abort_all: bool = False) -> None:
        """``POST /abort_request``: abort generation ``rid`` (servers only, not the router)."""
        self._run(plans.abort_request_plan(rid, abort_all))

    async def async_abort_request(self, rid: str = "", *, abort_all: bool = False) -> None:
        """Async :meth:`abort_request`."""
        await self._arun(plans.abort_request_plan(rid, abort_all))

    def health_generate(self, timeout: float = 30.0) -> bool:
        """``GET /health_generate``: ``True`` on 2xx, ``False`` on any failure.

        A server runs a 1-token generation; the router answers from its worker
        registry (is any worker healthy).
        """
        return self._run(plans.health_generate_plan(timeout))

    async def async_health_generate(self, timeout: float = 30.0) -> bool:
        """Async :meth:`health_generate`."""
        return await self._arun(plans.health_generate_plan(timeout))

    # -- router administration ----------------------------------------------------------------

    def list_workers(self) -> WorkerList:
        """``GET /workers`` of the router."""
        return self._run(plans.list_workers_plan())

    async def async_list_workers(self) -> WorkerList:
        """Async :meth:`list_workers`."""
        return await self._arun(plans.list_workers_plan())

    def add_worker(
        self,
        url: str,
        worker_type: str = "regular",
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        **fields: Any,
    ) -> Worker:
        """Register a worker with the router and wait until it is healthy.

        Polls ``GET /workers/{id}`` (404 means "not yet"); raises
        :class:`~rlinf_http.WorkerRegistrationError` if the router reports the
        registration failed and :class:`~rlinf_http.APITimeoutError` after
        ``timeout`` seconds. ``fields`` go into the request (``model_id``,
        ``priority``, ``labels``...). A trailing slash on ``url`` is removed.
        """
        return self._run(plans.add_worker_plan(url, worker_type, fields, timeout, poll_interval))

    async def async_add_worker(
        self,
        url: str,
        worker_type: str = "regular",
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        **fields: Any,
    ) -> Worker:
        """Async :meth:`add_worker`."""
        return await self._arun(
            plans.add_worker_plan(url, worker_type, fields, timeout, poll_interval)
        )

    def remove_worker(
        self,
        worker_id: str | None = None,
        *,
        url: str | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.2,
    ) -> bool:
        """Deregister a worker (by id, or by URL) and wait until it is gone.

        Returns ``False`` if the router had no such worker.
        """
        return self._run(plans.remove_worker_plan(worker_id, url, timeout, poll_interval))

    async def async_remove_worker(
        self,
        worker_id: str | None = None,
        *,
        url: str | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.2,
    ) -> bool:
        """Async :meth:`remove_worker`."""
        return await self._arun(plans.remove_worker_plan(worker_id, url, timeout, poll_interval))

    def readiness(self) -> Readiness:
        """``GET /readiness`` of the router (a 503 is returned as not ready)."""
        return self._run(plans.readiness_plan())

    async def async_readiness(self) -> Readiness:
        """Async :meth:`readiness`."""
        return await self._arun(plans.readiness_plan())

    def wait_until_ready(self, timeout: float = 300.0, poll_interval: float = 0.5) -> str:
        """Wait until the target serves: ``/readiness`` on a router, ``/health`` on a server.

        Returns ``"router"`` or ``"server"``; raises
        :class:`~rlinf_http.APITimeoutError` after ``timeout`` seconds.
        """
        return self._run(plans.wait_until_ready_plan(timeout, poll_interval))

    async def async_wait_until_ready(
        self, timeout: float = 300.0, poll_interval: float = 0.5
    ) -> str:
        """Async :meth:`wait_until_ready`."""
        return await self._arun(plans.wait_until_ready_plan(timeout, poll_interval))


register_client_class(InferenceHTTPClient)
