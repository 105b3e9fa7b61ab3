"""Weight updates under load (``rlinf-http bench --weight-update-every``).

While the measured load runs, :func:`run_updates` runs the fleet's update step
(pause -> load from disk with a new version -> continue) against the target's
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
from pydantic import BaseModel

from .._client import InferenceHTTPClient
from .._fleet import Fleet
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
    """One update as it ran (times on the run's timeline, seconds)."""

    index: int
    version: str
    pause_mode: str
    workers: int
    start: float = 0.0
    paused: float = 0.0  # pause answered by every worker
    drained: float = 0.0  # no worker reports a running request
    loaded: float = 0.0  # load (and version stamp) answered
    continue_start: float = 0.0
    end: float = 0.0  # continue answered
    ok: bool = True
    error: str = ""


async def _drain(fleet: Fleet, mode: str, deadline: float) -> None:
    """Wait until no worker reports a running request (``/v1/loads``); ``in_place`` keeps
    them in place, so nothing drains."""
    if mode == "in_place":
        return
    with anyio.fail_after(deadline):
        while True:
            loads = await fleet.async_loads(raise_on_error=False)
            if all(isinstance(v, Exception) or v.num_running_reqs == 0 for v in loads.values()):
                return
            await anyio.sleep(_POLL_S)


async def update_step(
    fleet: Fleet, event: UpdateEvent, *, path: str, t0: float, deadline: float = PHASE_DEADLINE_S
) -> None:
    """Pause every worker (``event.pause_mode``), load ``path`` as ``event.version``,
    continue every worker; fills the phase times of ``event``.

    The workers are always continued, also after a failed phase (the failure is
    recorded in ``event.error``, never raised). The version stamp rides on the
    load (``weight_version``), so it aborts nothing.
    """
    mode = event.pause_mode
    event.start = _clock() - t0
    try:
        with anyio.fail_after(deadline):
            await fleet.async_pause_generation(mode)  # type: ignore[arg-type]
        event.paused = _clock() - t0
        await _drain(fleet, mode, deadline)
        event.drained = _clock() - t0
        with anyio.fail_after(deadline):
            await fleet.async_update_weights_from_disk(
                path, weight_version=event.version, flush_cache=mode != "in_place"
            )
        event.loaded = _clock() - t0
    except Exception as exc:
        event.ok = False
        event.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        event.continue_start = _clock() - t0
        with anyio.CancelScope(shield=True), anyio.move_on_after(deadline):
            result = await fleet.async_continue_generation(raise_on_error=False)
            if not result.ok and event.ok:
                event.ok = False
                event.error = f"continue_generation failed on {sorted(result.errors)}"
        event.end = _clock() - t0
    for name in ("paused", "drained", "loaded"):  # a failed phase: the later ones took 0
        if getattr(event, name) == 0.0:
            setattr(event, name, event.continue_start)


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
    """Update the target's workers every ``every`` seconds (or completed groups)
    until ``stop`` is set; an update that started always finishes.

    ``path`` None reloads the checkpoint the first worker serves (``/model_info``).
    Errors are recorded in the events (a failed fleet discovery as event 0).
    """
    client = InferenceHTTPClient(url, max_retries=0, headers=headers or None)
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
                event = UpdateEvent(k, f"bench-update-{k}", pause, len(fleet))
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
    #: pause sent -> every worker answered
    pause_latency_ms: float
    #: pause answered -> no worker reports a running request (0 for in_place)
    drain_time_ms: float
    #: load sent -> every worker answered (the load, the version stamp, the cache flush)
    load_time_ms: float
    #: continue sent -> every worker answered
    continue_time_ms: float
    #: pause sent -> continue answered
    total_ms: float
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
                pause_latency_ms=1000.0 * (e.paused - e.start),
                drain_time_ms=1000.0 * (e.drained - e.paused),
                load_time_ms=1000.0 * (e.loaded - e.drained),
                continue_time_ms=1000.0 * (e.end - e.continue_start),
                total_ms=1000.0 * (e.end - e.start),
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
