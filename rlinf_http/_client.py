"""``InferenceHTTPClient``: the public client, composed of the endpoint classes.

Every call is written once, async, in :mod:`rlinf_http._endpoints._async` (one
small class per concern); the sync classes in :mod:`rlinf_http._endpoints._sync`
are generated from them by ``scripts/unasync.py``. Each holds only the
client's :class:`~rlinf_http._driver.Driver` (``self._driver``: options,
sessions and I/O). This module assembles them and adds construction, copies,
context managers, pickling and ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx
from typing_extensions import Self

from ._core.retry import RetryPolicy
from ._driver import Driver
from ._endpoints._async.admin import AsyncAdmin
from ._endpoints._async.chat import AsyncChat
from ._endpoints._async.completions import AsyncCompletions
from ._endpoints._async.control import AsyncControl
from ._endpoints._async.embeddings import AsyncEmbeddings
from ._endpoints._async.fanout import AsyncFanOut
from ._endpoints._async.fleet import AsyncFleetAccess
from ._endpoints._async.generate import AsyncGenerate
from ._endpoints._async.lora import AsyncLora
from ._endpoints._async.post import AsyncPost
from ._endpoints._async.rewards import AsyncRewards
from ._endpoints._async.rollout import AsyncRollout
from ._endpoints._async.router import AsyncRouter
from ._endpoints._async.tokenizer import AsyncTokenizer
from ._endpoints._async.weights import AsyncWeights
from ._endpoints._sync.admin import Admin
from ._endpoints._sync.chat import Chat
from ._endpoints._sync.completions import Completions
from ._endpoints._sync.control import Control
from ._endpoints._sync.embeddings import Embeddings
from ._endpoints._sync.fanout import FanOut
from ._endpoints._sync.fleet import FleetAccess
from ._endpoints._sync.generate import Generate
from ._endpoints._sync.lora import Lora
from ._endpoints._sync.post import Post
from ._endpoints._sync.rewards import Rewards
from ._endpoints._sync.rollout import Rollout
from ._endpoints._sync.router import Router
from ._endpoints._sync.tokenizer import Tokenizer
from ._endpoints._sync.weights import Weights
from ._errors import InvalidRequestError
from ._fanout import AsCompleted
from ._fleet._fleet import register_client_class
from ._options import ClientOptions, TransportChoice

__all__ = ["AsCompleted", "InferenceHTTPClient"]


class InferenceHTTPClient(
    Generate,
    AsyncGenerate,
    Chat,
    AsyncChat,
    Completions,
    AsyncCompletions,
    Embeddings,
    AsyncEmbeddings,
    Tokenizer,
    AsyncTokenizer,
    Lora,
    AsyncLora,
    Admin,
    AsyncAdmin,
    Router,
    AsyncRouter,
    Control,
    AsyncControl,
    Weights,
    AsyncWeights,
    Rewards,
    AsyncRewards,
    FanOut,
    AsyncFanOut,
    Rollout,
    AsyncRollout,
    Post,
    AsyncPost,
    FleetAccess,
    AsyncFleetAccess,
):
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

    def __init__(
        self,
        base_url: str,
        connect_timeout: float | None = 10.0,
        max_connections: int = 16384,
        *,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        retry_policy: RetryPolicy | None = None,
        health_timeout: float = 5.0,
        transport: TransportChoice = "auto",
        log_bodies: bool = False,
    ) -> None:
        self._attach(
            ClientOptions.build(
                base_url,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                max_retries=max_retries,
                headers=headers,
                api_key=api_key,
                http_client=http_client,
                async_http_client=async_http_client,
                retry_policy=retry_policy,
                health_timeout=health_timeout,
                transport=transport,
                log_bodies=log_bodies,
            )
        )

    @classmethod
    def from_options(cls, options: ClientOptions) -> Self:
        """A client built from ``options`` (see :class:`~rlinf_http.ClientOptions`)."""
        if not isinstance(options, ClientOptions):
            raise InvalidRequestError(f"options must be ClientOptions, got {options!r}")
        client = cls.__new__(cls)
        client._attach(options)
        return client

    def copy(self, *, base_url: str | None = None, **overrides: Any) -> Self:
        """A new client with this one's settings, ``base_url`` and ``overrides`` changed.

        ``overrides`` take the constructor's keyword names (``connect_timeout``,
        ``max_retries``, ``headers`` -- merged over the current ones, a ``None``
        value drops one -- ``api_key``, ``transport``...). The copy opens its own
        sessions; a user's ``http_client`` / ``async_http_client`` is shared.
        Bad values raise :class:`~rlinf_http.InvalidRequestError` before any I/O.
        """
        if base_url is not None:
            overrides["base_url"] = base_url
        return self.from_options(self.options.replace(**overrides))

    def _attach(self, options: ClientOptions) -> None:
        self._driver = Driver(options)
        #: the client's settings, frozen (see :meth:`copy`)
        self.options = options
        self.base_url = options.base_url
        self.connect_timeout = options.connect_timeout
        self.max_connections = options.max_connections
        self.health_timeout: float = options.health_timeout
        self.transport = options.transport
        self.log_bodies = options.log_bodies
        self.retry_policy = options.retry_policy

    # -- sessions ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync session (a later sync call opens a new one)."""
        self._driver.close()

    async def aclose(self) -> None:
        """Close the async session, and the sync one (later calls open new ones)."""
        await self._driver.aclose()

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

    # -- introspection for tests (the driver owns the sessions) ----------------------------

    @property
    def _sync_client(self) -> httpx.Client | None:
        return self._driver._sync_client

    @property
    def _async_client(self) -> httpx.AsyncClient | None:
        return self._driver._async_client


register_client_class(InferenceHTTPClient)
