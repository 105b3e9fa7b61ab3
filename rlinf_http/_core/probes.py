"""Readiness and liveness probes of an sglang 0.5.23 server, as plans (no I/O).

sglang's ``/health`` runs a one-token generation, which waits while the server
is paused: during a weight sync ``/health`` fails although the server is fine.
These probes tell the cases apart without generating:

- ``GET /ready``: 200 when the server takes new requests, 503 while paused
  (or starting, or shutting down);
- ``GET /ping`` (SageMaker's check): 200 when the server is up, *also while
  paused*; 503 when starting, unhealthy or shutting down.

``fleet.status()`` (``control.worker_state_plan``) tells a paused worker from a
dead one with them. Also here: ``/flush_cache?timeout=`` (wait
for idle, then flush) and ``/v1/loads?format=prometheus`` (text).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from .._errors import (
    BadRequestError,
    InvalidRequestError,
    ServiceUnavailableError,
)
from ..models import FlushCacheResult
from .control import LOAD_SECTIONS, _choice, _integer
from .plans import Call, Plan, _flush_ok
from .requests import Operation, check_timeout
from .responses import RawResponse

__all__ = [
    "flush_cache_when_idle_plan",
    "loads_prometheus_plan",
    "ping_plan",
    "ready_plan",
]


#: How much longer than the server-side wait a flush call may take on the wire.
FLUSH_GRACE_S = 10.0


def _true(raw: RawResponse) -> bool:
    return True


def _text(raw: RawResponse) -> str:
    return raw.content.decode("utf-8", errors="replace")


def _probe(path: str, timeout: float | None) -> Plan[bool]:
    """``True`` on 2xx, ``False`` on 503; other failures raise (the caller decides)."""
    try:
        ok: bool = yield Call(
            Operation("GET", path, None, (), _true), max_retries=0, timeout=timeout
        )
    except ServiceUnavailableError:
        return False
    return ok


def ready_plan(timeout: float | None = None) -> Plan[bool]:
    """``GET /ready``: ``True`` (takes requests) or ``False`` (503: paused, starting...).

    A server that does not answer raises :class:`~rlinf_http.APIConnectionError`:
    not ready is not dead.
    """
    return _probe("/ready", check_timeout(timeout, "ready timeout"))


def ping_plan(timeout: float | None = None) -> Plan[bool]:
    """``GET /ping``: ``True`` when the server is up (paused included), ``False`` on 503."""
    return _probe("/ping", check_timeout(timeout, "ping timeout"))


def flush_cache_when_idle_plan(timeout: float) -> Plan[FlushCacheResult]:
    """``POST /flush_cache?timeout=``: wait up to ``timeout`` s for idle, then flush.

    The right call after a weight update whose flush failed
    (:class:`~rlinf_http.CacheNotFlushedError`). Not idle in time (or another
    flush in progress) is ``flushed=False`` with sglang's message (``"Timed out
    waiting for idle state."``). The HTTP call may take ``timeout`` plus
    :data:`FLUSH_GRACE_S`.
    """
    wait = check_timeout(timeout, "flush_cache timeout", allow_none=False)
    assert wait is not None
    path = "/flush_cache?" + urllib.parse.urlencode({"timeout": repr(wait)})
    return _flush(path, wait + FLUSH_GRACE_S)


def _flush(path: str, call_timeout: float) -> Plan[FlushCacheResult]:
    try:
        result: FlushCacheResult = yield Call(
            Operation("POST", path, None, (), _flush_ok), max_retries=0, timeout=call_timeout
        )
    except BadRequestError as exc:
        text = exc.message or (exc.raw_body or b"").decode("utf-8", errors="replace").strip()
        return FlushCacheResult(flushed=False, status_code=exc.status_code, message=text)
    return result


def loads_prometheus_plan(
    include: str | Sequence[str] | None = None, dp_rank: int | None = None
) -> Plan[str]:
    """``GET /v1/loads?format=prometheus``: the load gauges as Prometheus text."""
    query: dict[str, str] = {"format": "prometheus"}
    if include is not None:
        names = [include] if isinstance(include, str) else include
        if not isinstance(names, Sequence) or not names:
            raise InvalidRequestError(
                f"include must be a section name or a list of them, got {include!r}"
            )
        query["include"] = ",".join(
            _choice(n, "each include section", LOAD_SECTIONS) for n in names
        )
    if dp_rank is not None:
        query["dp_rank"] = str(_integer(dp_rank, "dp_rank", low=0))
    path = "/v1/loads?" + urllib.parse.urlencode(query, safe=",")
    return _text_call(Operation("GET", path, None, (("accept", "text/plain"),), _text))


def _text_call(op: Operation[str]) -> Plan[str]:
    text: str = yield Call(op)
    return text
