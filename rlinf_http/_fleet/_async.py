"""Every control call of the fleet, written once (async); ``_sync.py`` is generated from it.

Each call builds one core plan per worker (arguments checked before any I/O)
and runs them all at once with ``self._async_all`` (sync: ``self._all``), the
hand-written pair in :mod:`._base`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .._brackets import abracket
from .._core import control, plans
from .._core.control import PauseMode, Selector, WorkerState
from .._core.dataplane import build_load_lora, build_unload_lora
from .._core.plans import Plan, add_worker_plan
from .._core.rl_step import IDLE_TIMEOUT_S, release_when_idle_plan, take_out_plan
from .._errors import InvalidRequestError, WeightSyncError
from ..models import (
    FlushCacheResult,
    GenerationControlResult,
    Loads,
    LoraAdapterResult,
    ModelInfo,
    ServerInfo,
    WeightUpdateResult,
    WeightVersionResult,
)
from ._base import FleetBase, Stage, hint, undo_targets
from ._result import FleetResult, agree, check_expected
from ._step import StepRun, UpdateStep, WeightUpdateReport

if TYPE_CHECKING:
    from ._fleet import Fleet

__all__ = ["AsyncFleetCalls"]

logger = logging.getLogger("rlinf_http")


class AsyncFleetCalls(FleetBase):
    """The fleet's async calls; composed into :class:`~rlinf_http.Fleet`."""

    def _as_fleet(self) -> Fleet:
        return cast("Fleet", self)  # only Fleet composes this class

    async def _async_start(self, enter: Stage, undo: Stage, everywhere: bool) -> None:
        """Enter a state on every worker; if some fail, undo it and raise :class:`FleetError`.

        ``everywhere`` undoes on the failed workers too (a pause that failed
        with a timeout may still have paused its server).
        """
        result = await self._async_all(*enter, raise_on_error=False)
        if not result.ok:
            await self._async_all(
                *undo, raise_on_error=False, urls=undo_targets(result, everywhere)
            )
            result.raise_for_errors()

    # -- pause / continue -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def async_paused(
        self, mode: PauseMode = "abort", *, torch_empty_cache: bool = True
    ) -> AsyncIterator[Fleet]:
        """``async with fleet.async_paused(mode):`` pause every worker, run the block,
        continue every worker.

        Every worker is continued even when the block raises (that error
        propagates) or is interrupted. If the pause fails on some workers, those
        that paused are continued and :class:`~rlinf_http.FleetError` is raised.
        After a failed block the continuing is bounded (60 s; 5 s after Ctrl-C or
        a cancellation): a worker that does not answer in time is named in a
        logged warning, left paused (``fleet.async_continue_generation()``).
        """
        pause, resume = self._pause_stages(mode, torch_empty_cache)
        async with abracket(
            lambda: self._async_start(pause, resume, True),
            lambda bound: self._async_all(*resume, deadline=bound),
            resume[0],
            hint("async_continue_generation", "paused"),
        ):
            yield self._as_fleet()

    async def async_pause_generation(
        self, mode: PauseMode = "abort", *, raise_on_error: bool = True
    ) -> FleetResult[GenerationControlResult]:
        """``pause_generation`` on every worker (prefer :meth:`async_paused`)."""
        return await self._async_all(
            "pause_generation", lambda _: control.pause_generation_plan(mode), raise_on_error
        )

    async def async_continue_generation(
        self, *, torch_empty_cache: bool = True, raise_on_error: bool = True
    ) -> FleetResult[GenerationControlResult]:
        """``continue_generation`` on every worker."""
        return await self._async_all(
            "continue_generation",
            lambda _: control.continue_generation_plan(torch_empty_cache),
            raise_on_error,
        )

    async def async_abort_request(
        self, rid: str = "", *, abort_all: bool = False, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """``abort_request`` on every worker (the router does not say which one runs ``rid``)."""
        return await self._async_all(
            "abort_request", lambda _: plans.abort_request_plan(rid, abort_all), raise_on_error
        )

    # -- LoRA adapters (the router forwards no adapter management) -------------------------

    async def async_load_lora_adapter(
        self, lora_name: str, lora_path: str, *, pinned: bool = False, raise_on_error: bool = True
    ) -> FleetResult[LoraAdapterResult]:
        """``load_lora_adapter`` on every worker, so ``lora_path=lora_name`` works on any."""
        op = build_load_lora(lora_name, lora_path, pinned)  # checked before any I/O
        return await self._async_all(
            "load_lora_adapter", lambda _: plans.call_plan(op), raise_on_error
        )

    async def async_unload_lora_adapter(
        self, lora_name: str, *, raise_on_error: bool = True
    ) -> FleetResult[LoraAdapterResult]:
        """``unload_lora_adapter`` on every worker."""
        op = build_unload_lora(lora_name)
        return await self._async_all(
            "unload_lora_adapter", lambda _: plans.call_plan(op), raise_on_error
        )

    # -- weights --------------------------------------------------------------------------

    async def async_update_weights_from_disk(
        self,
        model_path: str,
        *,
        load_format: str | None = None,
        weight_version: str | None = None,
        abort_all_requests: bool = False,
        flush_cache: bool = True,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_disk`` on every worker (see the client's method)."""
        return await self._async_all(
            "update_weights_from_disk",
            lambda _: control.update_weights_from_disk_plan(
                model_path,
                load_format=load_format,
                weight_version=weight_version,
                abort_all_requests=abort_all_requests,
                flush_cache=flush_cache,
                extra=extra,
            ),
            raise_on_error,
        )

    async def async_init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int | Sequence[int] | Mapping[str, int],
        world_size: int,
        *,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
        raise_on_error: bool = True,
    ) -> FleetResult[WeightUpdateResult]:
        """``init_weights_update_group`` on every worker, each with its own ``rank_offset``.

        ``rank_offset`` is a list (fleet order) or a mapping of worker URL to
        offset; a plain int only for a fleet of one.
        """
        offsets = self._rank_offsets(rank_offset)
        return await self._async_all(
            "init_weights_update_group",
            lambda url: control.init_weights_update_group_plan(
                master_address,
                master_port,
                offsets[url],
                world_size,
                group_name=group_name,
                backend=backend,
            ),
            raise_on_error,
        )

    async def async_destroy_weights_update_group(
        self, group_name: str = "weight_update_group", *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """``destroy_weights_update_group`` on every worker."""
        return await self._async_all(
            "destroy_weights_update_group",
            lambda _: control.destroy_weights_update_group_plan(group_name),
            raise_on_error,
        )

    async def async_begin_weight_update(
        self, selector: Selector = "all", *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """``begin_weight_update`` on every worker (prefer :meth:`async_weight_update_session`)."""
        return await self._async_all(
            "begin_weight_update",
            lambda _: control.begin_weight_update_plan(selector),
            raise_on_error,
        )

    async def async_end_weight_update(
        self, *, raise_on_error: bool = True
    ) -> FleetResult[WeightUpdateResult]:
        """``end_weight_update`` on every worker."""
        return await self._async_all(
            "end_weight_update", lambda _: control.end_weight_update_plan(), raise_on_error
        )

    @contextlib.asynccontextmanager
    async def async_weight_update_session(self, selector: Selector = "all") -> AsyncIterator[Fleet]:
        """``async with fleet.async_weight_update_session():`` begin on every worker, end on
        every worker.

        The session is ended even when the block raises. If begin fails on some
        workers, the sessions opened are ended and :class:`~rlinf_http.FleetError` raised.
        """
        begin, end = self._session_stages(selector)
        async with abracket(
            lambda: self._async_start(begin, end, False),
            lambda bound: self._async_all(*end, deadline=bound),
            end[0],
            hint("async_end_weight_update", "in a weight update session"),
        ):
            yield self._as_fleet()

    async def async_update_weights_from_distributed(
        self,
        names: Sequence[str],
        dtypes: Sequence[Any],
        shapes: Sequence[Sequence[int]],
        *,
        group_name: str = "weight_update_group",
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        load_format: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_distributed`` on every worker, concurrently.

        Every worker receives the same broadcast, so the calls must all be
        pending while the trainer broadcasts.
        """
        return await self._async_all(
            "update_weights_from_distributed",
            lambda _: control.update_weights_from_distributed_plan(
                names,
                dtypes,
                shapes,
                group_name=group_name,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                load_format=load_format,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            ),
            raise_on_error,
        )

    async def async_update_weights_from_tensor(
        self,
        serialized_named_tensors: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]],
        *,
        load_format: str | None = None,
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_tensor`` on every worker.

        The payload holds CUDA IPC handles, which only workers on the node that
        serialized it can open: give one payload for all, or a mapping of
        worker URL to that worker's payload.
        """
        payloads = self._payloads(serialized_named_tensors)
        return await self._async_all(
            "update_weights_from_tensor",
            lambda url: control.update_weights_from_tensor_plan(
                payloads[url],
                load_format=load_format,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            ),
            raise_on_error,
        )

    async def async_update_weight_version(
        self, new_version: str, *, abort_all_requests: bool = True, raise_on_error: bool = True
    ) -> FleetResult[WeightVersionResult]:
        """``update_weight_version`` on every worker.

        Warning: like sglang, it aborts every request in flight unless
        ``abort_all_requests=False`` (``update_weights(...)`` stamps without aborting).
        """
        return await self._async_all(
            "update_weight_version",
            lambda _: control.update_weight_version_plan(new_version, abort_all_requests),
            raise_on_error,
        )

    async def async_weight_versions(
        self, *, raise_on_error: bool = True
    ) -> FleetResult[str | None]:
        """Worker URL -> the weight version it serves now (from ``/model_info``)."""
        return await self._async_all(
            "weight_version", lambda _: control.weight_version_plan(), raise_on_error
        )

    async def async_check_weight_version(self, expected: str) -> FleetResult[str | None]:
        """The versions, if every worker serves ``expected``.

        Raises :class:`~rlinf_http.WeightVersionMismatchError` naming the workers
        that serve another one (:class:`~rlinf_http.FleetError` if some could not
        be asked).
        """
        check_expected(expected)
        return agree(expected, await self.async_weight_versions())

    # -- the RL update step ---------------------------------------------------------------

    async def async_update_weights(
        self,
        *,
        from_disk: str | None = None,
        from_distributed: tuple[Sequence[str], Sequence[Any], Sequence[Sequence[int]]]
        | None = None,
        from_tensor: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]] | None = None,
        version: str,
        pause: PauseMode = "retract",
        quorum: int | float | None = None,
        pause_timeout: float = 60.0,
        load_timeout: float = 600.0,
        continue_timeout: float = 60.0,
        flush_timeout: float = 30.0,
        abort_all_requests: bool = False,
        take_out_failed: bool = True,
        group_name: str = "weight_update_group",
        load_format: str | None = None,
        selector: Selector = "all",
        **extra: Any,
    ) -> WeightUpdateReport:
        """One RL weight update on every worker: pause, load, stamp ``version``, continue.

        Give exactly one source: ``from_disk=path``, ``from_distributed=(names,
        dtypes, shapes)`` (the NCCL group initialised already; the trainer
        broadcasts while this call runs) or ``from_tensor=payloads`` (one list
        for all, or worker URL -> list). On every worker at once, phase by
        phase: ``/pause_generation`` (``pause`` mode) -> wait until it reports
        itself paused (``/ready`` 503) and drained (``/v1/loads``) -> the load
        (inside ``/begin_weight_update`` ... ``/end_weight_update`` for
        distributed and tensor), labelled ``version`` -> ``/update_weight_version``
        (``abort_all_requests=False``: nothing in flight is aborted unless
        asked) -> ``/continue_generation``.

        Each phase has its own deadline (``pause_timeout`` covers the pause and
        the drain check, ``load_timeout``, ``continue_timeout``; seconds); a
        worker past it counts as failed. A worker that fails leaves the step:
        it is left paused (it would serve stale or half-loaded weights) and,
        behind a router, taken out of its rotation (``take_out_failed``) until
        ``fleet.restore(report)``. A load answered with
        :class:`~rlinf_http.CacheNotFlushedError` swapped the weights: the
        worker counts as updated, its cache is flushed when idle
        (``flush_timeout``) and it is relabelled; if that flush fails it is
        ``"flush_pending"``. Workers that updated are continued whatever
        happened elsewhere. If fewer than ``quorum`` workers can still update
        (default: all; a count, or a fraction of the fleet) the step stops
        before loading and continues the paused workers unchanged.

        Returns the :class:`~rlinf_http.WeightUpdateReport` (per worker and
        phase, with timings) and logs it in one INFO line; when fewer than
        ``quorum`` workers updated, raises :class:`~rlinf_http.WeightSyncError`
        carrying the same report (``exc.report``). ``extra`` fields go to the
        load call.
        """
        step = UpdateStep.build(
            list(self._clients),
            self._payloads,
            from_disk=from_disk,
            from_distributed=from_distributed,
            from_tensor=from_tensor,
            version=version,
            pause=pause,
            quorum=quorum,
            pause_timeout=pause_timeout,
            load_timeout=load_timeout,
            continue_timeout=continue_timeout,
            flush_timeout=flush_timeout,
            abort_all_requests=abort_all_requests,
            group_name=group_name,
            load_format=load_format,
            selector=selector,
            extra=extra,
        )
        if not isinstance(take_out_failed, bool):
            raise InvalidRequestError(
                f"take_out_failed must be True or False, got {take_out_failed!r}"
            )
        router = self._router if take_out_failed else None
        run = StepRun(step, None if router is None else router.base_url)
        await self._async_phase(run, "pause", step.pause_plan, run.active(), step.pause_timeout)
        await self._async_phase(run, "drain", step.drain_plan, run.active(), step.pause_timeout)
        if run.can_meet_quorum():
            await self._async_phase(run, "load", step.load, run.active(), step.load_timeout)
            if step.pause != "in_place":  # in place, the held requests keep it busy
                await self._async_phase(
                    run, "flush", step.flush_plan, run.flush_now(), step.flush_timeout
                )
            await self._async_phase(run, "stamp", step.stamp_plan, run.loaded(), step.load_timeout)
        else:
            run.stop_before_load()
        await self._async_phase(
            run, "continue", step.continue_plan, run.to_continue(), step.continue_timeout
        )
        if step.pause == "in_place":
            await self._async_phase(
                run, "flush", step.flush_plan, run.flush_now(), step.flush_timeout
            )
        failed = run.take_out()
        if router is not None and failed:
            try:
                out = await router._driver.arun(take_out_plan(failed, step.continue_timeout))
            except Exception as exc:  # reported: the workers stay in the rotation
                logger.warning("could not take %s out of %s: %s", failed, router.base_url, exc)
            else:
                for url in failed:
                    if out[url]:
                        run.removed(url)
        report = run.report()
        logger.info("%s", report.summary())
        if not report.quorum_met:
            raise WeightSyncError(report.summary(), operation="update_weights", result=report)
        return report

    async def _async_phase(
        self,
        run: StepRun,
        phase: str,
        make_plan: Callable[[str], Plan[Any]],
        urls: list[str],
        deadline: float,
    ) -> None:
        """Run one phase of the step on ``urls`` (all at once, bounded) and record it."""
        if urls:
            result = await self._async_all(
                phase, run.timed(phase, make_plan), False, urls, deadline
            )
            run.record(phase, result, deadline)

    async def async_restore(
        self, report: WeightUpdateReport, *, timeout: float = 60.0
    ) -> FleetResult[None]:
        """Undo what :meth:`async_update_weights` left: continue the workers it left
        paused and put those it took out back into the router's rotation.

        Fix the workers first (load the right weights, e.g. with
        ``fleet.subset(report.failed).update_weights(...)``): a restored worker
        serves whatever it holds. Returns worker URL -> ``None`` or its error.
        """
        urls = [url for url in report.left_paused if url in self._clients]
        removed = report.removed_from_router
        if removed and self._router is None:
            raise InvalidRequestError(
                "this fleet has no router to put the workers back into: "
                f"call add_worker on {report.router_url} for {removed}"
            )
        result = await self._async_all(
            "restore",
            lambda _: control.continue_generation_plan(True),
            False,
            urls,
            timeout,
        )
        outcomes: dict[str, Exception | None] = {url: None for url in urls}
        outcomes.update(result.errors)
        if self._router is not None:
            for url in removed:
                try:
                    await self._router._driver.arun(
                        add_worker_plan(url, "regular", {}, timeout, 0.2)
                    )
                    outcomes.setdefault(url, None)
                except Exception as exc:
                    outcomes[url] = exc
        return FleetResult(outcomes, "restore").raise_for_errors()

    # -- memory, cache, load, info --------------------------------------------------------

    async def async_release_memory_occupation(
        self,
        tags: Sequence[str] | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT_S,
        raise_on_error: bool = True,
    ) -> FleetResult[None]:
        """``release_memory_occupation`` on every worker, each once it is idle (pause first).

        A worker still busy after ``idle_timeout`` seconds fails with
        :class:`~rlinf_http.EngineBusyError` (nothing sent to it); see the client's method.
        """
        release_when_idle_plan(tags, idle_timeout)  # checked before any I/O
        return await self._async_all(
            "release_memory_occupation",
            lambda _: release_when_idle_plan(tags, idle_timeout),
            raise_on_error,
        )

    async def async_resume_memory_occupation(
        self, tags: Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """``resume_memory_occupation`` on every worker (exactly the tags released)."""
        return await self._async_all(
            "resume_memory_occupation",
            lambda _: control.resume_memory_occupation_plan(tags),
            raise_on_error,
        )

    async def async_flush_cache(
        self, *, raise_on_error: bool = True
    ) -> FleetResult[FlushCacheResult]:
        """``flush_cache`` on every worker (a busy worker gives ``flushed=False``)."""
        return await self._async_all(
            "flush_cache", lambda _: plans.flush_cache_plan(), raise_on_error
        )

    async def async_loads(
        self, include: str | Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[Loads]:
        """``GET /v1/loads`` of every worker."""
        return await self._async_all("loads", lambda _: control.loads_plan(include), raise_on_error)

    async def async_health(self) -> FleetResult[bool]:
        """Worker URL -> ``GET /health`` answered 2xx (never raises; bounded per worker).

        sglang's ``/health`` runs a one-token generation, which waits while the
        worker is paused: a paused worker is ``False`` here. To tell a dead worker
        from a paused one, use :meth:`async_status`.
        """
        return await self._async_all("health", self._health_plan, False)

    async def async_status(self) -> FleetResult[WorkerState]:
        """Worker URL -> what the worker itself says, asked with ``GET /ready``.

        ``"ready"``; ``"not_ready"`` (it answered 503: paused, starting or
        shutting down -- alive); ``"unresponsive"`` (it took the connection but
        did not answer within ``health_timeout``: stopped or hung); ``"dead"``
        (the connection failed). Never raises; bounded per worker. Unlike the
        router's ``is_healthy`` flag (refreshed every 60 s, and false for a worker
        paused a few minutes), it is current and tells paused from dead.
        """
        return await self._async_all("status", self._status_plan, False)

    async def async_server_info(self, *, raise_on_error: bool = True) -> FleetResult[ServerInfo]:
        """``/server_info`` of every worker."""
        return await self._async_all(
            "server_info", lambda _: plans.server_info_plan(), raise_on_error
        )

    async def async_model_info(self, *, raise_on_error: bool = True) -> FleetResult[ModelInfo]:
        """``/model_info`` of every worker."""
        return await self._async_all(
            "model_info", lambda _: plans.model_info_plan(), raise_on_error
        )
