"""The RL update step's bookkeeping: its arguments, per-worker state and report (no I/O).

``fleet.update_weights(...)`` (written once in ``_async.py``) runs, on every
worker, pause -> drain check -> load (in a begin/end session where sglang
needs one) -> flush if the load's own flush failed -> version stamp ->
continue. Each phase runs on all the workers still in the step at once, with
its own deadline; a worker that fails a phase (or passes its deadline) leaves
the step, paused, and once it is out of the router the requests it holds are
aborted (``abort``). This module checks the arguments, builds each phase's plan
per worker, records what happened and writes the :class:`WeightUpdateReport`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._core import control
from .._core.control import PAUSE_MODES, PauseMode, Selector
from .._core.plans import Plan, abort_request_plan
from .._core.probes import flush_cache_when_idle_plan
from .._core.requests import check_timeout
from .._core.rl_step import drain_plan
from .._errors import CacheNotFlushedError, InvalidRequestError
from ..models import FlushCacheResult
from ._result import FleetResult

__all__ = [
    "PHASES",
    "Deadline",
    "PhaseResult",
    "StepRun",
    "UpdateStep",
    "WeightUpdateReport",
    "WorkerUpdate",
]

Source = Literal["disk", "distributed", "tensor"]
Outcome = Literal["updated", "flush_pending", "not_loaded", "failed"]
Left = Literal["continued", "paused", "unknown"]

#: The phases of a step, in order (``flush`` only after a load whose own flush failed;
#: ``abort`` only on the failed workers the step left paused).
PHASES: tuple[str, ...] = ("pause", "drain", "load", "flush", "stamp", "continue", "abort")


@dataclass(frozen=True)
class PhaseResult:
    """One phase on one worker: whether it succeeded, how long it took, its error."""

    ok: bool
    seconds: float
    error: Exception | None = None


@dataclass(frozen=True)
class WorkerUpdate:
    """What the step did on one worker.

    ``outcome``: ``"updated"`` (new weights, stamped, continued);
    ``"flush_pending"`` (new weights and continued, but the cache holds entries
    of the old weights: flush it when idle); ``"not_loaded"`` (the step stopped
    before loading because the quorum could not be met any more: old weights,
    continued); ``"failed"`` (``failed_phase`` says where, ``error`` why).
    ``left`` is where the worker was left: ``"continued"``, ``"paused"`` (on
    purpose: a failed load leaves stale or half-loaded weights) or
    ``"unknown"`` (it did not answer). ``removed_from_router``: taken out of the
    router's rotation until ``fleet.restore(report)``; ``kept_in_router``: failed
    but kept in it, because every worker the router lists failed (taking them
    out would leave it with none). ``requests_aborted``: whether the requests a
    failed, paused worker held were aborted (``phases["abort"]``).
    """

    url: str
    outcome: Outcome
    left: Left
    phases: dict[str, PhaseResult]
    failed_phase: str | None = None
    error: Exception | None = None
    removed_from_router: bool = False
    kept_in_router: bool = False

    @property
    def updated(self) -> bool:
        """Whether the worker serves the new weights (flush pending included)."""
        return self.outcome in ("updated", "flush_pending")

    def _seconds(self, phase: str) -> float | None:
        result = self.phases.get(phase)
        return None if result is None else result.seconds

    @property
    def pause_s(self) -> float | None:
        """Latency of ``/pause_generation`` (an ``abort`` pause includes the drain)."""
        return self._seconds("pause")

    @property
    def drain_s(self) -> float | None:
        """From the pause's answer until the worker reported itself paused and drained."""
        return self._seconds("drain")

    @property
    def load_s(self) -> float | None:
        """The load (with its begin/end session and the server's cache flush)."""
        return self._seconds("load")

    @property
    def continue_s(self) -> float | None:
        """Latency of ``/continue_generation``."""
        return self._seconds("continue")

    @property
    def requests_aborted(self) -> bool | None:
        """``/abort_request`` (``abort_all``) on this failed, paused worker: ``True``
        sent (the requests it held come back with finish reason ``abort``; see
        the guide for what ``in_place`` keeps until restore), ``False`` failed
        (``phases["abort"].error``), ``None`` not tried."""
        result = self.phases.get("abort")
        return None if result is None else result.ok


@dataclass(frozen=True)
class WeightUpdateReport:
    """The outcome of ``fleet.update_weights(...)``: per worker and phase, with timings."""

    version: str
    source: Source
    pause: str
    #: how many workers had to update
    quorum: int
    workers: dict[str, WorkerUpdate]
    seconds: float
    #: the router the failed workers were taken out of (``None``: no router)
    router_url: str | None = None

    @property
    def updated(self) -> list[str]:
        """The workers that serve the new weights."""
        return [url for url, w in self.workers.items() if w.updated]

    @property
    def failed(self) -> list[str]:
        """The workers that failed (``workers[url].failed_phase`` says where)."""
        return [url for url, w in self.workers.items() if w.outcome == "failed"]

    @property
    def flush_pending(self) -> list[str]:
        """Updated workers whose cache could not be flushed yet."""
        return [url for url, w in self.workers.items() if w.outcome == "flush_pending"]

    @property
    def left_paused(self) -> list[str]:
        """The workers left paused (or not answering) on purpose."""
        return [url for url, w in self.workers.items() if w.left != "continued"]

    @property
    def removed_from_router(self) -> list[str]:
        """The workers taken out of the router's rotation."""
        return [url for url, w in self.workers.items() if w.removed_from_router]

    @property
    def kept_in_router(self) -> list[str]:
        """Failed workers kept in the router's rotation (paused): taking them out would
        have left the router with no worker."""
        return [url for url, w in self.workers.items() if w.kept_in_router]

    @property
    def quorum_met(self) -> bool:
        return len(self.updated) >= self.quorum

    @property
    def ok(self) -> bool:
        """Every worker serves the new weights, flushed."""
        return all(w.outcome == "updated" for w in self.workers.values())

    @property
    def errors(self) -> dict[str, Exception]:
        """Worker URL -> the error that failed it."""
        return {
            url: w.error
            for url, w in self.workers.items()
            if w.outcome == "failed" and w.error is not None
        }

    @property
    def restore_hint(self) -> str:
        """The exact calls that undo what the step left (empty when nothing is left)."""
        calls: list[str] = []
        for url in self.left_paused:
            calls.append(f"fleet.client({url!r}).continue_generation()")
        for url in self.removed_from_router:
            calls.append(f"InferenceHTTPClient({self.router_url!r}).add_worker({url!r})")
        for url in self.flush_pending:
            calls.append(f"fleet.client({url!r}).flush_cache()  # once it is idle")
        if not calls:
            return ""
        head = "fleet.restore(report) does the first two kinds, i.e. " if self.failed else ""
        return head + "; ".join(calls)

    def summary(self) -> str:
        """One line: the version, the counts, and per worker its outcome and timings."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}"

        aborted = {None: "", True: ", held requests aborted", False: ", abort failed"}
        parts = []
        for url, w in self.workers.items():
            where = f"@{w.failed_phase}" if w.failed_phase else ""
            parts.append(
                f"{url} {w.outcome}{where} pause={ms(w.pause_s)} drain={ms(w.drain_s)} "
                f"load={ms(w.load_s)} continue={ms(w.continue_s)} ms" + aborted[w.requests_aborted]
            )
        met = "met" if self.quorum_met else "NOT met"
        line = (
            f"update_weights {self.version!r} from {self.source} (pause={self.pause}): "
            f"{len(self.updated)}/{len(self.workers)} updated, quorum {self.quorum} {met}, "
            f"{self.seconds:.3f} s; " + "; ".join(parts)
        )
        if self.kept_in_router:
            line += (
                f". Every worker {self.router_url} lists failed: they stay in its "
                "rotation, paused (taking them out would leave it with none), so "
                "requests through it wait until a new update_weights or fleet.restore"
            )
        hint = self.restore_hint
        return f"{line}. To restore: {hint}" if hint else line


# -- arguments ---------------------------------------------------------------------------


def _quorum(quorum: int | float | None, workers: int) -> int:
    """The number of workers that must update: all, a count, or a fraction (rounded up)."""
    if quorum is None:
        return workers
    if isinstance(quorum, bool) or not isinstance(quorum, (int, float)):
        raise InvalidRequestError(f"quorum must be None, an int or a float, got {quorum!r}")
    if isinstance(quorum, int):
        if not 1 <= quorum <= workers:
            raise InvalidRequestError(
                f"quorum must be a count in [1, {workers}] (the fleet's workers), got {quorum}"
            )
        return quorum
    if not (0.0 < quorum <= 1.0) or math.isnan(quorum):
        raise InvalidRequestError(f"a quorum fraction must be in (0, 1], got {quorum!r}")
    return max(1, math.ceil(quorum * workers - 1e-9))


def _deadline(value: object, what: str) -> float:
    bound = check_timeout(value, what, allow_none=False)
    assert bound is not None
    if bound <= 0:
        raise InvalidRequestError(f"{what} must be > 0 seconds, got {value!r}")
    return bound


@dataclass(frozen=True)
class Deadline:
    """One deadline for several calls in turn (``fleet.restore``)."""

    end: float

    @classmethod
    def after(cls, seconds: object, what: str) -> Deadline:
        return cls(time.monotonic() + _deadline(seconds, what))

    def left(self) -> float:
        """Seconds left, at least a little (a call made at the end still gets an answer)."""
        return max(0.05, self.end - time.monotonic())


@dataclass
class UpdateStep:
    """The checked arguments of one step and the plan of each phase per worker."""

    urls: list[str]
    source: Source
    version: str
    pause: PauseMode
    quorum: int
    pause_timeout: float
    load_timeout: float
    continue_timeout: float
    flush_timeout: float
    abort_all_requests: bool
    abort_failed: bool
    load: Callable[[str], Plan[Any]]

    @classmethod
    def build(
        cls,
        urls: list[str],
        payloads: Callable[[Any], Mapping[str, Sequence[bytes | str]]],
        *,
        from_disk: str | None,
        from_distributed: tuple[Sequence[str], Sequence[Any], Sequence[Sequence[int]]] | None,
        from_tensor: Any,
        version: str,
        pause: PauseMode,
        quorum: int | float | None,
        pause_timeout: float,
        load_timeout: float,
        continue_timeout: float,
        flush_timeout: float,
        abort_all_requests: bool,
        abort_failed: bool,
        group_name: str,
        load_format: str | None,
        selector: Selector,
        extra: Mapping[str, Any],
    ) -> UpdateStep:
        given = [
            name
            for name, value in (
                ("from_disk", from_disk),
                ("from_distributed", from_distributed),
                ("from_tensor", from_tensor),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise InvalidRequestError(
                "give exactly one of from_disk=path, from_distributed=(names, dtypes, shapes) "
                f"or from_tensor=payloads, got {given or 'none'}"
            )
        control._text(version, "version")
        control._choice(pause, "pause", PAUSE_MODES)
        control._flag(abort_all_requests, "abort_all_requests")
        common: dict[str, Any] = {
            "weight_version": version,
            "abort_all_requests": abort_all_requests,
            "load_format": load_format,
            "extra": extra,
        }
        load: Callable[[str], Plan[Any]]
        if from_disk is not None:
            source: Source = "disk"
            control.update_weights_from_disk_plan(from_disk, **common)  # checked now

            def load(_: str) -> Plan[Any]:
                return control.update_weights_from_disk_plan(from_disk, **common)

        elif from_distributed is not None:
            source = "distributed"
            if not isinstance(from_distributed, tuple) or len(from_distributed) != 3:
                raise InvalidRequestError(
                    "from_distributed must be a tuple (names, dtypes, shapes), "
                    f"got {from_distributed!r}"
                )
            names, dtypes, shapes = from_distributed
            session: dict[str, Any] = {
                "group_name": group_name,
                "selector": selector,
                "wrap_session": True,
            }
            control.update_weights_from_distributed_plan(names, dtypes, shapes, **common, **session)

            def load(_: str) -> Plan[Any]:
                return control.update_weights_from_distributed_plan(
                    names, dtypes, shapes, **common, **session
                )

        else:
            source = "tensor"
            by_url = payloads(from_tensor)
            tensor = {"selector": selector, "wrap_session": True, **common}
            for entries in by_url.values():
                control.update_weights_from_tensor_plan(entries, **tensor)

            def load(url: str) -> Plan[Any]:
                return control.update_weights_from_tensor_plan(by_url[url], **tensor)

        return cls(
            urls=urls,
            source=source,
            version=version,
            pause=pause,
            quorum=_quorum(quorum, len(urls)),
            pause_timeout=_deadline(pause_timeout, "pause_timeout"),
            load_timeout=_deadline(load_timeout, "load_timeout"),
            continue_timeout=_deadline(continue_timeout, "continue_timeout"),
            flush_timeout=_deadline(flush_timeout, "flush_timeout"),
            abort_all_requests=abort_all_requests,
            abort_failed=control._flag(abort_failed, "abort_failed"),
            load=load,
        )

    # -- the plan of each phase, per worker ----------------------------------------------

    def pause_plan(self, _: str) -> Plan[Any]:
        return control.pause_generation_plan(self.pause)

    def drain_plan(self, _: str) -> Plan[None]:
        return drain_plan(self.pause, self.pause_timeout)

    def flush_plan(self, _: str) -> Plan[FlushCacheResult]:
        return flush_cache_when_idle_plan(self.flush_timeout)

    def stamp_plan(self, _: str) -> Plan[Any]:
        # never aborts the requests in flight unless asked (sglang's default would)
        return control.update_weight_version_plan(self.version, self.abort_all_requests)

    def continue_plan(self, _: str) -> Plan[Any]:
        return control.continue_generation_plan(True)

    def abort_plan(self, _: str) -> Plan[None]:
        return abort_request_plan("", abort_all=True)


# -- the run -------------------------------------------------------------------------------


@dataclass
class _State:
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    failed_phase: str | None = None
    error: Exception | None = None
    paused: bool = False
    loaded: bool = False
    flush_pending: bool = False
    skipped: bool = False
    left: Left = "continued"
    removed: bool = False
    kept: bool = False


class StepRun:
    """What happened so far on each worker of one step."""

    def __init__(self, step: UpdateStep, router_url: str | None) -> None:
        self.step = step
        self.router_url = router_url
        self.start = time.monotonic()
        self.workers = {url: _State() for url in step.urls}
        self._times: dict[str, dict[str, float]] = {}

    # -- which workers a phase runs on ---------------------------------------------------

    def active(self) -> list[str]:
        """The workers still in the step (not failed, not stopped)."""
        return [u for u, s in self.workers.items() if s.failed_phase is None and not s.skipped]

    def loaded(self) -> list[str]:
        return [u for u in self.active() if self.workers[u].loaded]

    def flush_now(self) -> list[str]:
        """Loaded workers whose cache flush failed (flush while paused unless ``in_place``)."""
        return [u for u in self.active() if self.workers[u].flush_pending]

    def to_continue(self) -> list[str]:
        """Paused workers that may serve again: loaded, or stopped before loading."""
        return [
            u
            for u, s in self.workers.items()
            if s.paused and (s.skipped or (s.failed_phase is None and s.loaded))
        ]

    def take_out(self) -> list[str]:
        """The failed workers, to take out of the router's rotation."""
        return [u for u, s in self.workers.items() if s.failed_phase is not None]

    def to_abort(self) -> list[str]:
        """The failed workers the step left paused: their held requests are stranded.

        One that did not answer (``left == "unknown"``) is not asked again, nor one
        kept in the router (every worker failed): a resume could only land on a
        paused worker, so what it holds waits for restore instead of ending short.
        """
        if not self.step.abort_failed:
            return []
        return [
            u
            for u in self.take_out()
            if self.workers[u].left == "paused" and not self.workers[u].kept
        ]

    def abort_not_sent(self, url: str, error: Exception) -> None:
        """Record that ``url``'s held requests were not aborted, and why."""
        self.workers[url].phases["abort"] = PhaseResult(False, 0.0, error)

    def can_meet_quorum(self) -> bool:
        return len(self.active()) >= self.step.quorum

    def stop_before_load(self) -> None:
        """The quorum cannot be met: load nowhere; the paused workers are continued as they are."""
        for url in self.active():
            self.workers[url].skipped = True

    # -- recording -------------------------------------------------------------------------

    def timed(
        self, phase: str, make_plan: Callable[[str], Plan[Any]]
    ) -> Callable[[str], Plan[Any]]:
        """``make_plan`` whose plans record how long they ran on each worker."""
        times = self._times.setdefault(phase, {})

        def make(url: str) -> Plan[Any]:
            plan = make_plan(url)

            def run() -> Plan[Any]:
                t0 = time.monotonic()
                try:
                    return (yield from plan)
                finally:
                    times[url] = time.monotonic() - t0

            return run()

        return make

    def record(self, phase: str, result: FleetResult[Any], deadline: float) -> None:
        """Fold one phase's outcomes in; a worker with an error leaves the step."""
        times = self._times.get(phase, {})
        for url, value in result.items():
            state = self.workers[url]
            seconds = times.get(url, deadline)
            if isinstance(value, CacheNotFlushedError) and phase == "load":
                # the weights ARE swapped: updated, with the flush still to do
                state.phases[phase] = PhaseResult(True, seconds, value)
                state.loaded = state.flush_pending = True
                continue
            if isinstance(value, Exception):
                state.phases[phase] = PhaseResult(False, seconds, value)
                if phase in ("flush", "abort"):
                    continue  # flush: still updated, pending; abort: failed already
                state.failed_phase, state.error = phase, value
                if phase in ("pause", "continue"):
                    state.left = "unknown"
                continue
            if phase == "flush" and isinstance(value, FlushCacheResult) and not value.flushed:
                state.phases[phase] = PhaseResult(False, seconds, None)
                continue
            state.phases[phase] = PhaseResult(True, seconds)
            if phase == "pause":
                state.paused, state.left = True, "paused"
            elif phase == "load":
                state.loaded = True
            elif phase == "flush":
                state.flush_pending = False
            elif phase == "continue":
                state.left = "continued"

    def removed(self, url: str) -> None:
        self.workers[url].removed = True

    def removed_urls(self) -> list[str]:
        """The workers taken out of the router so far."""
        return [u for u, s in self.workers.items() if s.removed]

    def kept(self, url: str) -> None:
        self.workers[url].kept = True

    def report(self) -> WeightUpdateReport:
        workers: dict[str, WorkerUpdate] = {}
        for url, s in self.workers.items():
            outcome: Outcome
            if s.failed_phase is not None:
                outcome = "failed"
            elif s.skipped:
                outcome = "not_loaded"
            elif s.flush_pending:
                outcome = "flush_pending"
            else:
                outcome = "updated"
            workers[url] = WorkerUpdate(
                url=url,
                outcome=outcome,
                left=s.left,
                phases=dict(s.phases),
                failed_phase=s.failed_phase,
                error=s.error,
                removed_from_router=s.removed,
                kept_in_router=s.kept,
            )
        return WeightUpdateReport(
            version=self.step.version,
            source=self.step.source,
            pause=self.step.pause,
            quorum=self.step.quorum,
            workers=workers,
            seconds=time.monotonic() - self.start,
            router_url=self.router_url,
        )
