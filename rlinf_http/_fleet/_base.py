"""What both colours of the fleet share, and the one part written twice: running plans.

:class:`FleetBase` holds the worker clients and the argument helpers. Its
``_async_all`` / ``_all`` pair runs one plan per worker concurrently -- an anyio
task group, or one daemon thread per worker -- which is the only place the
async and sync fleets really differ; every call is written once in
``_async.py`` and generated into ``_sync.py`` on top of it.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from .._core import control
from .._core.control import PauseMode, Selector
from .._core.plans import Plan
from .._core.rl_gateway import Group, Lockstep, send_plan
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
    #: the gateway's client when the calls go through smg's ``/v1/rl/*`` (else ``None``)
    _gateway: InferenceHTTPClient | None = None
    #: worker URL -> smg's worker id (gateway path)
    _ids: Mapping[str, str] = {}
    #: the selector the fleet's fan-outs carry (``None``: every sglang worker)
    _selector: str | None = None

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
        clients: Mapping[str, InferenceHTTPClient] | None = None,
    ) -> FleetResult[T]:
        """Run ``make_plan(url)`` on every worker (or ``urls``) at once.

        Direct path: one task per worker, each on its worker's client (or on
        ``clients[url]``: a router to re-add it, or its own URL once smg no longer
        lists it). Gateway path (without ``clients``): the plans in lockstep,
        each step one fan-out through smg (see
        :class:`~rlinf_http._core.rl_gateway.Lockstep`). Every worker is tried
        (calls such as a group init only complete when all workers are in them);
        the outcomes are collected. A worker still running after ``deadline``
        seconds is given up on: its outcome is a ``TimeoutError``.
        """
        work = self._plans(make_plan, raise_on_error, urls)
        outcomes: dict[str, T | Exception] = {}
        per_worker = self.call_timeout is not None or deadline is not None
        with anyio.move_on_after(deadline):
            if self._gateway is None or clients is not None:
                on = self._clients if clients is None else clients
                jobs = [
                    (url, functools.partial(on[url]._driver.arun, plan, self.call_timeout))
                    for url, plan in work
                ]
                await _async_each(jobs, outcomes)
            else:
                step = Lockstep(work, self._ids, self._selector, per_worker)
                outcomes = step.outcomes
                driver = self._gateway._driver

                async def send(group: Group) -> None:
                    # fed as soon as it is answered: a deadline may cut the others short
                    try:
                        answer = await driver.arun(send_plan(group.request), self.call_timeout)
                    except Exception as exc:  # the fan-out's own failure, for its workers
                        answer = exc
                    step.feed(group, answer)

                while not step.done:
                    sends = [(i, functools.partial(send, g)) for i, g in enumerate(step.groups())]
                    await _async_each(sends, {})
        return self._collect(
            operation, work, self._timed_out(operation, work, outcomes, deadline), raise_on_error
        )

    def _all(
        self,
        operation: str,
        make_plan: Callable[[str], Plan[T]],
        raise_on_error: bool = True,
        urls: Sequence[str] | None = None,
        deadline: float | None = None,
        clients: Mapping[str, InferenceHTTPClient] | None = None,
    ) -> FleetResult[T]:
        """Sync :meth:`_async_all`: one daemon thread per worker (per fan-out through smg).

        The caller waits for the threads, interruptibly: Ctrl-C returns at once
        (the requests already sent go on in the background, and a daemon thread
        never holds up the interpreter's exit).
        """
        work = self._plans(make_plan, raise_on_error, urls)
        end = None if deadline is None else time.monotonic() + deadline
        outcomes: dict[str, T | Exception] = {}
        per_worker = self.call_timeout is not None or deadline is not None
        if self._gateway is None or clients is not None:
            on = self._clients if clients is None else clients
            jobs = [
                (url, functools.partial(on[url]._driver.run, plan, self.call_timeout))
                for url, plan in work
            ]
            outcomes = _each(jobs, end)
        else:
            step = Lockstep(work, self._ids, self._selector, per_worker)
            outcomes = step.outcomes
            driver = self._gateway._driver
            while not step.done:
                groups = step.groups()
                sends = [
                    (i, functools.partial(driver.run, send_plan(g.request), self.call_timeout))
                    for i, g in enumerate(groups)
                ]
                answers = _each(sends, end)
                for i, group in enumerate(groups):
                    if i in answers:
                        step.feed(group, answers[i])
                if len(answers) < len(groups):
                    break  # the deadline passed: the rest are timed out below
        return self._collect(
            operation, work, self._timed_out(operation, work, outcomes, deadline), raise_on_error
        )

    @staticmethod
    def _timed_out(
        operation: str,
        work: Sequence[tuple[str, object]],
        outcomes: dict[str, T | Exception],
        deadline: float | None,
    ) -> dict[str, T | Exception]:
        """``outcomes``, with a ``TimeoutError`` for each worker the deadline cut short."""
        for url, _ in work:
            if url not in outcomes:
                assert deadline is not None
                outcomes[url] = _timed_out(operation, deadline)
        return outcomes

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


K = TypeVar("K")


async def _async_each(
    jobs: Sequence[tuple[K, Callable[[], Awaitable[Any]]]], into: dict[K, Any]
) -> None:
    """Run every job at once; each outcome (its value or its exception) lands in ``into``."""

    async def one(key: K, job: Callable[[], Awaitable[Any]]) -> None:
        try:
            into[key] = await job()
        except Exception as exc:  # collected, not raised: the others go on
            into[key] = exc

    async with anyio.create_task_group() as tg:
        for key, job in jobs:
            tg.start_soon(one, key, job)


def _each(jobs: Sequence[tuple[K, Callable[[], Any]]], end: float | None) -> dict[K, Any]:
    """Sync :func:`_async_each`: daemon threads, waited for until ``end`` (monotonic).

    A job still running at ``end`` has no entry. One job without an end runs on
    the calling thread.
    """
    into: dict[K, Any] = {}
    if len(jobs) == 1 and end is None:
        key, job = jobs[0]
        try:
            into[key] = job()
        except Exception as exc:
            into[key] = exc
        return into
    finished: queue.SimpleQueue[tuple[K, Any]] = queue.SimpleQueue()

    def one(key: K, job: Callable[[], Any]) -> None:
        try:
            finished.put((key, job()))
        except Exception as exc:  # collected, not raised: the others go on
            finished.put((key, exc))

    for key, job in jobs:
        threading.Thread(target=one, args=(key, job), name="rlinf-fleet", daemon=True).start()
    for _ in jobs:
        try:
            left = None if end is None else max(0.0, end - time.monotonic())
            key, outcome = finished.get(timeout=left)
        except queue.Empty:
            break
        into[key] = outcome
    return into


def hint(call: str, state: str) -> str:
    """How to finish by hand what a cut-short cleanup left (see :mod:`rlinf_http._brackets`)."""
    return f"the workers it names may be left {state}: call fleet.{call}() to finish"


def verify_names(
    names: str | Sequence[str] | None, expected: Mapping[str, Any] | None
) -> list[str]:
    """The parameters ``verify_weights`` reads: ``names``, else ``expected``'s keys."""
    if names is None:
        if expected is None:
            raise InvalidRequestError("give the parameter names to read, or expected values")
        if not isinstance(expected, Mapping) or not expected:
            raise InvalidRequestError("expected must map parameter names to values")
        return list(expected)
    wanted = [names] if isinstance(names, str) else list(names)
    if expected is not None and isinstance(expected, Mapping):
        missing = [n for n in wanted if n not in expected]
        if missing:
            raise InvalidRequestError(f"expected has no values for {', '.join(missing)}")
    return wanted
