"""Multi-step calls as plans: generators that yield steps and get results back (no I/O).

A plan yields :class:`Call` (send this operation; the result or the raised
:class:`RLinfHTTPError` comes back) or :class:`Sleep`, and returns the final
value. The sync and async facades each have a ten-line driver; fallbacks
(``/server_info`` -> ``/get_server_info``), polling with deadlines
(``add_worker``, ``wait_until_ready``) and tolerated statuses live only here.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic

from .._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    InvalidRequestError,
    NotFoundError,
    RLinfHTTPError,
    ServiceUnavailableError,
    WorkerNotFoundError,
    WorkerRegistrationError,
)
from ..models import (
    FlushCacheResult,
    ModelInfo,
    ModelList,
    Readiness,
    ServerInfo,
    Worker,
    WorkerList,
)
from .requests import JSON_CONTENT_TYPE, Operation, check_timeout, encode_json
from .responses import RawResponse, decode_json, parse_model
from .waits import LAST, wait_reason, waiting_cannot_fix

__all__ = [
    "Call",
    "Plan",
    "Sleep",
    "abort_request_plan",
    "add_worker_plan",
    "flush_cache_plan",
    "health_generate_plan",
    "list_workers_plan",
    "model_info_plan",
    "models_plan",
    "readiness_plan",
    "remove_worker_plan",
    "server_info_plan",
    "wait_until_ready_plan",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """Step: send ``op`` (``max_retries``/``timeout`` ``None`` = client defaults)."""

    op: Operation[Any]
    max_retries: int | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Step: wait ``seconds``."""

    seconds: float


Plan = Generator[Call | Sleep, Any, T]


_JSON = (("content-type", JSON_CONTENT_TYPE),)


def _adapter(model: type[T]) -> Callable[[RawResponse], T]:
    adapter: pydantic.TypeAdapter[T] = pydantic.TypeAdapter(model)

    def parse(raw: RawResponse) -> T:
        return parse_model(adapter, raw)

    return parse


_server_info = _adapter(ServerInfo)
_model_info = _adapter(ModelInfo)
_model_list = _adapter(ModelList)
_worker = _adapter(Worker)
_worker_list = _adapter(WorkerList)
_readiness = _adapter(Readiness)


def _ok(raw: RawResponse) -> bool:
    return True


def _get(path: str, parse: Callable[[RawResponse], T]) -> Operation[T]:
    return Operation("GET", path, None, (), parse)


def _with_fallback(new: str, old: str, parse: Callable[[RawResponse], T]) -> Plan[T]:
    try:
        result: T = yield Call(_get(new, parse))
    except NotFoundError:
        result = yield Call(_get(old, parse))
    return result


def call_plan(op: Operation[T]) -> Plan[T]:
    """A plan of one request: ``op`` sent with the client's retry policy."""
    result: T = yield Call(op)
    return result


def server_info_plan() -> Plan[ServerInfo]:
    """``/server_info``, falling back to ``/get_server_info`` on 404 (older servers)."""
    return _with_fallback("/server_info", "/get_server_info", _server_info)


def model_info_plan() -> Plan[ModelInfo]:
    """``/model_info``, falling back to ``/get_model_info`` on 404."""
    return _with_fallback("/model_info", "/get_model_info", _model_info)


def models_plan() -> Plan[ModelList]:
    """``GET /v1/models`` (the router serves it as text/plain; parsed regardless)."""
    return (yield Call(_get("/v1/models", _model_list)))  # type: ignore[no-any-return]


def _flush_ok(raw: RawResponse) -> FlushCacheResult:
    text = raw.content.decode("utf-8", errors="replace")
    details: dict[str, Any] | None = None
    message = text.strip()
    try:
        value = decode_json(raw)
    except RLinfHTTPError:
        value = None
    if isinstance(value, dict):
        details = value
        message = str(value.get("message", message))
    return FlushCacheResult(
        flushed=True, status_code=raw.status_code, message=message, details=details
    )


def flush_cache_plan() -> Plan[FlushCacheResult]:
    """``POST /flush_cache``; a 400 (requests still running) is ``flushed=False``."""
    try:
        result: FlushCacheResult = yield Call(
            Operation("POST", "/flush_cache", None, (), _flush_ok), max_retries=0
        )
    except BadRequestError as exc:
        return FlushCacheResult(
            flushed=False, status_code=exc.status_code, message=exc.message or ""
        )
    return result


def abort_request_plan(rid: str, abort_all: bool = False) -> Plan[None]:
    """``POST /abort_request`` (servers only; the router answers 404).

    The arguments are checked when the plan is made, before any I/O.
    """
    if not isinstance(rid, str):
        raise InvalidRequestError(f"rid must be a str, got {rid!r}")
    if not rid and not abort_all:
        raise InvalidRequestError("give a rid, or abort_all=True")
    body = encode_json({"rid": rid, "abort_all": bool(abort_all)})
    return _abort(body)


def _abort(body: bytes) -> Plan[None]:
    yield Call(Operation("POST", "/abort_request", body, _JSON, _ok), max_retries=0)
    return None


def health_generate_plan(timeout: float) -> Plan[bool]:
    """``GET /health_generate``: ``True`` on 2xx, ``False`` on any failure."""
    check_timeout(timeout, "health_generate timeout", allow_none=False)
    try:
        result: bool = yield Call(_get("/health_generate", _ok), max_retries=0, timeout=timeout)
    except RLinfHTTPError:
        return False
    return result


def list_workers_plan() -> Plan[WorkerList]:
    """``GET /workers`` of the router."""
    return (yield Call(_get("/workers", _worker_list)))  # type: ignore[no-any-return]


def readiness_plan() -> Plan[Readiness]:
    """``GET /readiness`` of the router; its 503 answer is a not-ready result."""
    try:
        result: Readiness = yield Call(_get("/readiness", _readiness), max_retries=0)
    except ServiceUnavailableError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return Readiness.model_validate({"status": "not ready", **body})
    return result


def _worker_url(url: object) -> str:
    if not isinstance(url, str):
        raise InvalidRequestError(f"worker url must be a str, got {url!r}")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https", "grpc") or not parts.hostname:
        raise InvalidRequestError(f"invalid worker url {url!r}")
    # The router concatenates paths verbatim: a trailing slash breaks registration.
    return url.strip().rstrip("/")


def _deadline(timeout: float, poll_interval: float, what: str) -> float:
    """The monotonic deadline; checks both numbers before anything is sent."""
    check_timeout(timeout, f"{what} timeout", allow_none=False)
    check_timeout(poll_interval, f"{what} poll_interval", allow_none=False)
    return time.monotonic() + float(timeout)


def _bounded(deadline: float) -> float:
    """A per-request timeout that keeps one polling step within the deadline."""
    return max(deadline - time.monotonic(), 0.05)


def _listed_within(url: str, until: float, interval: float = 0.1) -> Plan[list[Worker]]:
    """The router's ``/workers`` entries for ``url``, polled until one shows or ``until``."""
    mine = _worker_url(url)
    while True:
        listing: WorkerList = yield from list_workers_plan()
        listed = [w for w in listing.workers if (w.url or "").strip().rstrip("/") == mine]
        remaining = until - time.monotonic()
        if listed or remaining <= 0:
            return listed
        yield Sleep(min(interval, remaining))


def add_worker_plan(
    url: str,
    worker_type: str,
    extra: dict[str, Any],
    timeout: float,
    poll_interval: float,
) -> Plan[Worker]:
    """``POST /workers``, then poll ``GET /workers/{id}`` until healthy or given up on.

    A 404 before the worker was ever listed means "not registered yet". The
    gateway giving up raises :class:`WorkerRegistrationError`: sglang-router
    0.3.2 reports ``job_status.status == "failed"`` with a message; smg 1.13
    drops the worker, so ``GET /workers/{id}`` turns into a 404 after it was
    listed. The deadline raises :class:`APITimeoutError` (a dead URL stays
    "processing" until the gateway's ``--worker-startup-timeout-secs``).
    """
    body = encode_json({"url": _worker_url(url), "worker_type": worker_type, **extra})
    deadline = _deadline(timeout, poll_interval, "add_worker")
    accepted = yield Call(
        Operation("POST", "/workers", body, _JSON, decode_json),
        max_retries=0,
        timeout=_bounded(deadline),
    )
    worker_id = accepted.get("worker_id") if isinstance(accepted, dict) else None
    if not isinstance(worker_id, str) or not worker_id:
        raise WorkerRegistrationError(f"the router did not return a worker_id: {accepted!r}")
    last: Worker | None = None
    seen: Worker | None = None
    while True:
        try:
            last = yield Call(
                _get(f"/workers/{worker_id}", _worker), max_retries=0, timeout=_bounded(deadline)
            )
        except NotFoundError:
            if seen is not None:
                # sglang-router 0.3.2 forgets the job of a worker it is still
                # registering when it registers several at once (404 here): the
                # listing says whether it comes in, within a short grace.
                listed = yield from _listed_within(url, min(deadline, time.monotonic() + 3.0))
                if not listed:
                    state = seen.job_status.status if seen.job_status is not None else "listed"
                    raise WorkerRegistrationError(
                        f"the gateway gave up on worker {url} (id {worker_id}): it was "
                        f"{state}, then dropped (not reachable or not healthy within the "
                        f"gateway's worker startup timeout; its log says why)"
                    ) from None
                last = listed[0]  # registered: healthy now, or polled again below
            else:
                last = None
        if last is not None:
            seen = last
            status = last.job_status.status if last.job_status is not None else None
            if status == "failed":
                message = last.job_status.message if last.job_status else None
                raise WorkerRegistrationError(
                    f"the router failed to add worker {url}: {message or 'no message'}"
                )
            if last.is_healthy and status in (None, "completed", "succeeded", "success"):
                return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            state = last.job_status.status if last and last.job_status else "not listed"
            raise APITimeoutError(
                f"worker {url} (id {worker_id}) was not healthy within {timeout} s "
                f"(last state: {state})",
                method="GET",
                url=f"/workers/{worker_id}",
            )
        yield Sleep(min(poll_interval, remaining))


def remove_worker_plan(
    worker_id: str | None, url: str | None, timeout: float, poll_interval: float
) -> Plan[bool]:
    """``DELETE /workers/{id}`` (id given, or looked up by URL), then wait until gone.

    ``worker_id`` may also be a worker URL (it contains ``://``): gateways take
    only their own ids in ``DELETE /workers/{id}``, so a URL is resolved through
    ``GET /workers`` first. Returns ``False`` when the gateway has no worker
    with the id (404: already removed). A URL that no registered worker has
    raises :class:`WorkerNotFoundError` naming the registered URLs: a mistyped
    URL must not look like a removal.
    """
    if isinstance(worker_id, str) and "://" in worker_id:
        if url is not None:
            raise InvalidRequestError("give exactly one of worker_id or url")
        worker_id, url = None, worker_id
    if (worker_id is None) == (url is None):
        raise InvalidRequestError("give exactly one of worker_id or url")
    if worker_id is not None and (not isinstance(worker_id, str) or not worker_id.strip()):
        raise InvalidRequestError(f"worker_id must be a non-empty str, got {worker_id!r}")
    if worker_id is not None and any(c.isspace() or c in "/?#%" for c in worker_id):
        raise InvalidRequestError(
            f"worker_id {worker_id!r} is neither a gateway's worker id nor a worker URL "
            "(http://host:port)"
        )
    deadline = _deadline(timeout, poll_interval, "remove_worker")
    if worker_id is None:
        wanted = _worker_url(url)
        workers: WorkerList = yield Call(_get("/workers", _worker_list), timeout=_bounded(deadline))
        matches = [w.id for w in workers.workers if (w.url or "").rstrip("/") == wanted]
        if not matches:
            registered = ", ".join(sorted(w.url or w.id for w in workers.workers)) or "none"
            raise WorkerNotFoundError(
                f"no worker with URL {wanted} is registered with the gateway "
                f"(registered: {registered})",
                method="GET",
                url="/workers",
                status_code=404,
            )
        worker_id = matches[0]
    try:
        yield Call(
            Operation("DELETE", f"/workers/{worker_id}", None, (), _ok),
            max_retries=0,
            timeout=_bounded(deadline),
        )
    except NotFoundError:
        return False
    while True:
        try:
            yield Call(
                _get(f"/workers/{worker_id}", _ok), max_retries=0, timeout=_bounded(deadline)
            )
        except NotFoundError:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise APITimeoutError(
                f"worker {worker_id} was still registered after {timeout} s",
                method="GET",
                url=f"/workers/{worker_id}",
            )
        yield Sleep(min(poll_interval, remaining))


def wait_until_ready_plan(timeout: float, poll_interval: float) -> Plan[str]:
    """Poll until the target serves: a router's ``/readiness``, else a server's ``/health``.

    Returns ``"router"`` or ``"server"``. Connection errors, timeouts, 5xx and
    429 answers mean "not yet"; the deadline raises :class:`APITimeoutError`
    saying what the last probe got. An error that waiting cannot fix (see
    :func:`~rlinf_http._core.waits.waiting_cannot_fix`: a name that does not
    resolve, an invalid URL, a TLS failure, 401/403, a 404 on ``/health``...) is
    raised at once.
    """
    deadline = _deadline(timeout, poll_interval, "wait_until_ready")
    kind = "router"
    last: str = "no answer"
    while True:
        try:
            if kind == "router":
                readiness: Readiness = yield Call(
                    _get("/readiness", _readiness),
                    max_retries=0,
                    timeout=min(poll_interval * 4 + 1, _bounded(deadline)),
                )
                if readiness.ready:
                    return kind
                last = f"router not ready: {readiness.reason or readiness.status}"
            else:
                yield Call(
                    _get("/health", _ok),
                    max_retries=0,
                    timeout=min(poll_interval * 4 + 1, _bounded(deadline)),
                )
                return kind
        except NotFoundError:
            if kind == "router":
                kind = "server"  # no /readiness: an sglang server, not the router
                continue
            raise  # no /health either: not an sglang router or server
        except APIStatusError as exc:
            if waiting_cannot_fix(exc) is not None:
                raise
            last = wait_reason(exc)
        except APIConnectionError as exc:
            why = waiting_cannot_fix(exc)
            if why is not None:
                raise APIConnectionError(
                    f"{exc} ({why}: not waiting for it)", method=exc.method, url=exc.url
                ) from exc
            last = wait_reason(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise APITimeoutError(f"not ready within {timeout:g} s{LAST}{last}")
        yield Sleep(min(poll_interval, remaining))
