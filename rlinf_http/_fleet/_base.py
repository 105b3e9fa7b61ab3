"""What both colours of the fleet share, and the one part written twice: running plans.

:class:`FleetBase` holds the worker clients and the argument helpers. Its
``_async_all`` / ``_all`` pair runs one plan per worker concurrently -- an anyio
task group, or one daemon thread per worker -- which is the only place the
async and sync fleets really differ; every call is written once in
``_async.py`` and generated into ``_sync.py`` on top of it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from .._core import control
from .._core.control import PauseMode, Selector
from .._core.plans import Plan
from .._errors import InvalidRequestError
from .._options import ClientOptions
from ._result import FleetResult

if TYPE_CHECKING:  # the fleet never imports the client module at run time
    from .. import InferenceHTTPClient

T = TypeVar("T")

# A fleet-wide step: the operation's name and the plan to run on each worker URL.
Stage = tuple[str, Callable[[str], Plan[Any]]]


class Prototype(Protocol):
    """A client the fleet copies for each worker (``client.copy(base_url=url)``)."""

    @property
    def options(self) -> ClientOptions: ...

    def copy(self, *, base_url: str | None = None, **overrides: Any) -> InferenceHTTPClient: ...


def worker_url(url: object) -> str:
    if not isinstance(url, str):
        raise InvalidRequestError(f"worker urls must be str, got {url!r}")
    return control.worker_url(url)


def worker_urls(urls: Iterable[str]) -> list[str]:
    """``urls`` without ``@rank`` suffixes, each once (a single str is refused)."""
    if isinstance(urls, str):
        raise InvalidRequestError("urls must be a list of worker URLs, not one str")
    return list(dict.fromkeys(worker_url(url) for url in urls))


def undo_targets(result: FleetResult[Any], everywhere: bool) -> list[str]:
    return list(result) if everywhere else list(result.results)


def _timed_out(operation: str, deadline: float) -> TimeoutError:
    return TimeoutError(f"{operation} did not finish within {deadline:g} s")


class FleetBase:
    """The worker clients, the argument helpers, and the concurrent runner pair."""

    _clients: dict[str, InferenceHTTPClient]
    #: the router the workers were listed by (``None``: built from URLs, or one server)
    _router: InferenceHTTPClient | None
    #: seconds each worker's call may wait on its server (``None``: no bound)
    call_timeout: float | None

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

    async def _async_all(
        self,
        operation: str,
        make_plan: Callable[[str], Plan[T]],
        raise_on_error: bool = True,
        urls: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> FleetResult[T]:
        """Run ``make_plan(url)`` on every worker (or ``urls``) at once, one task each.

        Every worker is tried (calls such as a group init only complete when all
        workers are in them); the outcomes are collected. A worker still running
        after ``deadline`` seconds is given up on: its outcome is a ``TimeoutError``.
        """
        work = self._plans(make_plan, raise_on_error, urls)
        outcomes: dict[str, T | Exception] = {}

        async def one(url: str, plan: Plan[T]) -> None:
            with anyio.move_on_after(deadline) as scope:
                try:
                    outcomes[url] = await self._clients[url]._driver.arun(plan, self.call_timeout)
                except Exception as exc:  # collected, not raised: the others go on
                    outcomes[url] = exc
            if scope.cancelled_caught and deadline is not None:
                outcomes[url] = _timed_out(operation, deadline)

        async with anyio.create_task_group() as tg:
            for url, plan in work:
                tg.start_soon(one, url, plan)
        return self._collect(operation, work, outcomes, raise_on_error)

    def _all(
        self,
        operation: str,
        make_plan: Callable[[str], Plan[T]],
        raise_on_error: bool = True,
        urls: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> FleetResult[T]:
        """Sync :meth:`_async_all`: one daemon thread per worker.

        The caller waits for the threads, interruptibly: Ctrl-C returns at once
        (the requests already sent go on in the background, and a daemon thread
        never holds up the interpreter's exit).
        """
        work = self._plans(make_plan, raise_on_error, urls)
        outcomes: dict[str, T | Exception] = {}
        if len(work) == 1 and deadline is None:
            url, plan = work[0]
            try:
                outcomes[url] = self._clients[url]._driver.run(plan, self.call_timeout)
            except Exception as exc:
                outcomes[url] = exc
            return self._collect(operation, work, outcomes, raise_on_error)
        finished: queue.SimpleQueue[tuple[str, T | Exception]] = queue.SimpleQueue()

        def one(url: str, plan: Plan[T]) -> None:
            try:
                finished.put((url, self._clients[url]._driver.run(plan, self.call_timeout)))
            except Exception as exc:  # collected, not raised: the others go on
                finished.put((url, exc))

        for url, plan in work:
            threading.Thread(target=one, args=(url, plan), name="rlinf-fleet", daemon=True).start()
        end = None if deadline is None else time.monotonic() + deadline
        for _ in work:
            try:
                left = None if end is None else max(0.0, end - time.monotonic())
                url, outcome = finished.get(timeout=left)
            except queue.Empty:
                break
            outcomes[url] = outcome
        for url, _ in work:
            if url not in outcomes:
                assert deadline is not None
                outcomes[url] = _timed_out(operation, deadline)
        return self._collect(operation, work, outcomes, raise_on_error)

    # -- arguments ------------------------------------------------------------------------

    @staticmethod
    def _pause_stages(mode: PauseMode, torch_empty_cache: bool) -> tuple[Stage, Stage]:
        control.pause_generation_plan(mode)  # check the arguments before any I/O
        control.continue_generation_plan(torch_empty_cache)
        return (
            ("pause_generation", lambda _: control.pause_generation_plan(mode)),
            ("continue_generation", lambda _: control.continue_generation_plan(torch_empty_cache)),
        )

    @staticmethod
    def _session_stages(selector: Selector) -> tuple[Stage, Stage]:
        control.begin_weight_update_plan(selector)
        return (
            ("begin_weight_update", lambda _: control.begin_weight_update_plan(selector)),
            ("end_weight_update", lambda _: control.end_weight_update_plan()),
        )

    def _by_worker(self, values: Mapping[str, T], what: str) -> dict[str, T]:
        """A mapping of worker URL to value that names every worker exactly once."""
        by_url = {worker_url(url): value for url, value in values.items()}
        if set(by_url) != set(self._clients) or len(by_url) != len(values):
            raise InvalidRequestError(
                f"{what} must name every worker of the fleet exactly once: {list(self._clients)}"
            )
        return by_url

    def _payloads(
        self, payload: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]]
    ) -> dict[str, Sequence[bytes | str]]:
        if isinstance(payload, Mapping):
            return self._by_worker(payload, "serialized_named_tensors")
        return dict.fromkeys(self._clients, payload)

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

    def _health_plan(self, url: str) -> Plan[bool]:
        return control.health_plan(self._clients[url].health_timeout)

    def _status_plan(self, url: str) -> Plan[control.WorkerState]:
        return control.worker_state_plan(self._clients[url].health_timeout)


def hint(call: str, state: str) -> str:
    """How to finish by hand what a cut-short cleanup left (see :mod:`rlinf_http._brackets`)."""
    return f"the workers it names may be left {state}: call fleet.{call}() to finish"
