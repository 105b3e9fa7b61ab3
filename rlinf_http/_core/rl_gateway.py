"""smg's RL control plane (``/v1/rl/*``) without I/O: discovery, fan-outs, answers, lockstep.

smg 1.13 started with ``--enable-rl`` lists its workers (``GET /v1/rl/workers``)
and sends one engine call to every worker a selector matches
(``/v1/rl/engine/{path}?selector=...``), answering ``{"results": {worker_id:
{url, status, latency_ms, body}}, "failed": [{worker_id, url, status, error,
message}], ...}`` (200, or 207 on partial failure).

A fleet call is one core plan per worker (:mod:`.control`, :mod:`.plans`).
:class:`Lockstep` runs those plans through the gateway unchanged: at each step
the workers whose plans send the same request share ONE fan-out (naming them by
id), and each worker's answer is unwrapped from ``results[id]`` into the
:class:`RawResponse` the plan would have got from the worker itself -- so the
same parsers and the same error mapping apply (a refused load is a
``WeightUpdateError`` with the engine's message, a busy flush is
``flushed=False``, a 404 falls back to the old route). Steps that differ
between workers (a rank offset each) are separate fan-outs sent at the same
time; a call bounded per worker (the fleet's ``call_timeout``, a cleanup's
deadline, a health probe) is sent per worker, so a hung worker cannot hold up
the others' answers.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import pydantic_core

from .._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    InvalidRequestError,
    NotFoundError,
    RLinfHTTPError,
    status_error_class,
)
from .control import discover_workers_plan, worker_url
from .plans import Call, Plan, Sleep
from .requests import JSON_CONTENT_TYPE, Operation
from .responses import RawResponse, decode_json, recast, status_error

__all__ = [
    "DEFAULT_SELECTOR",
    "VIAS",
    "Discovery",
    "Lockstep",
    "Via",
    "discover_plan",
    "fanout_operation",
    "parse_fanout",
]

T = TypeVar("T")

Via = Literal["auto", "gateway", "direct"]
VIAS: tuple[str, ...] = ("auto", "gateway", "direct")
#: What a fleet selects when no selector is given: every sglang worker (smg 1.13
#: refuses ``all`` and ``*``).
DEFAULT_SELECTOR = "engine=sglang"

_JSON = (("content-type", JSON_CONTENT_TYPE),)
_TEXT = (("content-type", "text/plain; charset=utf-8"),)

# The answer of one fan-out: worker id -> that worker's response, or why it has none.
Answers = dict[str, "RawResponse | RLinfHTTPError"]


# -- discovery ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discovery:
    """Which path a fleet takes and its workers.

    ``urls`` is ``None`` for a single server (direct path); ``ids`` maps each
    worker URL to smg's worker id (gateway path only).
    """

    via: Literal["gateway", "direct"]
    urls: list[str] | None
    ids: dict[str, str] = field(default_factory=dict)


def check_via(via: object) -> Via:
    if not isinstance(via, str) or via not in VIAS:
        raise InvalidRequestError(f"via must be one of 'auto', 'gateway', 'direct', got {via!r}")
    return via  # type: ignore[return-value]


def check_selector(selector: object) -> str | None:
    if selector is None:
        return None
    if not isinstance(selector, str) or not selector.strip():
        raise InvalidRequestError(f"selector must be a non-empty str or None, got {selector!r}")
    return selector.strip()


def discover_plan(
    via: Via = "auto",
    worker_type: str | None = None,
    healthy_only: bool = False,
    selector: str | None = None,
) -> Plan[Discovery]:
    """The fleet's path and workers: smg's ``/v1/rl/workers``, else ``/workers``, else one server.

    ``via="auto"`` takes the gateway path when the base URL answers ``GET
    /v1/rl/workers`` (smg with ``--enable-rl``) and the direct path when it
    answers 404 (smg without RL mode, sglang-router 0.3.2, an sglang server).
    ``via="gateway"`` raises :class:`NotFoundError` (smg's code, e.g.
    ``unknown_url``) instead of falling back. A ``selector`` keeps the workers
    smg selects with it (asked with one read-only ``model_info`` fan-out).
    """
    via = check_via(via)
    checked = check_selector(selector)
    if checked is not None and via == "direct":
        raise InvalidRequestError(
            "selector= selects workers through the gateway: not with via='direct'"
        )
    discover_workers_plan(worker_type, healthy_only)  # checks both before any I/O
    return _discover(via, worker_type, healthy_only, checked)


def _discover(
    via: Via, worker_type: str | None, healthy_only: bool, selector: str | None
) -> Plan[Discovery]:
    if via != "direct":
        op = Operation("GET", "/v1/rl/workers", None, (), _parse_rl_workers)
        listing: list[dict[str, Any]] | None = None
        try:
            listing = yield Call(op)
        except NotFoundError as exc:
            if via == "gateway":
                raise _refined(
                    exc,
                    "the gateway has no RL control plane (GET /v1/rl/workers: 404); "
                    "start smg with --enable-rl, or use via='direct'",
                ) from None
        if listing is None and via == "gateway":
            raise InvalidRequestError(
                "via='gateway': the base URL answered GET /v1/rl/workers without smg's "
                "worker listing; is it smg started with --enable-rl?"
            )
        if listing is not None:
            workers = _rl_workers(listing, worker_type, healthy_only)
            if selector is not None:
                info = Operation("GET", "/model_info", None, (), decode_json)
                answers: Answers = yield Call(fanout_operation(info, (), selector))
                workers = {url: wid for url, wid in workers.items() if wid in answers}
            return Discovery("gateway", list(workers), workers)
    urls = yield from discover_workers_plan(worker_type, healthy_only)
    return Discovery("direct", urls)


def gateway_ids_plan() -> Plan[dict[str, str]]:
    """Worker URL -> smg id, read again from ``GET /v1/rl/workers`` (a worker
    removed and added back gets a new id)."""
    op = Operation("GET", "/v1/rl/workers", None, (), _parse_rl_workers)
    listing = yield Call(op)
    return {} if listing is None else _rl_workers(listing, None, False)


def _parse_rl_workers(raw: RawResponse) -> list[dict[str, Any]] | None:
    """smg's listing; ``None`` for any other answer (not an RL gateway)."""
    try:
        value = decode_json(raw)
    except APIResponseValidationError:
        return None
    if not isinstance(value, dict) or "protocol_version" not in value:
        return None
    workers = value.get("workers")
    if not isinstance(workers, list):
        return None
    return [w for w in workers if isinstance(w, dict)]


def _rl_workers(
    listing: list[dict[str, Any]], worker_type: str | None, healthy_only: bool
) -> dict[str, str]:
    """Worker URL -> smg id, for the sglang workers of the listing (in its order)."""
    out: dict[str, str] = {}
    for worker in listing:
        wid, url = worker.get("id"), worker.get("url")
        if not isinstance(wid, str) or not isinstance(url, str) or not url:
            continue
        if worker.get("engine", "sglang") != "sglang":
            continue
        if worker_type is not None and worker.get("worker_type", "regular") != worker_type:
            continue
        if healthy_only and worker.get("health") != "ready":
            continue
        out.setdefault(worker_url(url), wid)
    return out


# -- one fan-out ----------------------------------------------------------------------


def fanout_operation(
    op: Operation[Any], ids: Sequence[str], selector: str | None
) -> Operation[Answers]:
    """``op`` as one ``/v1/rl/engine{path}`` fan-out to the workers ``ids`` (all: ``()``).

    The selector is ``selector`` and ``id in (...)``; the body is ``op``'s (a
    body-less POST sends ``{}``: sglang needs a JSON object), its query is kept.
    """
    path, _, query = op.path.partition("?")
    parts = [selector or DEFAULT_SELECTOR]
    if ids:
        parts.append(f"id in ({','.join(ids)})")
    params = urllib.parse.urlencode({"selector": ",".join(parts)}, quote_via=urllib.parse.quote)
    content, headers = op.content, op.headers
    if op.method == "POST" and content is None:
        content, headers = b"{}", _JSON
    parse = functools.partial(parse_fanout, op.method, path)
    route = f"/v1/rl/engine{path}?{params}" + (f"&{query}" if query else "")
    return Operation(op.method, route, content, headers, parse)


def parse_fanout(method: str, path: str, raw: RawResponse) -> Answers:
    """Worker id -> the worker's own response (from ``results``), or its typed failure."""
    value = decode_json(raw)
    results = value.get("results") if isinstance(value, dict) else None
    failed = value.get("failed", []) if isinstance(value, dict) else None
    if not isinstance(results, dict) or not isinstance(failed, list):
        raise _shape_error(raw, "a fan-out answer {'results': {...}, 'failed': [...]}")
    out: Answers = {}
    for wid, result in results.items():
        if isinstance(result, dict) and isinstance(result.get("status"), int):
            out[str(wid)] = _inner(method, path, result)
    for failure in failed:
        if isinstance(failure, dict) and str(failure.get("worker_id")) not in out:
            out[str(failure.get("worker_id"))] = _failure(method, path, failure)
    return out


def _inner(method: str, path: str, result: Mapping[str, Any]) -> RawResponse:
    """One worker's answer as if it came from the worker (smg re-encodes the body)."""
    body = result.get("body")
    if isinstance(body, str):
        content, headers = body.encode("utf-8"), dict(_TEXT)
    elif body is None:
        content, headers = b"", {}
    else:
        content, headers = pydantic_core.to_json(body), dict(_JSON)
    url = f"{result.get('url', '')}{path}"
    return RawResponse(method, url, int(result["status"]), headers, content)


def _failure(method: str, path: str, failure: Mapping[str, Any]) -> RLinfHTTPError:
    """A worker the gateway got no answer from (``failed[]`` without ``results``)."""
    code = str(failure.get("error") or "unknown")
    message = str(failure.get("message") or "")
    url = f"{failure.get('url', '')}{path}"
    text = f"{method} {url} through the gateway failed: {code}: {message}"
    if code == "upstream_timeout":
        return APITimeoutError(text, method=method, url=url, code=code)
    if code == "upstream_unreachable":
        return APIConnectionError(text, method=method, url=url, code=code)
    status = failure.get("status")
    status = status if isinstance(status, int) and status >= 400 else 502
    return status_error_class(status)(
        text,
        method=method,
        url=url,
        status_code=status,
        body=dict(failure),
        error_message=message or code,
        code=code,
    )


def _shape_error(raw: RawResponse, what: str) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"{raw.method} {raw.url}: expected {what}",
        method=raw.method,
        url=raw.url,
        status_code=raw.status_code,
        raw_body=raw.content,
    )


def _refined(exc: APIStatusError, why: str) -> APIStatusError:
    """``exc`` (same class, code and body) with ``why`` in front of its message."""
    return recast(
        exc, type(exc), f"{why}: {exc}", exc.code if exc.code is not None else "unknown_url"
    )


# -- every worker's plan, step by step ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """Workers whose plans send the same request now, and that request as one fan-out."""

    urls: tuple[str, ...]
    step: Call | Sleep
    #: the fan-out to send, or (a plan waiting between steps) the wait
    request: Call | Sleep


class Lockstep(Generic[T]):
    """Run one plan per worker through the gateway, a step at a time (no I/O).

    ``groups()`` gives the fan-outs to send now (concurrently); ``feed(group,
    answer)`` hands each worker its answer and advances its plan (a plan that
    waits between steps, :class:`Sleep`, waits on its own). ``outcomes`` fills
    in as plans end; ``done`` when all did.

    smg answers a fan-out once every worker in it did, so a hung worker holds up
    the others' answers. When each worker's call has its own bound
    (``per_worker``: the fleet's ``call_timeout``, a cleanup's deadline; or a
    step's own timeout, as health probes have), every worker gets its own
    fan-out (``id in (<its id>)``), all sent at once: a worker that does not
    answer in time then fails alone, as on the direct path.
    """

    def __init__(
        self,
        work: Sequence[tuple[str, Plan[T]]],
        ids: Mapping[str, str],
        selector: str | None,
        per_worker: bool = False,
    ) -> None:
        self.outcomes: dict[str, T | Exception] = {}
        self._per_worker = per_worker
        self._plans = dict(work)
        self._ids = ids
        self._selector = selector
        self._steps: dict[str, Call | Sleep] = {}
        for url, _ in work:
            self._advance(url, None, None)

    @property
    def done(self) -> bool:
        return not self._steps

    def groups(self) -> list[Group]:
        grouped: dict[tuple[Any, ...], list[str]] = {}
        for url, step in self._steps.items():
            if isinstance(step, Sleep):
                grouped[("sleep", url)] = [url]
                continue
            op = step.op
            key: tuple[Any, ...] = (op.method, op.path, op.content, op.headers)
            key += (step.max_retries, step.timeout)
            if self._per_worker or step.timeout is not None:
                key += (url,)  # a call bounded per worker is sent per worker
            grouped.setdefault(key, []).append(url)
        out = []
        for urls in grouped.values():
            step = self._steps[urls[0]]
            if isinstance(step, Sleep):
                out.append(Group(tuple(urls), step, step))
                continue
            op = fanout_operation(step.op, [self._ids[u] for u in urls], self._selector)
            request = Call(op, max_retries=step.max_retries, timeout=step.timeout)
            out.append(Group(tuple(urls), step, request))
        return out

    def feed(self, group: Group, answer: Answers | Exception | None) -> None:
        """Hand each worker of ``group`` its answer (``answer``: the fan-out's, or its error)."""
        for url in group.urls:
            step = self._steps.pop(url)
            if isinstance(step, Sleep):  # waited: the plan goes on
                self._advance(url, None, None)
                continue
            if answer is None:  # pragma: no cover - only a wait is answered with None
                raise TypeError("a fan-out needs an answer")
            if isinstance(answer, APIStatusError) or not isinstance(answer, (dict, RLinfHTTPError)):
                # the fan-out itself was refused (a bad selector, RL mode off...):
                # no worker got the call, and no plan should read it as the worker's answer
                self._end(url, answer)
                continue
            if isinstance(answer, RLinfHTTPError):
                self._advance(url, None, answer)
                continue
            own = answer.get(self._ids[url])
            if own is None:
                self._advance(url, None, self._missing(url, step))
            elif isinstance(own, RLinfHTTPError):
                self._advance(url, None, own)
            elif not own.is_success:
                self._advance(url, None, status_error(own))
            else:
                try:
                    value = step.op.parse(own)
                except RLinfHTTPError as exc:
                    self._advance(url, None, exc)
                else:
                    self._advance(url, value, None)

    def _missing(self, url: str, step: Call) -> APIConnectionError:
        return APIConnectionError(
            f"{step.op.method} {url}{step.op.path}: the gateway's fan-out did not include "
            f"this worker (id {self._ids[url]}): was it removed from the gateway?",
            method=step.op.method,
            url=url + step.op.path,
        )

    def _end(self, url: str, error: Exception) -> None:
        self._plans[url].close()
        self.outcomes[url] = error

    def _advance(self, url: str, value: Any, error: Exception | None) -> None:
        plan = self._plans[url]
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            self.outcomes[url] = stop.value
            return
        except Exception as exc:  # the worker's outcome, as on the direct path
            self.outcomes[url] = exc
            return
        self._steps[url] = step


def send_plan(step: Call | Sleep) -> Plan[Any]:
    """A plan of the one step ``step``: how a fan-out (or a wait) runs on the gateway's driver."""
    return (yield step)
