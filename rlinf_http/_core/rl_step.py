"""Waiting on a worker's own state during a weight update, as plans (no I/O).

- :func:`drain_plan`: after ``/pause_generation``, wait until the worker says it
  is paused (``GET /ready`` answers 503 while paused) and, unless the pause keeps
  requests in place, that nothing runs any more (``/v1/loads``). A worker
  without ``/ready`` or ``/v1/loads`` (older sglang) is taken at its word.
- :func:`wait_idle_plan`: wait (bounded) until the engine is idle, as
  ``/release_memory_occupation`` requires, or raise
  :class:`~rlinf_http.EngineBusyError` saying what still runs.
- :func:`take_out_plan`: take workers out of a router's rotation (``DELETE
  /workers/{id}``, all at once) and wait until it no longer lists them; smg
  1.13 removes in the background (about 5 s), sglang-router 0.3.2 at once.
  :func:`take_out_unless_all_plan` does it unless they are every worker the
  router lists (it would be left with none).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .._errors import APITimeoutError, EngineBusyError, NotFoundError, RLinfHTTPError
from ..models import Loads, WorkerList
from .control import (
    PAUSE_MODES,
    PauseMode,
    _choice,
    loads_plan,
    release_memory_occupation_plan,
    worker_url,
)
from .plans import Call, Plan, Sleep, list_workers_plan
from .probes import ready_plan
from .requests import Operation, check_timeout
from .responses import RawResponse

__all__ = [
    "IDLE_TIMEOUT_S",
    "POLL_INTERVAL_S",
    "drain_plan",
    "release_when_idle_plan",
    "take_out_plan",
    "take_out_unless_all_plan",
    "wait_idle_plan",
]

#: How long ``release_memory_occupation`` waits for an idle engine by default (seconds).
IDLE_TIMEOUT_S = 30.0

#: Seconds between two looks at a worker's state.
POLL_INTERVAL_S = 0.05


def _left(end: float) -> float:
    return max(0.0, end - time.monotonic())


def _probe_bound(end: float) -> float:
    """A per-probe timeout: what is left of the deadline, at least a little."""
    return max(0.5, _left(end))


def drain_plan(mode: PauseMode, timeout: float) -> Plan[None]:
    """Wait until a paused worker reports itself paused and drained, within ``timeout`` s.

    Paused: ``/ready`` answers 503 (sglang 0.5.23; a 404 means no ``/ready``:
    not checked). Drained (modes ``abort`` and ``retract``): ``/v1/loads``
    counts no running request (``in_place`` keeps them: not checked). Past the
    deadline it raises :class:`~rlinf_http.APITimeoutError` saying which of the
    two did not happen.
    """
    _choice(mode, "pause", PAUSE_MODES)
    bound = check_timeout(timeout, "pause_timeout", allow_none=False)
    assert bound is not None
    return _drain(mode, bound)


def _drain(mode: str, timeout: float) -> Plan[None]:
    end = time.monotonic() + timeout
    has_ready, has_loads = True, mode != "in_place"
    while True:
        paused = drained = True
        running = 0
        if has_ready:
            try:
                paused = not (yield from ready_plan(_probe_bound(end)))
            except NotFoundError:
                has_ready = False
                paused = True
        if has_loads:
            try:
                loads: Loads = yield from loads_plan()
            except NotFoundError:
                has_loads = False
            else:
                running = loads.num_running_reqs
                drained = running == 0
        if paused and drained:
            return None
        if _left(end) <= 0:
            missing = []
            if not paused:
                missing.append("it still answers /ready with 200 (not paused)")
            if not drained:
                missing.append(f"{running} requests still running (/v1/loads)")
            raise APITimeoutError(
                f"the worker did not report itself paused and drained within {timeout:g} s "
                f"after pause_generation: {'; '.join(missing)}"
            )
        yield Sleep(min(POLL_INTERVAL_S, _left(end)))


def wait_idle_plan(timeout: float) -> Plan[None]:
    """Wait until the engine is idle, within ``timeout`` s, else raise ``EngineBusyError``.

    Idle is what sglang checks before releasing memory: no running request,
    and no waiting one unless the engine is paused (waiting requests are
    ignored then; ``/ready`` answers 503). A server without ``/v1/loads`` is
    not checked.
    """
    bound = check_timeout(timeout, "idle_timeout", allow_none=False)
    assert bound is not None
    return _wait_idle(bound)


def _wait_idle(timeout: float) -> Plan[None]:
    end = time.monotonic() + timeout
    while True:
        try:
            loads: Loads = yield from loads_plan()
        except NotFoundError:
            return None  # no /v1/loads (older sglang): nothing to check with
        running, waiting = loads.num_running_reqs, loads.num_waiting_reqs
        if running == 0 and waiting == 0:
            return None
        if running == 0:
            try:
                ready = yield from ready_plan(_probe_bound(end))
            except NotFoundError:
                ready = True
            if not ready:
                return None  # paused: sglang ignores the waiting requests
        if _left(end) <= 0:
            raise EngineBusyError(
                f"the engine is not idle after {timeout:g} s: {running} requests running, "
                f"{waiting} waiting. sglang releases memory only when idle (it fails the "
                "call otherwise): pause first (pause_generation('retract') or 'abort'), or "
                "wait for the requests to end",
                running=running,
                waiting=waiting,
            )
        yield Sleep(min(POLL_INTERVAL_S * 4, _left(end)))


def release_when_idle_plan(tags: Sequence[str] | None, idle_timeout: float) -> Plan[None]:
    """Wait until the engine is idle (:func:`wait_idle_plan`), then release ``tags``.

    sglang fails a release on a busy engine (its scheduler asserts idleness):
    this raises :class:`~rlinf_http.EngineBusyError` instead, and sends nothing.
    """
    release = release_memory_occupation_plan(tags)  # both checked before any I/O
    wait = wait_idle_plan(idle_timeout)
    return _then(wait, release)


def _then(first: Plan[None], second: Plan[None]) -> Plan[None]:
    yield from first
    yield from second


def _done(raw: RawResponse) -> bool:
    return True


def _listed(listing: WorkerList, urls: Sequence[str]) -> dict[str, list[str]]:
    """URL -> the router's ids for it (a DP-aware router lists one per rank)."""
    ids: dict[str, list[str]] = {url: [] for url in urls}
    for worker in listing.workers:
        url = worker_url(worker.url or "")
        if url in ids and worker.id:
            ids[url].append(worker.id)
    return ids


def take_out_plan(urls: Sequence[str], timeout: float) -> Plan[dict[str, bool]]:
    """Remove ``urls`` from the router's rotation; URL -> whether it is out now.

    Every matching ``/workers`` entry is deleted at once, then the listing is
    polled until none is left or ``timeout`` s passed. A URL the router did not
    list is ``False`` (nothing was taken out).
    """
    end = time.monotonic() + timeout
    listing: WorkerList = yield from list_workers_plan()
    ids = _listed(listing, urls)
    accepted: set[str] = set()  # smg 1.13 accepts a DELETE and removes ~5 s later
    for url, worker_ids in ids.items():
        for worker_id in worker_ids:
            try:
                yield Call(
                    Operation("DELETE", f"/workers/{worker_id}", None, (), _done),
                    max_retries=0,
                    timeout=_probe_bound(end),
                )
            except NotFoundError:
                continue
            except RLinfHTTPError:
                continue  # still listed below: reported as not taken out
            accepted.add(url)
    asked = [url for url, worker_ids in ids.items() if worker_ids]
    still = yield from wait_unlisted_plan(asked, _left(end))
    # an accepted removal still pending at the deadline is out all the same
    return {url: url in asked and (url not in still or url in accepted) for url in urls}


#: How long to wait for a removal the router accepted to end (smg 1.13 drains a
#: worker for 5 s before it stops listing it).
UNLIST_WAIT_S = 10.0


def listed_after_removals_plan(urls: Sequence[str], timeout: float) -> Plan[set[str]]:
    """The URLs the router still lists once removals it accepted had time to end.

    smg 1.13 ends a removal ~5 s after accepting it: polled (at most ``timeout``
    s). sglang-router 0.3.2 removes at once (its workers carry no
    ``runtime_type``): read once, so a worker it lists is listed for good.
    """
    listing: WorkerList = yield from list_workers_plan()
    still = {url for url, worker_ids in _listed(listing, urls).items() if worker_ids}
    if not still or not any(worker.runtime_type is not None for worker in listing.workers):
        return still
    return (yield from wait_unlisted_plan(sorted(still), timeout))


def wait_unlisted_plan(urls: Sequence[str], timeout: float) -> Plan[set[str]]:
    """Poll the router's ``/workers`` until it lists none of ``urls`` or ``timeout``
    s passed (at least one look); the URLs it still lists. Sends no removal."""
    end = time.monotonic() + timeout
    while True:
        listing: WorkerList = yield from list_workers_plan()
        still = {url for url, worker_ids in _listed(listing, urls).items() if worker_ids}
        if not still or _left(end) <= 0:
            return still
        yield Sleep(min(POLL_INTERVAL_S * 2, _left(end)))


def take_out_unless_all_plan(urls: Sequence[str], timeout: float) -> Plan[dict[str, bool] | None]:
    """:func:`take_out_plan`, unless ``urls`` are every worker the router lists.

    Taking them all out would leave the router with no worker at all: nothing
    is sent and the answer is ``None`` (they stay in its rotation).
    """
    listing: WorkerList = yield from list_workers_plan()
    listed = {worker_url(worker.url or "") for worker in listing.workers}
    if listed and listed <= set(urls):
        return None
    return (yield from take_out_plan(urls, timeout))
