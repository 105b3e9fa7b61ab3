"""Every worker behind a router as one target: concurrent control calls with per-worker results.

The sglang router forwards no control endpoint, so a weight sync has to reach
each worker itself. A :class:`Fleet` holds one client per worker and runs a
call on all of them concurrently: the async methods in an anyio task group,
the sync ones on one thread per worker, both running the same core plans.
Every worker is tried; the outcome is a :class:`FleetResult` (worker URL ->
result or exception), and any failure raises :class:`~rlinf_http.FleetError`
afterwards unless ``raise_on_error=False``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ._brackets import abracket, bracket
from ._core import control, plans
from ._core.control import PauseMode, Selector
from ._core.dataplane import build_load_lora, build_unload_lora
from ._core.plans import Plan
from ._core.requests import check_timeout
from ._errors import FleetError, InvalidRequestError, WeightVersionMismatchError
from .models import (
    FlushCacheResult,
    GenerationControlResult,
    Loads,
    LoraAdapterResult,
    ModelInfo,
    ServerInfo,
    WeightUpdateResult,
    WeightVersionResult,
)

if TYPE_CHECKING:
    from ._client import InferenceHTTPClient

__all__ = ["Fleet", "FleetResult"]

T = TypeVar("T")

# A fleet-wide step: the operation's name and the plan to run on each worker URL.
_Stage = tuple[str, Callable[[str], Plan[Any]]]

# Headers every client sets itself; never copied from one client to another.
_OWN_HEADERS = frozenset({"user-agent", "accept"})


class FleetResult(Mapping[str, "T | Exception"], Generic[T]):
    """The outcome of one :class:`Fleet` call: worker URL -> its result or its exception.

    Iteration follows the fleet's worker order. ``ok`` is ``True`` when every
    worker succeeded; ``results`` and ``errors`` split the two kinds.
    """

    def __init__(self, outcomes: Mapping[str, T | Exception], operation: str = "") -> None:
        self._outcomes = dict(outcomes)
        self.operation = operation

    def __getitem__(self, url: str) -> T | Exception:
        return self._outcomes[url]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    def __repr__(self) -> str:
        return f"FleetResult({self.operation!r}, {self._outcomes!r})"

    @property
    def ok(self) -> bool:
        """Whether every worker succeeded."""
        return not any(isinstance(v, Exception) for v in self._outcomes.values())

    @property
    def results(self) -> dict[str, T]:
        """Worker URL -> result, for the workers that succeeded."""
        return {u: v for u, v in self._outcomes.items() if not isinstance(v, Exception)}

    @property
    def errors(self) -> dict[str, Exception]:
        """Worker URL -> exception, for the workers that failed."""
        return {u: v for u, v in self._outcomes.items() if isinstance(v, Exception)}

    def raise_for_errors(self) -> FleetResult[T]:
        """Raise :class:`~rlinf_http.FleetError` if any worker failed; else return ``self``."""
        errors = self.errors
        if errors:
            details = "; ".join(
                f"{url}: {type(exc).__name__}: {_short(exc)}" for url, exc in errors.items()
            )
            raise FleetError(
                f"{self.operation} failed on {len(errors)} of {len(self)} workers: {details}",
                operation=self.operation,
                result=self,
            )
        return self


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _worker_url(url: object) -> str:
    if not isinstance(url, str):
        raise InvalidRequestError(f"worker urls must be str, got {url!r}")
    return control.worker_url(url)


def _inherited_options(client: InferenceHTTPClient, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments that rebuild ``client`` for another URL, with overrides."""
    headers = {k: v for k, v in client.options.header_map().items() if k not in _OWN_HEADERS}
    if "api_key" in overrides:
        headers.pop("authorization", None)
    extra_headers = overrides.get("headers") or {}
    if not isinstance(extra_headers, Mapping):
        raise InvalidRequestError(f"headers must be a mapping, got {extra_headers!r}")
    headers.update(extra_headers)
    options: dict[str, Any] = {
        "connect_timeout": client.connect_timeout,
        "max_connections": client.max_connections,
        "retry_policy": client.retry_policy,
        "health_timeout": client.health_timeout,
        "transport": client.transport,
        "log_bodies": client.log_bodies,
        "http_client": client.options.http_client,
        "async_http_client": client.options.async_http_client,
    }
    options.update(overrides)
    options["headers"] = headers
    return options


class Fleet:
    """One client per worker; each control call runs on all of them concurrently.

    Get one from a router with ``client.fleet()`` / ``await client.async_fleet()``
    (or for a single server: a fleet of one), or build one with
    :meth:`from_urls`. ``len(fleet)``, ``for url in fleet`` and
    :meth:`client` give the workers. Every call returns a :class:`FleetResult`
    and raises :class:`~rlinf_http.FleetError` after all workers were tried if
    any failed (``raise_on_error=False`` returns the errors in the result).
    Arguments are checked once, before any request is sent.

    The weight-sync idiom continues every worker even when the block raises::

        with client.fleet().paused(mode="retract") as fleet:
            fleet.update_weights_from_disk("/ckpt/step-100", weight_version="100")
    """

    def __init__(
        self, clients: Iterable[InferenceHTTPClient], *, call_timeout: float | None = None
    ) -> None:
        #: seconds each worker's call may wait on its server (``None``: no bound)
        self.call_timeout = check_timeout(call_timeout, "call_timeout")
        self._clients: dict[str, InferenceHTTPClient] = {}
        for client in clients:
            if client.base_url in self._clients:
                raise InvalidRequestError(f"worker {client.base_url} is given twice")
            self._clients[client.base_url] = client
        if not self._clients:
            raise InvalidRequestError("a Fleet needs at least one worker")
        # The worker clients belong to the fleet: their sync sessions close with it.
        weakref.finalize(self, _close_all, list(self._clients.values()))

    @classmethod
    def from_urls(
        cls, urls: Iterable[str], *, call_timeout: float | None = None, **client_options: Any
    ) -> Fleet:
        """A fleet of the workers at ``urls``; ``client_options`` go to each client.

        ``@<rank>`` suffixes (as a DP-aware router lists them) are stripped and
        repeated URLs kept once. ``call_timeout`` bounds, in seconds, how long each
        worker's call waits on its server (to connect, and for each read): a worker
        that hangs then fails with :class:`~rlinf_http.APITimeoutError` inside the
        :class:`~rlinf_http.FleetError` raised once the others completed. ``None``
        (the default): no bound, as on a client; a sync call can then only end
        when every worker answers.
        """
        from ._client import InferenceHTTPClient

        if isinstance(urls, str):
            raise InvalidRequestError("urls must be a list of worker URLs, not one str")
        unique = dict.fromkeys(_worker_url(url) for url in urls)
        clients = [InferenceHTTPClient(url, **client_options) for url in unique]
        return cls(clients, call_timeout=call_timeout)

    @staticmethod
    def _worker_options(
        client: InferenceHTTPClient, overrides: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``client``'s settings with ``overrides``, checked (by building a client) before I/O."""
        from ._client import InferenceHTTPClient

        options = _inherited_options(client, overrides)
        InferenceHTTPClient(client.base_url, **options)  # raises InvalidRequestError if bad
        return options

    @classmethod
    def _from_client(
        cls,
        client: InferenceHTTPClient,
        urls: Sequence[str] | None,
        worker_type: str | None,
        options: Mapping[str, Any],
        call_timeout: float | None = None,
    ) -> Fleet:
        """A fleet of ``urls`` (``None``: ``client``'s own server) built with ``options``."""
        from ._client import InferenceHTTPClient

        if urls is not None and not urls:
            kind = f" of type {worker_type!r}" if worker_type else ""
            raise FleetError(
                f"the router at {client.base_url} lists no workers{kind}",
                operation="fleet",
                result=FleetResult({}, "fleet"),
            )
        targets = [client.base_url] if urls is None else urls
        clients = [InferenceHTTPClient(url, **options) for url in targets]
        return cls(clients, call_timeout=call_timeout)

    # -- the workers ----------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The worker URLs, in order."""
        return list(self._clients)

    def client(self, url: str) -> InferenceHTTPClient:
        """The client of the worker at ``url``."""
        try:
            return self._clients[_worker_url(url)]
        except KeyError:
            raise InvalidRequestError(f"{url!r} is not a worker of this fleet") from None

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._clients))

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and _worker_url(url) in self._clients

    def __repr__(self) -> str:
        return f"Fleet({list(self._clients)!r})"

    def close(self) -> None:
        """Close every worker client's sync session."""
        for client in self._clients.values():
            client.close()

    async def aclose(self) -> None:
        """Close every worker client's sessions."""
        for client in self._clients.values():
            await client.aclose()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- running a plan on every worker ---------------------------------------------------

    def _plans(
        self, make_plan: Callable[[str], Plan[T]], raise_on_error: bool, urls: Sequence[str] | None
    ) -> list[tuple[str, Plan[T]]]:
        """One plan per target worker, all made (arguments checked) before any I/O."""
        if not isinstance(raise_on_error, bool):
            raise InvalidRequestError(
                f"raise_on_error must be True or False, got {raise_on_error!r}"
            )
        targets = list(self._clients) if urls is None else list(urls)
        return [(url, make_plan(url)) for url in targets]

    @staticmethod
    def _collect(
        operation: str,
        work: list[tuple[str, Plan[T]]],
        outcomes: Mapping[str, T | Exception],
        raise_on_error: bool,
    ) -> FleetResult[T]:
        result = FleetResult({url: outcomes[url] for url, _ in work}, operation)
        return result.raise_for_errors() if raise_on_error else result

    def _all(
        self,
        operation: str,
        make_plan: Callable[[str], Plan[T]],
        raise_on_error: bool = True,
        urls: Sequence[str] | None = None,
    ) -> FleetResult[T]:
        """Run ``make_plan(url)`` on every worker (or ``urls``) at once, one thread each.

        Every worker is tried (calls such as a group init only complete when all
        workers are in them); the outcomes are collected.
        """
        work = self._plans(make_plan, raise_on_error, urls)
        outcomes: dict[str, T | Exception] = {}

        def one(url: str, plan: Plan[T]) -> None:
            try:
                outcomes[url] = self._clients[url]._driver.run(plan, self.call_timeout)
            except Exception as exc:  # collected, not raised: the others go on
                outcomes[url] = exc

        if len(work) <= 1:
            for url, plan in work:
                one(url, plan)
        else:
            pool = ThreadPoolExecutor(len(work), thread_name_prefix="rlinf-fleet")
            try:
                for future in [pool.submit(one, url, plan) for url, plan in work]:
                    future.result()
            finally:
                # Normally every call is done here; after a KeyboardInterrupt the
                # caller gets control back at once instead of waiting for them.
                pool.shutdown(wait=False, cancel_futures=True)
        return self._collect(operation, work, outcomes, raise_on_error)

    async def _aall(
        self,
        operation: str,
        make_plan: Callable[[str], Plan[T]],
        raise_on_error: bool = True,
        urls: Sequence[str] | None = None,
    ) -> FleetResult[T]:
        """Async :meth:`_all`: one task per worker in an anyio task group."""
        work = self._plans(make_plan, raise_on_error, urls)
        outcomes: dict[str, T | Exception] = {}

        async def one(url: str, plan: Plan[T]) -> None:
            try:
                outcomes[url] = await self._clients[url]._driver.arun(plan, self.call_timeout)
            except Exception as exc:  # collected, not raised: the others go on
                outcomes[url] = exc

        async with anyio.create_task_group() as tg:
            for url, plan in work:
                tg.start_soon(one, url, plan)
        return self._collect(operation, work, outcomes, raise_on_error)

    def _start(self, enter: _Stage, undo: _Stage, everywhere: bool) -> None:
        """Enter a state on every worker; if some fail, undo it and raise :class:`FleetError`.

        ``everywhere`` undoes on the failed workers too (a pause that failed
        with a timeout may still have paused its server).
        """
        result = self._all(*enter, raise_on_error=False)
        if not result.ok:
            self._all(*undo, raise_on_error=False, urls=_undo_targets(result, everywhere))
            result.raise_for_errors()

    async def _astart(self, enter: _Stage, undo: _Stage, everywhere: bool) -> None:
        """Async :meth:`_start`."""
        result = await self._aall(*enter, raise_on_error=False)
        if not result.ok:
            await self._aall(*undo, raise_on_error=False, urls=_undo_targets(result, everywhere))
            result.raise_for_errors()

    @staticmethod
    def _pause_stages(mode: PauseMode, torch_empty_cache: bool) -> tuple[_Stage, _Stage]:
        control.pause_generation_plan(mode)  # check the arguments before any I/O
        control.continue_generation_plan(torch_empty_cache)
        return (
            ("pause_generation", lambda _: control.pause_generation_plan(mode)),
            ("continue_generation", lambda _: control.continue_generation_plan(torch_empty_cache)),
        )

    @staticmethod
    def _session_stages(selector: Selector) -> tuple[_Stage, _Stage]:
        control.begin_weight_update_plan(selector)
        return (
            ("begin_weight_update", lambda _: control.begin_weight_update_plan(selector)),
            ("end_weight_update", lambda _: control.end_weight_update_plan()),
        )

    # -- pause / continue -----------------------------------------------------------------

    @contextlib.contextmanager
    def paused(
        self, mode: PauseMode = "abort", *, torch_empty_cache: bool = True
    ) -> Iterator[Fleet]:
        """``with fleet.paused(mode):`` pause every worker, run the block, continue every worker.

        Every worker is continued even when the block raises (that error
        propagates). If the pause fails on some workers, those that paused are
        continued and :class:`~rlinf_http.FleetError` is raised.
        """
        pause, resume = self._pause_stages(mode, torch_empty_cache)
        with bracket(
            lambda: self._start(pause, resume, True), lambda: self._all(*resume), resume[0]
        ):
            yield self

    @contextlib.asynccontextmanager
    async def async_paused(
        self, mode: PauseMode = "abort", *, torch_empty_cache: bool = True
    ) -> AsyncIterator[Fleet]:
        """Async :meth:`paused` (``async with``); continuing survives cancellation."""
        pause, resume = self._pause_stages(mode, torch_empty_cache)
        async with abracket(
            lambda: self._astart(pause, resume, True), lambda: self._aall(*resume), resume[0]
        ):
            yield self

    def pause_generation(
        self, mode: PauseMode = "abort", *, raise_on_error: bool = True
    ) -> FleetResult[GenerationControlResult]:
        """``pause_generation`` on every worker (prefer :meth:`paused`)."""
        return self._all(
            "pause_generation", lambda _: control.pause_generation_plan(mode), raise_on_error
        )

    async def async_pause_generation(
        self, mode: PauseMode = "abort", *, raise_on_error: bool = True
    ) -> FleetResult[GenerationControlResult]:
        """Async :meth:`pause_generation`."""
        return await self._aall(
            "pause_generation", lambda _: control.pause_generation_plan(mode), raise_on_error
        )

    def continue_generation(
        self, *, torch_empty_cache: bool = True, raise_on_error: bool = True
    ) -> FleetResult[GenerationControlResult]:
        """``continue_generation`` on every worker."""
        return self._all(
            "continue_generation",
            lambda _: control.continue_generation_plan(torch_empty_cache),
            raise_on_error,
        )

    async def async_continue_generation(
        self, *, torch_empty_cache: bool = True, raise_on_error: bool = True
    ) -> FleetResult[GenerationControlResult]:
        """Async :meth:`continue_generation`."""
        return await self._aall(
            "continue_generation",
            lambda _: control.continue_generation_plan(torch_empty_cache),
            raise_on_error,
        )

    def abort_request(
        self, rid: str = "", *, abort_all: bool = False, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """``abort_request`` on every worker (the router does not say which one runs ``rid``)."""
        return self._all(
            "abort_request", lambda _: plans.abort_request_plan(rid, abort_all), raise_on_error
        )

    async def async_abort_request(
        self, rid: str = "", *, abort_all: bool = False, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """Async :meth:`abort_request`."""
        return await self._aall(
            "abort_request", lambda _: plans.abort_request_plan(rid, abort_all), raise_on_error
        )

    # -- LoRA adapters (the router forwards no adapter management) -------------------------

    def load_lora_adapter(
        self, lora_name: str, lora_path: str, *, pinned: bool = False, raise_on_error: bool = True
    ) -> FleetResult[LoraAdapterResult]:
        """``load_lora_adapter`` on every worker, so ``lora_path=lora_name`` works on any."""
        op = build_load_lora(lora_name, lora_path, pinned)  # checked before any I/O
        return self._all("load_lora_adapter", lambda _: plans.call_plan(op), raise_on_error)

    async def async_load_lora_adapter(
        self, lora_name: str, lora_path: str, *, pinned: bool = False, raise_on_error: bool = True
    ) -> FleetResult[LoraAdapterResult]:
        """Async :meth:`load_lora_adapter`."""
        op = build_load_lora(lora_name, lora_path, pinned)
        return await self._aall("load_lora_adapter", lambda _: plans.call_plan(op), raise_on_error)

    def unload_lora_adapter(
        self, lora_name: str, *, raise_on_error: bool = True
    ) -> FleetResult[LoraAdapterResult]:
        """``unload_lora_adapter`` on every worker."""
        op = build_unload_lora(lora_name)
        return self._all("unload_lora_adapter", lambda _: plans.call_plan(op), raise_on_error)

    async def async_unload_lora_adapter(
        self, lora_name: str, *, raise_on_error: bool = True
    ) -> FleetResult[LoraAdapterResult]:
        """Async :meth:`unload_lora_adapter`."""
        op = build_unload_lora(lora_name)
        return await self._aall(
            "unload_lora_adapter", lambda _: plans.call_plan(op), raise_on_error
        )

    # -- weights --------------------------------------------------------------------------

    def update_weights_from_disk(
        self,
        model_path: str,
        *,
        load_format: str | None = None,
        weight_version: str | None = None,
        abort_all_requests: bool = False,
        flush_cache: bool = True,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_disk`` on every worker (see the client's method)."""
        return self._all(
            "update_weights_from_disk",
            lambda _: control.update_weights_from_disk_plan(
                model_path,
                load_format=load_format,
                weight_version=weight_version,
                abort_all_requests=abort_all_requests,
                flush_cache=flush_cache,
                extra=extra,
            ),
            raise_on_error,
        )

    async def async_update_weights_from_disk(
        self,
        model_path: str,
        *,
        load_format: str | None = None,
        weight_version: str | None = None,
        abort_all_requests: bool = False,
        flush_cache: bool = True,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`update_weights_from_disk`."""
        return await self._aall(
            "update_weights_from_disk",
            lambda _: control.update_weights_from_disk_plan(
                model_path,
                load_format=load_format,
                weight_version=weight_version,
                abort_all_requests=abort_all_requests,
                flush_cache=flush_cache,
                extra=extra,
            ),
            raise_on_error,
        )

    def _by_worker(self, values: Mapping[str, T], what: str) -> dict[str, T]:
        """A mapping of worker URL to value that names every worker exactly once."""
        by_url = {_worker_url(url): value for url, value in values.items()}
        if set(by_url) != set(self._clients) or len(by_url) != len(values):
            raise InvalidRequestError(
                f"{what} must name every worker of the fleet exactly once: {list(self._clients)}"
            )
        return by_url

    def _rank_offsets(self, rank_offset: int | Sequence[int] | Mapping[str, int]) -> dict[str, int]:
        """One distinct rank offset per worker, from an int (one worker), a list or a mapping."""
        urls = list(self._clients)
        if isinstance(rank_offset, Mapping):
            offsets = self._by_worker(rank_offset, "rank_offset")
        elif isinstance(rank_offset, Sequence) and not isinstance(rank_offset, str):
            if len(rank_offset) != len(urls):
                raise InvalidRequestError(
                    f"rank_offset has {len(rank_offset)} entries for {len(urls)} workers"
                )
            offsets = dict(zip(urls, rank_offset, strict=True))
        elif len(urls) == 1:
            offsets = {urls[0]: rank_offset}
        else:
            raise InvalidRequestError(
                "each worker needs its own rank_offset: give a list (one per worker, in "
                "fleet order) or a mapping of worker URL to offset"
            )
        if len(set(offsets.values())) != len(offsets):
            raise InvalidRequestError(f"rank offsets must differ between workers, got {offsets}")
        return offsets

    def init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int | Sequence[int] | Mapping[str, int],
        world_size: int,
        *,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
        raise_on_error: bool = True,
    ) -> FleetResult[WeightUpdateResult]:
        """``init_weights_update_group`` on every worker, each with its own ``rank_offset``.

        ``rank_offset`` is a list (fleet order) or a mapping of worker URL to
        offset; a plain int only for a fleet of one.
        """
        offsets = self._rank_offsets(rank_offset)
        return self._all(
            "init_weights_update_group",
            lambda url: control.init_weights_update_group_plan(
                master_address,
                master_port,
                offsets[url],
                world_size,
                group_name=group_name,
                backend=backend,
            ),
            raise_on_error,
        )

    async def async_init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int | Sequence[int] | Mapping[str, int],
        world_size: int,
        *,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
        raise_on_error: bool = True,
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`init_weights_update_group`."""
        offsets = self._rank_offsets(rank_offset)
        return await self._aall(
            "init_weights_update_group",
            lambda url: control.init_weights_update_group_plan(
                master_address,
                master_port,
                offsets[url],
                world_size,
                group_name=group_name,
                backend=backend,
            ),
            raise_on_error,
        )

    def destroy_weights_update_group(
        self, group_name: str = "weight_update_group", *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """``destroy_weights_update_group`` on every worker."""
        return self._all(
            "destroy_weights_update_group",
            lambda _: control.destroy_weights_update_group_plan(group_name),
            raise_on_error,
        )

    async def async_destroy_weights_update_group(
        self, group_name: str = "weight_update_group", *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`destroy_weights_update_group`."""
        return await self._aall(
            "destroy_weights_update_group",
            lambda _: control.destroy_weights_update_group_plan(group_name),
            raise_on_error,
        )

    def begin_weight_update(
        self, selector: Selector = "all", *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """``begin_weight_update`` on every worker (prefer :meth:`weight_update_session`)."""
        return self._all(
            "begin_weight_update",
            lambda _: control.begin_weight_update_plan(selector),
            raise_on_error,
        )

    async def async_begin_weight_update(
        self, selector: Selector = "all", *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`begin_weight_update`."""
        return await self._aall(
            "begin_weight_update",
            lambda _: control.begin_weight_update_plan(selector),
            raise_on_error,
        )

    def end_weight_update(self, *, raise_on_error: bool = True) -> FleetResult[WeightUpdateResult]:
        """``end_weight_update`` on every worker."""
        return self._all(
            "end_weight_update", lambda _: control.end_weight_update_plan(), raise_on_error
        )

    async def async_end_weight_update(
        self, *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`end_weight_update`."""
        return await self._aall(
            "end_weight_update", lambda _: control.end_weight_update_plan(), raise_on_error
        )

    @contextlib.contextmanager
    def weight_update_session(self, selector: Selector = "all") -> Iterator[Fleet]:
        """``with fleet.weight_update_session():`` begin on every worker, end on every worker.

        The session is ended even when the block raises. If begin fails on some
        workers, the sessions opened are ended and :class:`~rlinf_http.FleetError` raised.
        """
        begin, end = self._session_stages(selector)
        with bracket(lambda: self._start(begin, end, False), lambda: self._all(*end), end[0]):
            yield self

    @contextlib.asynccontextmanager
    async def async_weight_update_session(self, selector: Selector = "all") -> AsyncIterator[Fleet]:
        """Async :meth:`weight_update_session` (``async with``)."""
        begin, end = self._session_stages(selector)
        async with abracket(
            lambda: self._astart(begin, end, False), lambda: self._aall(*end), end[0]
        ):
            yield self

    def update_weights_from_distributed(
        self,
        names: Sequence[str],
        dtypes: Sequence[Any],
        shapes: Sequence[Sequence[int]],
        *,
        group_name: str = "weight_update_group",
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        load_format: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_distributed`` on every worker, concurrently.

        Every worker receives the same broadcast, so the calls must all be
        pending while the trainer broadcasts.
        """
        return self._all(
            "update_weights_from_distributed",
            lambda _: control.update_weights_from_distributed_plan(
                names,
                dtypes,
                shapes,
                group_name=group_name,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                load_format=load_format,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            ),
            raise_on_error,
        )

    async def async_update_weights_from_distributed(
        self,
        names: Sequence[str],
        dtypes: Sequence[Any],
        shapes: Sequence[Sequence[int]],
        *,
        group_name: str = "weight_update_group",
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        load_format: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`update_weights_from_distributed`."""
        return await self._aall(
            "update_weights_from_distributed",
            lambda _: control.update_weights_from_distributed_plan(
                names,
                dtypes,
                shapes,
                group_name=group_name,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                load_format=load_format,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            ),
            raise_on_error,
        )

    def _payloads(
        self, payload: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]]
    ) -> dict[str, Sequence[bytes | str]]:
        if isinstance(payload, Mapping):
            return self._by_worker(payload, "serialized_named_tensors")
        return dict.fromkeys(self._clients, payload)

    def update_weights_from_tensor(
        self,
        serialized_named_tensors: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]],
        *,
        load_format: str | None = None,
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_tensor`` on every worker.

        The payload holds CUDA IPC handles, which only workers on the node that
        serialized it can open: give one payload for all, or a mapping of
        worker URL to that worker's payload.
        """
        payloads = self._payloads(serialized_named_tensors)
        return self._all(
            "update_weights_from_tensor",
            lambda url: control.update_weights_from_tensor_plan(
                payloads[url],
                load_format=load_format,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            ),
            raise_on_error,
        )

    async def async_update_weights_from_tensor(
        self,
        serialized_named_tensors: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]],
        *,
        load_format: str | None = None,
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """Async :meth:`update_weights_from_tensor`."""
        payloads = self._payloads(serialized_named_tensors)
        return await self._aall(
            "update_weights_from_tensor",
            lambda url: control.update_weights_from_tensor_plan(
                payloads[url],
                load_format=load_format,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            ),
            raise_on_error,
        )

    def update_weight_version(
        self, new_version: str, *, abort_all_requests: bool = True, raise_on_error: bool = True
    ) -> FleetResult[WeightVersionResult]:
        """``update_weight_version`` on every worker (aborts requests in flight by default)."""
        return self._all(
            "update_weight_version",
            lambda _: control.update_weight_version_plan(new_version, abort_all_requests),
            raise_on_error,
        )

    async def async_update_weight_version(
        self, new_version: str, *, abort_all_requests: bool = True, raise_on_error: bool = True
    ) -> FleetResult[WeightVersionResult]:
        """Async :meth:`update_weight_version`."""
        return await self._aall(
            "update_weight_version",
            lambda _: control.update_weight_version_plan(new_version, abort_all_requests),
            raise_on_error,
        )

    def weight_versions(self, *, raise_on_error: bool = True) -> FleetResult[str | None]:
        """Worker URL -> the weight version it serves now (from ``/model_info``)."""
        return self._all("weight_version", lambda _: control.weight_version_plan(), raise_on_error)

    async def async_weight_versions(
        self, *, raise_on_error: bool = True
    ) -> FleetResult[str | None]:
        """Async :meth:`weight_versions`."""
        return await self._aall(
            "weight_version", lambda _: control.weight_version_plan(), raise_on_error
        )

    def check_weight_version(self, expected: str) -> FleetResult[str | None]:
        """The versions, if every worker serves ``expected``.

        Raises :class:`~rlinf_http.WeightVersionMismatchError` naming the workers
        that serve another one (:class:`~rlinf_http.FleetError` if some could not
        be asked).
        """
        _check_expected(expected)
        return _agree(expected, self.weight_versions())

    async def async_check_weight_version(self, expected: str) -> FleetResult[str | None]:
        """Async :meth:`check_weight_version`."""
        _check_expected(expected)
        return _agree(expected, await self.async_weight_versions())

    # -- memory, cache, load, info --------------------------------------------------------

    def release_memory_occupation(
        self, tags: Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """``release_memory_occupation`` on every worker (pause first)."""
        return self._all(
            "release_memory_occupation",
            lambda _: control.release_memory_occupation_plan(tags),
            raise_on_error,
        )

    async def async_release_memory_occupation(
        self, tags: Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """Async :meth:`release_memory_occupation`."""
        return await self._aall(
            "release_memory_occupation",
            lambda _: control.release_memory_occupation_plan(tags),
            raise_on_error,
        )

    def resume_memory_occupation(
        self, tags: Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """``resume_memory_occupation`` on every worker (exactly the tags released)."""
        return self._all(
            "resume_memory_occupation",
            lambda _: control.resume_memory_occupation_plan(tags),
            raise_on_error,
        )

    async def async_resume_memory_occupation(
        self, tags: Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """Async :meth:`resume_memory_occupation`."""
        return await self._aall(
            "resume_memory_occupation",
            lambda _: control.resume_memory_occupation_plan(tags),
            raise_on_error,
        )

    def flush_cache(self, *, raise_on_error: bool = True) -> FleetResult[FlushCacheResult]:
        """``flush_cache`` on every worker (a busy worker gives ``flushed=False``)."""
        return self._all("flush_cache", lambda _: plans.flush_cache_plan(), raise_on_error)

    async def async_flush_cache(
        self, *, raise_on_error: bool = True
    ) -> FleetResult[FlushCacheResult]:
        """Async :meth:`flush_cache`."""
        return await self._aall("flush_cache", lambda _: plans.flush_cache_plan(), raise_on_error)

    def loads(
        self, include: str | Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[Loads]:
        """``GET /v1/loads`` of every worker."""
        return self._all("loads", lambda _: control.loads_plan(include), raise_on_error)

    async def async_loads(
        self, include: str | Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[Loads]:
        """Async :meth:`loads`."""
        return await self._aall("loads", lambda _: control.loads_plan(include), raise_on_error)

    def health(self) -> FleetResult[bool]:
        """Worker URL -> ``GET /health`` answered 2xx (never raises; bounded per worker)."""
        return self._all("health", self._health_plan, False)

    async def async_health(self) -> FleetResult[bool]:
        """Async :meth:`health`."""
        return await self._aall("health", self._health_plan, False)

    def _health_plan(self, url: str) -> Plan[bool]:
        return control.health_plan(self._clients[url].health_timeout)

    def server_info(self, *, raise_on_error: bool = True) -> FleetResult[ServerInfo]:
        """``/server_info`` of every worker."""
        return self._all("server_info", lambda _: plans.server_info_plan(), raise_on_error)

    async def async_server_info(self, *, raise_on_error: bool = True) -> FleetResult[ServerInfo]:
        """Async :meth:`server_info`."""
        return await self._aall("server_info", lambda _: plans.server_info_plan(), raise_on_error)

    def model_info(self, *, raise_on_error: bool = True) -> FleetResult[ModelInfo]:
        """``/model_info`` of every worker."""
        return self._all("model_info", lambda _: plans.model_info_plan(), raise_on_error)

    async def async_model_info(self, *, raise_on_error: bool = True) -> FleetResult[ModelInfo]:
        """Async :meth:`model_info`."""
        return await self._aall("model_info", lambda _: plans.model_info_plan(), raise_on_error)


def _close_all(clients: list[InferenceHTTPClient]) -> None:
    for client in clients:
        client.close()


def _undo_targets(result: FleetResult[Any], everywhere: bool) -> list[str]:
    return list(result) if everywhere else list(result.results)


def _check_expected(expected: object) -> None:
    if not isinstance(expected, str) or not expected:
        raise InvalidRequestError(f"expected must be a non-empty str, got {expected!r}")


def _agree(expected: str, versions: FleetResult[str | None]) -> FleetResult[str | None]:
    """``versions`` if every worker serves ``expected``; else raise the mismatch."""
    found = versions.results
    wrong = {url: v for url, v in found.items() if v != expected}
    if wrong:
        listing = ", ".join(f"{url} serves {v!r}" for url, v in wrong.items())
        raise WeightVersionMismatchError(
            f"{len(wrong)} of {len(found)} workers do not serve weight version "
            f"{expected!r}: {listing}",
            expected=expected,
            versions=found,
        )
    return versions
