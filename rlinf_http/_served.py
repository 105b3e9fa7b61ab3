"""The I/O half of model resolution: ``with_model`` / ``awith_model`` (see
:mod:`rlinf_http._core.served_model` for the decisions).

Every OpenAI-style call (chat, completions, embeddings, tokenize, their streams
and fan-outs) sends through one of these two. An explicit ``model`` is built
and sent as given, with no other cost. Without one, the client's cached
``GET /v1/models`` answer names it (read once, by one caller at a time); a 404
``model_not_found`` answer then refreshes the cache once and sends the call
once more. That second send follows a complete error answer (the gateway served
nothing) and counts as one of the call's ``max_retries``: with
``max_retries=0`` the error is raised, and the next call uses the fresh list.
Fan-outs never resend: a ``model_not_found`` (raised, or an item of
``return_exceptions=True``) refreshes the list for the next call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._core.requests import Operation
from ._core.retry import RetryPolicy
from ._core.served_model import is_model_not_found, pick_model, served_models_plan
from ._core.targeting import check_target_worker, target_index_plan
from ._driver import Driver, TimeoutTypes, _running_loop_token, _Unset
from ._errors import RLinfHTTPError

__all__ = [
    "PROBE_MODEL",
    "check_target_worker",
    "aresolve_model",
    "asend_model",
    "awith_model",
    "resolve_model",
    "send_model",
    "target_index",
    "atarget_index",
    "with_model",
]

R = TypeVar("R")  # what ``build`` makes (an operation, or a list for a fan-out)
T = TypeVar("T")

#: A stand-in name: a call is built with it once to check its arguments before
#: ``/v1/models`` is read.
PROBE_MODEL = "model"


def _served(driver: Driver, seen: int | None) -> tuple[str, int]:
    cache = driver.served_models
    ids = cache.fresh(seen)
    if ids is None:
        with cache.lock:
            ids = cache.fresh(seen)
            if ids is None:
                ids = driver.run(served_models_plan())
                cache.store(ids)
    return pick_model(ids, driver.base_url), cache.generation


async def _aserved(driver: Driver, seen: int | None) -> tuple[str, int]:
    cache = driver.served_models
    token = _running_loop_token()[1]
    while True:
        ids = cache.fresh(seen)
        if ids is not None:
            return pick_model(ids, driver.base_url), cache.generation
        pending = cache.pending
        if pending is None or pending[0] is not token:
            break  # nobody reads, or another event loop does: read here
        generation = cache.generation
        event: anyio.Event = pending[1]  # type: ignore[assignment]
        await event.wait()
        if cache.generation != generation:
            seen = None  # that read is the refresh this caller wanted
    event = anyio.Event()
    cache.pending = (token, event)
    try:
        ids = await driver.arun(served_models_plan())
        cache.store(ids)
    finally:
        cache.pending = None
        event.set()
    return pick_model(ids, driver.base_url), cache.generation


def _any_model_not_found(results: object) -> bool:
    # A fan-out with return_exceptions=True returns its failures as items.
    return isinstance(results, list) and any(is_model_not_found(r) for r in results)


def _retry_left(policy: RetryPolicy) -> RetryPolicy | None:
    left = policy.max_retries - 1
    return None if left < 0 else policy.with_max_retries(left)


def with_model(
    driver: Driver,
    model: str | None,
    policy: RetryPolicy,
    build: Callable[[str], R],
    call: Callable[[R, RetryPolicy], T],
    *,
    resend: bool = True,
) -> T:
    """``call(build(model), policy)``, resolving ``model`` when it is ``None``.

    ``resend=False`` (fan-outs): a ``model_not_found`` only refreshes the cache.
    """
    if model is not None:
        return call(build(model), policy)
    if driver.served_models.ids is None:
        build(PROBE_MODEL)  # bad arguments raise before /v1/models is read
    name, seen = _served(driver, None)
    try:
        out = call(build(name), policy)
    except RLinfHTTPError as exc:
        if not is_model_not_found(exc):
            raise
        fresh, _ = _served(driver, seen)
        left = _retry_left(policy)
        if not resend or left is None:
            raise
        return call(build(fresh), left)
    if not resend and _any_model_not_found(out):
        with contextlib.suppress(RLinfHTTPError):  # the results are returned regardless
            _served(driver, seen)  # a fan-out's item: the next call uses a fresh list
    return out


async def awith_model(
    driver: Driver,
    model: str | None,
    policy: RetryPolicy,
    build: Callable[[str], R],
    call: Callable[[R, RetryPolicy], Awaitable[T]],
    *,
    resend: bool = True,
) -> T:
    """Async :func:`with_model`."""
    if model is not None:
        return await call(build(model), policy)
    if driver.served_models.ids is None:
        build(PROBE_MODEL)
    name, seen = await _aserved(driver, None)
    try:
        out = await call(build(name), policy)
    except RLinfHTTPError as exc:
        if not is_model_not_found(exc):
            raise
        fresh, _ = await _aserved(driver, seen)
        left = _retry_left(policy)
        if not resend or left is None:
            raise
        return await call(build(fresh), left)
    if not resend and _any_model_not_found(out):
        with contextlib.suppress(RLinfHTTPError):  # the results are returned regardless
            await _aserved(driver, seen)  # a fan-out's item: the next call uses a fresh list
    return out


def send_model(
    driver: Driver,
    model: str | None,
    policy: RetryPolicy,
    build: Callable[[str], Operation[T]],
    timeout: TimeoutTypes | _Unset,
) -> T:
    """:func:`with_model` of one ``driver.send``."""

    def send(op: Operation[T], retry: RetryPolicy) -> T:
        return driver.send(op, timeout=timeout, retry=retry)

    return with_model(driver, model, policy, build, send)


async def asend_model(
    driver: Driver,
    model: str | None,
    policy: RetryPolicy,
    build: Callable[[str], Operation[T]],
    timeout: TimeoutTypes | _Unset,
) -> T:
    """Async :func:`send_model`."""

    async def send(op: Operation[T], retry: RetryPolicy) -> T:
        return await driver.asend(op, timeout=timeout, retry=retry)

    return await awith_model(driver, model, policy, build, send)


def resolve_model(driver: Driver, model: str | None) -> str:
    """``model``, else the served model (``GET /v1/models``, cached)."""
    return model if model is not None else _served(driver, None)[0]


async def aresolve_model(driver: Driver, model: str | None) -> str:
    """Async :func:`resolve_model`."""
    return model if model is not None else (await _aserved(driver, None))[0]


def target_index(driver: Driver, target: int | str | None, by_model: bool) -> int | None:
    """``target_worker=`` as smg's worker index (a URL costs one ``GET /workers``;
    ``by_model``: for a call routed by model, see :mod:`rlinf_http._core.targeting`)."""
    checked = check_target_worker(target)
    if not isinstance(checked, str):
        return checked
    return driver.run(target_index_plan(checked, driver.base_url, by_model))


async def atarget_index(driver: Driver, target: int | str | None, by_model: bool) -> int | None:
    """Async :func:`target_index`."""
    checked = check_target_worker(target)
    if not isinstance(checked, str):
        return checked
    return await driver.arun(target_index_plan(checked, driver.base_url, by_model))
