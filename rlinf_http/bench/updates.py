"""Weight updates under load (``rlinf-http bench --weight-update-every``).

While the measured load runs, :func:`run_updates` runs the fleet's update step
(``fleet.async_update_weights``: pause -> drain -> load from disk -> version stamp
-> continue) against the target's
workers (a router's fleet, or a server as a fleet of one) every N seconds, or
after every N completed RL groups. :func:`update_step` is the one place that
calls the update step. :func:`update_metrics` then reads, from the requests'
timelines, what each update cost the rollout: time to the first token after the
continue, requests aborted or retracted, tokens discarded, completions that
mixed weight versions. Everything but :func:`run_updates` and
:func:`update_step` is pure.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
from pydantic import BaseModel

from .._client import InferenceHTTPClient
from .._errors import WeightUpdateStepError
from .._fleet import Fleet, WeightUpdateReport
from .metrics import RequestRecord
from .options import BenchOptionError

__all__ = [
    "PAUSE_MODES",
    "UpdateEvent",
    "WeightUpdateMetrics",
    "mixed_version_share",
    "parse_update_every",
    "run_updates",
    "update_metrics",
    "update_step",
]

PauseMode = Literal["retract", "abort", "in_place"]
PAUSE_MODES: tuple[PauseMode, ...] = ("retract", "abort", "in_place")
UpdateUnit = Literal["seconds", "groups"]

_clock = time.perf_counter
_EVERY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|g)?\s*$")
#: how long one phase of an update may take before it counts as failed (s)
PHASE_DEADLINE_S = 60.0
_POLL_S = 0.005


def parse_update_every(value: str) -> tuple[UpdateUnit, float]:
    """``"2"`` / ``"2s"`` -> every 2 s; ``"4g"`` -> after every 4 completed RL groups."""
    m = _EVERY.match(value)
    if m is None:
        raise BenchOptionError(
            "--weight-update-every",
            f"expected seconds (2, 0.5s) or completed RL groups (4g), got {value!r}",
        )
    amount = float(m.group(1))
    if m.group(2) == "g":
        if amount < 1 or amount != int(amount):
            raise BenchOptionError(
                "--weight-update-every",
                f"a number of groups must be a whole number >= 1: {value!r}",
            )
        return "groups", amount
    if not amount > 0 or math.isinf(amount):
        raise BenchOptionError("--weight-update-every", f"seconds must be > 0, got {value!r}")
    return "seconds", amount


# ---------------------------------------------------------------------------------
# the update step


@dataclass
class UpdateEvent:
    """One update as it ran: when (on the run's timeline, s) and its phase times (s).

    A phase time is the slowest worker's (the fleet runs a phase on every worker
    at once); ``continue_start`` is when the continue phase began.
    """

    index: int
    version: str
    pause_mode: str
    workers: int
    start: float = 0.0
    continue_start: float = 0.0
    end: float = 0.0
    pause_s: float = 0.0
    drain_s: float = 0.0
    load_s: float = 0.0
    continue_s: float = 0.0
    ok: bool = True
    error: str = ""
    #: the update step's one-line summary (per worker outcome and timings)
    summary: str = ""
    #: workers the failed step left paused or took out of the router, put back by the bench
    restored: list[str] = field(default_factory=list)


def _slowest(report: WeightUpdateReport, phase: str) -> float:
    return max(
        (w.phases[phase].seconds for w in report.workers.values() if phase in w.phases),
        default=0.0,
    )


async def update_step(
    fleet: Fleet, event: UpdateEvent, *, path: str, t0: float, deadline: float = PHASE_DEADLINE_S
) -> None:
    """The fleet's update step (``fleet.async_update_weights``): pause every worker
    (``event.pause_mode``), load ``path`` as ``event.version``, continue; fills
    ``event`` from its report. A failure is recorded in ``event``, never raised.
    """
    event.start = _clock() - t0
    report: WeightUpdateReport | None = None
    try:
        report = await fleet.async_update_weights(
            from_disk=path,
            version=event.version,
            pause=event.pause_mode,  # type: ignore[arg-type]
            pause_timeout=deadline,
            load_timeout=deadline,
            continue_timeout=deadline,
            # the bench restores a failed worker at once: its held requests go on
            abort_failed=False,
        )
        event.ok = report.ok
    except WeightUpdateStepError as exc:
        report = exc.report
        event.ok = False
    except Exception as exc:
        event.ok = False
        event.error = f"{type(exc).__name__}: {exc}"[:500]
    event.end = _clock() - t0
    if report is not None:
        event.summary = report.summary()
        if not event.ok and not event.error:
            event.error = event.summary[:500]
        event.pause_s = _slowest(report, "pause")
        event.drain_s = _slowest(report, "drain")
        event.load_s = _slowest(report, "load")
        event.continue_s = _slowest(report, "continue")
    if report is not None and (report.left_paused or report.removed_from_router):
        # the step leaves a failed worker paused (and out of the router) on purpose; a
        # benchmark puts it back at once so the load goes on (it serves what it holds)
        event.restored = sorted({*report.left_paused, *report.removed_from_router})
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(deadline):
                restored = await fleet.async_restore(report, timeout=deadline)
            failed = sorted(url for url, err in restored.items() if err is not None)
        except Exception as exc:
            failed = [f"{type(exc).__name__}: {exc}"]
        if failed:
            event.error = f"{event.error}; restore failed: {failed}"[:1000]
    # continue is the step's last phase: it started that long before the call returned
    event.continue_start = event.end - event.continue_s


def _groups_done(records: Sequence[RequestRecord]) -> int:
    members: dict[int, bool] = {}
    for r in records:
        if r.group >= 0:
            done = r.success or r.error_kind is not None
            members[r.group] = members.get(r.group, True) and done
    return sum(members.values())


async def run_updates(
    url: str,
    *,
    every: float,
    unit: UpdateUnit,
    pause: PauseMode,
    path: str | None,
    t0: float,
    records: Sequence[RequestRecord],
    stop: anyio.Event,
    headers: dict[str, str] | None = None,
    events: list[UpdateEvent],
) -> None:
    """Update the target's workers every ``every`` seconds (at ``every``, ``2 * every``...
    from ``t0``; an update that overruns delays the next) or each time ``every`` more
    RL groups finished (completed or failed), until ``stop`` is set; an update that
    started always finishes. Versions are ``bench-<run id>-<k>``.

    ``path`` None reloads the checkpoint the first worker serves (``/model_info``).
    Errors are recorded in the events (a failed fleet discovery as event 0).
    """
    client = InferenceHTTPClient(url, max_retries=0, headers=headers or None)
    run = uuid.uuid4().hex[:6]  # versions differ from any earlier run's on the same target
    try:
        fleet = await client.async_fleet()
        async with fleet:
            if path is None:
                info = await fleet.async_model_info()
                path = next(iter(info.results.values())).model_path
            k = 0
            while True:
                k += 1
                if unit == "seconds":
                    with anyio.move_on_after(max(0.0, t0 + k * every - _clock())):
                        await stop.wait()
                else:
                    while not stop.is_set() and _groups_done(records) < k * every:
                        await anyio.sleep(_POLL_S)
                if stop.is_set():
                    return
                event = UpdateEvent(k, f"bench-{run}-{k}", pause, len(fleet))
                events.append(event)
                await update_step(fleet, event, path=path or "", t0=t0)
    except Exception as exc:
        events.append(
            UpdateEvent(0, "", pause, 0, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        )
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


# ---------------------------------------------------------------------------------
# metrics (pure)


class WeightUpdateMetrics(BaseModel):
    """What one weight update cost the running load (times in ms)."""

    index: int
    version: str
    pause_mode: str
    workers: int
    ok: bool
    error: str = ""
    #: when it started (s from the run start)
    start_s: float
    #: ``/pause_generation`` latency (slowest worker; an abort pause includes its drain)
    pause_latency_ms: float
    #: pause answered -> the worker reports itself paused (``/ready`` 503) and, but for
    #: in_place, no running request (``/v1/loads``); slowest worker
    drain_time_ms: float
    #: the load from disk (with the server's cache flush); slowest worker
    load_time_ms: float
    #: ``/continue_generation`` latency (slowest worker)
    continue_time_ms: float
    #: the whole update step (pause -> drain -> load -> version stamp -> continue)
    total_ms: float
    #: workers a failed step left paused or out of the router, which the bench restored
    #: (``fleet.restore``) so that the load goes on
    restored: list[str] = []
    #: continue sent -> the first token any request received after it (None: none did)
    ttft_after_continue_ms: float | None
    #: requests in flight when the pause was sent
    in_flight_at_pause: int
    #: requests the server aborted during this update (their partial output is discarded)
    aborted: int
    #: requests held through the pause and resumed (retract / in_place)
    retracted: int
    #: tokens the aborted requests had streamed (discarded)
    tokens_discarded: int
    #: completions whose output mixes this update's version with an older one
    mixed_completions: int
    #: mixed_completions / completed requests of the run (None: the server sent no spans)
    mixed_share: float | None


def _in_flight(r: RequestRecord, at: float) -> bool:
    return r.start <= at and r.end > at


def mixed_version_share(records: Sequence[RequestRecord]) -> float | None:
    """Share of completed requests whose output mixed weight versions (None: no spans)."""
    known = [r for r in records if r.success and r.weight_versions is not None]
    if not known:
        return None
    return sum(len(r.weight_versions or ()) > 1 for r in known) / len(known)


def update_metrics(
    events: Sequence[UpdateEvent], records: Sequence[RequestRecord]
) -> list[WeightUpdateMetrics]:
    """Per update: its phase times and what it did to the requests around it."""
    done = [r for r in records if r.success]
    spans_known = any(r.weight_versions is not None for r in done)
    out: list[WeightUpdateMetrics] = []
    for e in events:
        held = [r for r in records if _in_flight(r, e.start)]
        aborted = [r for r in records if r.aborted and e.start <= r.end <= e.end]
        first = min(
            (t for r in records for t in r.chunk_times if t >= e.continue_start), default=None
        )
        mixed = sum(
            1
            for r in done
            if r.weight_versions
            and len(r.weight_versions) > 1
            and e.version in r.weight_versions[1:]
        )
        out.append(
            WeightUpdateMetrics(
                index=e.index,
                version=e.version,
                pause_mode=e.pause_mode,
                workers=e.workers,
                ok=e.ok,
                error=e.error,
                start_s=e.start,
                pause_latency_ms=1000.0 * e.pause_s,
                drain_time_ms=1000.0 * e.drain_s,
                load_time_ms=1000.0 * e.load_s,
                continue_time_ms=1000.0 * e.continue_s,
                total_ms=1000.0 * (e.end - e.start),
                restored=list(e.restored),
                ttft_after_continue_ms=None
                if first is None
                else 1000.0 * (first - e.continue_start),
                in_flight_at_pause=len(held),
                aborted=len(aborted),
                retracted=0 if e.pause_mode == "abort" else sum(not r.aborted for r in held),
                tokens_discarded=sum(r.tokens_received for r in aborted),
                mixed_completions=mixed,
                mixed_share=mixed / len(done) if spans_known and done else None,
            )
        )
    return out
