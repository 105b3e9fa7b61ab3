"""``InferenceHTTPClient``: thin sync and async facades over one sans-I/O core.

Everything but sending bytes and sleeping happens in :mod:`rlinf_http._core`:
the facade methods build an :class:`~rlinf_http._core.requests.Operation`, hand it
to :meth:`_send` / :meth:`_asend`, which only do I/O and ask the
:class:`~rlinf_http._core.retry.RetryPolicy` what to do after each attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import httpx

from ._core.requests import (
    DEFAULT_CHAT_MODEL,
    Operation,
    build_chat_completion,
    build_generate,
    build_health,
    build_post,
    default_headers,
    normalize_base_url,
)
from ._core.responses import (
    RawResponse,
    connection_error,
    is_retryable_transport_error,
    status_error,
)
from ._core.retry import RetryPolicy
from ._errors import InvalidRequestError
from .models import ChatCompletion, ChatMessage, GenerateOutput, SamplingParams

__all__ = ["InferenceHTTPClient"]

T = TypeVar("T")

logger = logging.getLogger("rlinf_http")


class _Unset:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _Unset()

#: What a per-call ``timeout=`` accepts: seconds for every phase, an ``httpx.Timeout``,
#: or ``None`` for no timeout at all.
TimeoutTypes = float | httpx.Timeout | None

_SEED_POST_RETRY_STATUSES = frozenset({500, 502, 503, 504})

_live_clients: weakref.WeakSet[InferenceHTTPClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child must never reuse the parent's sockets: forget the sessions
    # (without closing them, which would shut the parent's connections down).
    for client in list(_live_clients):
        client._forget_sessions()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _loop_token() -> object:
    """An identity for the running event loop (asyncio loop or trio run)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    raise RuntimeError("no running event loop")  # pragma: no cover


class InferenceHTTPClient:
    """A typed client for an sglang router or a single sglang server.

    Drop-in for RLinf's ``InferenceHTTPClient``: the same constructor, methods
    and semantics, returning typed models instead of dicts (models still support
    ``out["text"]``).

    - Sync methods need no set-up: a pooled, thread-safe ``httpx.Client`` is
      created on first use. Async methods share one lazily created
      ``httpx.AsyncClient``. ``with`` / ``close()`` and ``async with`` /
      ``aclose()`` release the sockets; using the client afterwards creates a
      fresh session.
    - Only connecting is bounded (``connect_timeout``, 10 s by default); reads,
      writes and waits for a pooled connection are never capped, since a
      generation can take many minutes. Put deadlines around calls with
      ``asyncio.wait_for`` / ``anyio.fail_after``; a cancelled call leaves the
      client usable. A per-call ``timeout=`` overrides this.
    - Environment proxies (``HTTP_PROXY``...) are ignored.
    - Failures raise the typed errors of :mod:`rlinf_http` (all
      :class:`RLinfHTTPError`); transient ones are retried by one
      :class:`RetryPolicy` (``max_retries`` times, 2 by default).

    Args:
        base_url: the router or server URL, e.g. ``http://127.0.0.1:30000``.
        connect_timeout: seconds allowed to open a TCP connection.
        max_connections: the cap on open connections (and keep-alive ones).
        max_retries: default retries for ``generate``, ``chat_completion`` and
            the other typed calls (``post`` keeps its own ``max_retries=0``).
        headers: extra headers sent with every request.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        http_client: an ``httpx.Client`` to use for sync calls, as given (its
            transport, hooks, headers and timeouts apply; it is not closed here).
        async_http_client: the same for async calls.
        retry_policy: the full retry policy (``max_retries`` overrides its count).
        health_timeout: the bound on ``health()`` calls, in seconds.
    """

    def __init__(
        self,
        base_url: str,
        connect_timeout: float | None = 10.0,
        max_connections: int = 16384,
        *,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        retry_policy: RetryPolicy | None = None,
        health_timeout: float = 5.0,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        if connect_timeout is not None and (
            not isinstance(connect_timeout, (int, float)) or connect_timeout <= 0
        ):
            raise InvalidRequestError(
                f"connect_timeout must be a positive number or None, got {connect_timeout!r}"
            )
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidRequestError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise InvalidRequestError(f"max_connections must be >= 1, got {max_connections}")
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise InvalidRequestError("http_client must be an httpx.Client")
        if async_http_client is not None and not isinstance(async_http_client, httpx.AsyncClient):
            raise InvalidRequestError("async_http_client must be an httpx.AsyncClient")
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.health_timeout = float(health_timeout)
        self.retry_policy = (retry_policy or RetryPolicy()).with_max_retries(max_retries)
        self._headers = default_headers(api_key, headers)
        self._timeout = httpx.Timeout(connect=connect_timeout, read=None, write=None, pool=None)
        self._user_client = http_client
        self._user_async_client = async_http_client
        self._init_runtime_state()
        _live_clients.add(self)

    # -- session management --------------------------------------------------------

    def _init_runtime_state(self) -> None:
        self._sync_client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._async_loop: object = None
        self._lock = threading.Lock()
        self._urls: dict[str, tuple[httpx.URL, str]] = {}
        self._merged_headers: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def _forget_sessions(self) -> None:
        self._sync_client = None
        self._async_client = None
        self._async_loop = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        if self._user_client is not None or self._user_async_client is not None:
            raise TypeError(
                "an InferenceHTTPClient built with http_client/async_http_client cannot be "
                "pickled; pass connection settings instead"
            )
        state = self.__dict__.copy()
        for key in ("_sync_client", "_async_client", "_async_loop", "_lock", "_urls"):
            state.pop(key, None)
        state.pop("_merged_headers", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime_state()
        _live_clients.add(self)

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
            keepalive_expiry=60.0,
        )

    def _get_sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        client = self._sync_client
        if client is None:
            with self._lock:
                client = self._sync_client
                if client is None:
                    client = httpx.Client(
                        timeout=self._timeout,
                        limits=self._limits(),
                        trust_env=False,
                        follow_redirects=False,
                    )
                    self._sync_client = client
        return client

    def _get_async_client(self) -> httpx.AsyncClient:
        if self._user_async_client is not None:
            return self._user_async_client
        client = self._async_client
        token = _loop_token()
        if client is None or self._async_loop is not token:
            # First use, or the session belongs to an event loop that is gone
            # (e.g. a second asyncio.run): start a fresh one on this loop.
            client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=self._limits(),
                trust_env=False,
                follow_redirects=False,
            )
            self._async_client = client
            self._async_loop = token
        return client

    def close(self) -> None:
        """Close the sync session (a later sync call opens a new one)."""
        client, self._sync_client = self._sync_client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async and sync sessions (later calls open new ones)."""
        client, self._async_client = self._async_client, None
        loop, self._async_loop = self._async_loop, None
        self.close()
        if client is not None:
            try:
                same_loop = loop is _loop_token()
            except RuntimeError:  # pragma: no cover - aclose is always awaited in a loop
                same_loop = False
            if same_loop:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

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

    # -- the one request path: build, send, retry ------------------------------------

    def _url(self, path: str) -> tuple[httpx.URL, str]:
        cached = self._urls.get(path)
        if cached is None:
            text = self.base_url + path
            cached = (httpx.URL(text), text)
            self._urls[path] = cached
        return cached

    def _headers_for(self, op_headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
        merged = self._merged_headers.get(op_headers)
        if merged is None:
            merged = {**self._headers, **dict(op_headers)}
            self._merged_headers[op_headers] = merged
        return merged

    def _timeout_for(self, timeout: TimeoutTypes | _Unset) -> httpx.Timeout:
        if timeout is NOT_GIVEN:
            return self._timeout
        if timeout is None or isinstance(timeout, (int, float)):
            return httpx.Timeout(timeout)
        if isinstance(timeout, httpx.Timeout):
            return timeout
        raise InvalidRequestError(
            f"timeout must be a number, an httpx.Timeout or None, got {timeout!r}"
        )

    def _build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        op: Operation[Any],
        timeout: TimeoutTypes | _Unset,
        user_client: bool,
    ) -> tuple[httpx.Request, str]:
        url, url_text = self._url(op.path)
        headers = self._headers_for(op.headers)
        if user_client:
            # A client given by the user keeps its own headers, cookies and timeouts.
            request = client.build_request(
                op.method,
                url,
                content=op.content,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is NOT_GIVEN else timeout,  # type: ignore[arg-type]
            )
        else:
            request = httpx.Request(
                op.method,
                url,
                headers=headers,
                content=op.content,
                extensions={"timeout": self._timeout_for(timeout).as_dict()},
            )
        return request, url_text

    @staticmethod
    def _log(request: httpx.Request, status: int | str, started: float) -> None:
        logger.debug(
            "%s %s -> %s in %.1f ms",
            request.method,
            request.url,
            status,
            (time.perf_counter() - started) * 1000.0,
        )

    def _send(
        self,
        op: Operation[T],
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        retry: RetryPolicy | None = None,
    ) -> T:
        client = self._get_sync_client()
        request, url = self._build_request(client, op, timeout, self._user_client is not None)
        policy = retry or self.retry_policy
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                response = client.send(request, stream=True)
            except httpx.TransportError as exc:
                self._log(request, type(exc).__name__, started)
                delay = (
                    policy.delay_after_connection_error(retries)
                    if is_retryable_transport_error(exc)
                    else None
                )
                if delay is None:
                    raise connection_error(exc, op.method, url) from exc
            else:
                try:
                    content = response.read()
                except httpx.TransportError as exc:
                    raise connection_error(exc, op.method, url) from exc
                finally:
                    response.close()
                self._log(request, response.status_code, started)
                raw = RawResponse(op.method, url, response.status_code, response.headers, content)
                if raw.is_success:
                    return op.parse(raw)
                delay = policy.delay_after_status(retries, raw.status_code, raw.headers)
                if delay is None:
                    raise status_error(raw)
            retries += 1
            logger.info("retrying %s %s in %.2f s (retry %d)", op.method, url, delay, retries)
            time.sleep(delay)

    async def _asend(
        self,
        op: Operation[T],
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        retry: RetryPolicy | None = None,
    ) -> T:
        client = self._get_async_client()
        request, url = self._build_request(client, op, timeout, self._user_async_client is not None)
        policy = retry or self.retry_policy
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                self._log(request, type(exc).__name__, started)
                delay = (
                    policy.delay_after_connection_error(retries)
                    if is_retryable_transport_error(exc)
                    else None
                )
                if delay is None:
                    raise connection_error(exc, op.method, url) from exc
            else:
                try:
                    content = await response.aread()
                except httpx.TransportError as exc:
                    raise connection_error(exc, op.method, url) from exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
                self._log(request, response.status_code, started)
                raw = RawResponse(op.method, url, response.status_code, response.headers, content)
                if raw.is_success:
                    return op.parse(raw)
                delay = policy.delay_after_status(retries, raw.status_code, raw.headers)
                if delay is None:
                    raise status_error(raw)
            retries += 1
            logger.info("retrying %s %s in %.2f s (retry %d)", op.method, url, delay, retries)
            await anyio.sleep(delay)

    def _policy(self, max_retries: int | None) -> RetryPolicy:
        return self.retry_policy.with_max_retries(max_retries)

    # -- /generate -------------------------------------------------------------------

    @overload
    def generate(
        self,
        prompt: str,
        input_ids: None = None,
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    def generate(
        self,
        prompt: None = None,
        *,
        input_ids: Sequence[int],
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    def generate(
        self,
        prompt: Sequence[str] | None = None,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> list[GenerateOutput]: ...

    def generate(
        self,
        prompt: str | Sequence[str] | None = None,
        input_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> GenerateOutput | list[GenerateOutput]:
        """``POST /generate`` (sglang's native API).

        Give exactly one of ``prompt`` (a string, or a list of strings for a batch)
        or ``input_ids`` (a list of token ids, or a list of lists for a batch).
        Extra keyword arguments are sent as top-level fields (``rid``,
        ``top_logprobs_num``, ``lora_path``...). A batch, or ``n > 1`` samples,
        returns a list in input order (prompt-major); the sglang router refuses
        batches (HTTP 422), so send batches to a server or fan out single prompts.
        """
        op = build_generate(prompt, input_ids, sampling_params, return_logprob, extra)
        return self._send(op, timeout=timeout, retry=self._policy(max_retries))

    @overload
    async def async_generate(
        self,
        prompt: str,
        input_ids: None = None,
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    async def async_generate(
        self,
        prompt: None = None,
        *,
        input_ids: Sequence[int],
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> GenerateOutput: ...

    @overload
    async def async_generate(
        self,
        prompt: Sequence[str] | None = None,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> list[GenerateOutput]: ...

    async def async_generate(
        self,
        prompt: str | Sequence[str] | None = None,
        input_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        sampling_params: Mapping[str, Any] | SamplingParams | None = None,
        return_logprob: bool = False,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **extra: Any,
    ) -> GenerateOutput | list[GenerateOutput]:
        """Async :meth:`generate`."""
        op = build_generate(prompt, input_ids, sampling_params, return_logprob, extra)
        return await self._asend(op, timeout=timeout, retry=self._policy(max_retries))

    # -- /v1/chat/completions -----------------------------------------------------------

    def chat_completion(
        self,
        messages: Sequence[Mapping[str, Any] | ChatMessage],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> ChatCompletion:
        """``POST /v1/chat/completions``; ``kwargs`` are sent as JSON fields.

        OpenAI fields (``temperature``, ``max_tokens``...) and sglang extras
        (``top_k``, ``regex``, ``chat_template_kwargs``...) alike. The router
        accepts any ``model`` string.
        """
        op = build_chat_completion(messages, model, kwargs)
        return self._send(op, timeout=timeout, retry=self._policy(max_retries))

    async def async_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any] | ChatMessage],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> ChatCompletion:
        """Async :meth:`chat_completion`."""
        op = build_chat_completion(messages, model, kwargs)
        return await self._asend(op, timeout=timeout, retry=self._policy(max_retries))

    # -- /health -----------------------------------------------------------------------

    def health(self) -> bool:
        """``GET /health`` -> ``True`` on 2xx. Never raises; bounded by ``health_timeout``."""
        try:
            return self._send(build_health(), timeout=self.health_timeout, retry=self._policy(0))
        except Exception as exc:
            logger.debug("health check of %s failed: %r", self.base_url, exc)
            return False

    async def async_health(self) -> bool:
        """Async :meth:`health`. Never raises (except cancellation of the caller)."""
        with anyio.move_on_after(self.health_timeout):
            try:
                return await self._asend(
                    build_health(), timeout=self.health_timeout, retry=self._policy(0)
                )
            except Exception as exc:
                logger.debug("health check of %s failed: %r", self.base_url, exc)
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
    ) -> tuple[Operation[Any], TimeoutTypes | _Unset, RetryPolicy]:
        op = build_post(path, body, msgpack=msgpack)
        timeout: TimeoutTypes | _Unset = NOT_GIVEN
        if timeout_s is not None:
            if not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
                raise InvalidRequestError(f"timeout_s must be a positive number, got {timeout_s!r}")
            timeout = httpx.Timeout(timeout_s, connect=self.connect_timeout)
        if not isinstance(retry_backoff_s, (int, float)) or retry_backoff_s < 0:
            raise InvalidRequestError(f"retry_backoff_s must be >= 0, got {retry_backoff_s!r}")
        policy = RetryPolicy(
            max_retries=max_retries,
            retry_statuses=_SEED_POST_RETRY_STATUSES,
            backoff="linear",
            initial_delay=float(retry_backoff_s),
            max_delay=float(retry_backoff_s) * (max_retries + 1) if max_retries > 0 else 0.0,
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
        """``POST <base_url><path>`` and return the decoded body.

        Args:
            path: the path below the base URL (``"/v1/actions/generations"``).
            body: JSON-serialisable data, or with ``msgpack=True`` anything the
                sglang numpy codec packs (numpy arrays; torch tensors are converted).
            msgpack: send and expect ``application/msgpack`` (needs the
                ``rlinf-http[msgpack]`` extra).
            timeout_s: bound on reading the response (connect stays bounded by
                ``connect_timeout``); ``None`` waits forever.
            max_retries: retries on connection failures and 500/502/503/504.
            retry_backoff_s: linear backoff: waits ``retry_backoff_s * (n + 1)``
                before retry ``n + 1``.

        Raises an :class:`APIStatusError` subclass (a ``RuntimeError``) on a non-2xx
        answer, as ``RuntimeError("POST <url> failed: status=..., body=...")``.
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
