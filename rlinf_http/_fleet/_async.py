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
from .._core import control, plans, probes, rl_gateway, weights_io
from .._core.control import PauseMode, Selector, WorkerState
from .._core.dataplane import build_load_lora, build_unload_lora
from .._core.plans import Plan, add_worker_plan
from .._core.rl_step import (
    IDLE_TIMEOUT_S,
    UNLIST_WAIT_S,
    listed_after_removals_plan,
    release_when_idle_plan,
    take_out_unless_all_plan,
    wait_unlisted_plan,
)
from .._core.weights_check import compare_weight_slices
from .._core.weights_io import CheckAction, weight_update_options
from .._errors import InvalidRequestError, WeightUpdateStepError
from ..models import (
    FlushCacheResult,
    GenerationControlResult,
    Loads,
    LoraAdapterResult,
    ModelInfo,
    ParameterSlice,
    ServerInfo,
    WeightsCheckResult,
    WeightSyncReport,
    WeightUpdateResult,
    WeightVersionResult,
)
from ._base import FleetBase, Stage, hint, undo_targets, verify_names
from ._result import FleetResult, agree, check_expected
from ._step import Deadline, StepRun, UpdateStep, WeightUpdateReport

if TYPE_CHECKING:
    from .. import InferenceHTTPClient
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
        torch_empty_cache: bool | None = None,
        recapture_cuda_graph: bool | None = None,
        keep_pause: bool | None = None,
        is_async: bool | None = None,
        token_step: int | None = None,
        manifest: Mapping[str, Any] | None = None,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_disk`` on every worker (see the client's method)."""
        fields = {
            **extra,
            **weight_update_options(
                "disk",
                torch_empty_cache=torch_empty_cache,
                recapture_cuda_graph=recapture_cuda_graph,
                keep_pause=keep_pause,
                is_async=is_async,
                token_step=token_step,
                manifest=manifest,
            ),
        }
        return await self._async_all(
            "update_weights_from_disk",
            lambda _: control.update_weights_from_disk_plan(
                model_path,
                load_format=load_format,
                weight_version=weight_version,
                abort_all_requests=abort_all_requests,
                flush_cache=flush_cache,
                extra=fields,
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
        torch_empty_cache: bool | None = None,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_distributed`` on every worker, concurrently.

        Every worker receives the same broadcast, so the calls must all be
        pending while the trainer broadcasts.
        """
        fields = {
            **extra,
            **weight_update_options("distributed", torch_empty_cache=torch_empty_cache),
        }
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
                extra=fields,
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
        torch_empty_cache: bool | None = None,
        raise_on_error: bool = True,
        **extra: Any,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_tensor`` on every worker.

        The payload holds CUDA IPC handles, which only workers on the node that
        serialized it can open: give one payload for all, or a mapping of
        worker URL to that worker's payload.
        """
        payloads = self._payloads(serialized_named_tensors)
        fields = {**extra, **weight_update_options("tensor", torch_empty_cache=torch_empty_cache)}
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
                extra=fields,
            ),
            raise_on_error,
        )

    async def async_update_weights_from_ipc(
        self,
        zmq_handles: Mapping[str, str] | Mapping[str, Mapping[str, str]],
        *,
        flush_cache: bool = True,
        weight_version: str | None = None,
        torch_empty_cache: bool = False,
        raise_on_error: bool = True,
    ) -> FleetResult[WeightUpdateResult]:
        """``update_weights_from_ipc`` on every worker (checkpoint-engine).

        ``zmq_handles`` is one ``{device UUID: ZMQ socket path}`` for all, or a
        mapping of worker URL to that worker's handles (each node has its own
        devices and sockets).
        """
        per_worker = bool(zmq_handles) and all(isinstance(v, Mapping) for v in zmq_handles.values())
        handles: dict[str, Any] = (
            self._by_worker(zmq_handles, "zmq_handles")
            if per_worker
            else dict.fromkeys(self._clients, zmq_handles)
        )
        plans_by_url = {
            url: weights_io.update_weights_from_ipc_plan(
                h,
                flush_cache=flush_cache,
                weight_version=weight_version,
                torch_empty_cache=torch_empty_cache,
            )
            for url, h in handles.items()
        }  # every worker's arguments checked before any I/O
        return await self._async_all(
            "update_weights_from_ipc", lambda url: plans_by_url[url], raise_on_error
        )

    async def async_load_lora_adapter_from_tensors(
        self,
        lora_name: str,
        config_dict: Mapping[str, Any],
        serialized_named_tensors: Sequence[bytes | str] | Mapping[str, Sequence[bytes | str]],
        *,
        pinned: bool = False,
        added_tokens_config: Mapping[str, int] | None = None,
        load_format: str | None = None,
        expected_checksums: Mapping[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> FleetResult[LoraAdapterResult]:
        """``load_lora_adapter_from_tensors`` on every worker.

        One payload for all, or a mapping of worker URL to that worker's payload
        (as :meth:`async_update_weights_from_tensor`).
        """
        payloads = self._payloads(serialized_named_tensors)
        plans_by_url = {
            url: weights_io.load_lora_adapter_from_tensors_plan(
                lora_name,
                config_dict,
                payload,
                pinned=pinned,
                added_tokens_config=added_tokens_config,
                load_format=load_format,
                expected_checksums=expected_checksums,
            )
            for url, payload in payloads.items()
        }
        return await self._async_all(
            "load_lora_adapter_from_tensors", lambda url: plans_by_url[url], raise_on_error
        )

    async def async_get_weights_by_name(
        self, name: str, truncate_size: int = 100, *, raise_on_error: bool = True
    ) -> FleetResult[ParameterSlice]:
        """``get_weights_by_name`` on every worker (to compare: :meth:`async_verify_weights`)."""
        weights_io.get_weights_by_name_plan(name, truncate_size)  # checked before any I/O
        return await self._async_all(
            "get_weights_by_name",
            lambda _: weights_io.get_weights_by_name_plan(name, truncate_size),
            raise_on_error,
        )

    async def async_weights_checker(
        self,
        action: CheckAction = "checksum",
        *,
        allow_quant_error: bool = False,
        skip_tensor_list: Sequence[str] | None = None,
        selector: Selector = "all",
        raise_on_error: bool = True,
    ) -> FleetResult[WeightsCheckResult]:
        """``weights_checker`` on every worker; equal ``per_engine_checksum`` values mean
        equal weights on workers of the same layout."""

        def make(_: str) -> Any:
            return weights_io.weights_checker_plan(
                action,
                allow_quant_error=allow_quant_error,
                skip_tensor_list=skip_tensor_list,
                selector=selector,
            )

        make("")  # checked before any I/O
        return await self._async_all("weights_checker", make, raise_on_error)

    async def async_verify_weights(
        self,
        names: str | Sequence[str] | None = None,
        expected: Mapping[str, Any] | None = None,
        *,
        truncate_size: int = 100,
        atol: float = 1e-6,
        rtol: float = 0.0,
        raise_on_mismatch: bool = False,
    ) -> WeightSyncReport:
        """Do all workers hold the weights the trainer pushed? One verdict per worker.

        Reads the named parameters' first ``truncate_size`` rows from every worker
        (``/get_weights_by_name``, concurrently) and compares them with
        ``expected`` (parameter name -> the trainer's values: a tensor, an array
        or nested lists; cut here as sglang cuts them) or, without it, with each
        other (the reference is the worker most others agree with). ``names``
        defaults to ``expected``'s keys. A value matches when
        ``|a - r| <= atol + rtol * |r|`` (fp32 master weights against bf16
        served ones: ``rtol=2**-8``).

        Returns the :class:`~rlinf_http.WeightSyncReport` (``ok``,
        ``mismatched``, ``errors``, ``summary()``); a worker that could not be
        read is reported, not raised. ``raise_on_mismatch=True`` (or
        ``report.raise_for_mismatch()``) raises
        :class:`~rlinf_http.WeightSyncError` unless every worker matched.
        """
        wanted = verify_names(names, expected)
        compare_weight_slices({}, expected, atol=atol, rtol=rtol)  # checked before any I/O
        weights_io.read_parameters_plan(wanted, truncate_size)
        read = await self._async_all(
            "verify_weights",
            lambda _: weights_io.read_parameters_plan(wanted, truncate_size),
            False,
        )
        reference = None if expected is None else {n: expected[n] for n in wanted}
        report = compare_weight_slices(dict(read), reference, atol=atol, rtol=rtol)
        return report.raise_for_mismatch() if raise_on_mismatch else report

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
        abort_failed: bool = True,
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
        ``fleet.restore(report)`` -- unless every worker the router lists
        failed: those stay in it, paused, so it is not left with none
        (``report.kept_in_router``). Then, unless ``abort_failed=False``, the
        requests a failed worker out of the rotation holds paused are aborted
        (``/abort_request`` with ``abort_all``, once the router no longer lists
        it: at most ``continue_timeout`` or 10 s): they come back at once with
        finish reason ``abort``, to finish elsewhere with ``client.resume``
        (``retract``; what ``in_place`` holds ends as aborted only at restore;
        requests that reached the worker after its pause wait for restore). An
        abort that fails or is not sent is only reported. A load answered with
        :class:`~rlinf_http.CacheNotFlushedError` swapped the weights: the
        worker counts as updated, its cache is flushed when idle
        (``flush_timeout``) and it is relabelled; if that flush fails it is
        ``"flush_pending"``. Workers that updated are continued whatever
        happened elsewhere. If fewer than ``quorum`` workers can still update
        (default: all; a count, or a fraction of the fleet) the step stops
        before loading and continues the paused workers unchanged.

        Returns the :class:`~rlinf_http.WeightUpdateReport` (per worker and
        phase, with timings) and logs it in one INFO line; when fewer than
        ``quorum`` workers updated, raises :class:`~rlinf_http.WeightUpdateStepError`
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
            abort_failed=abort_failed,
            group_name=group_name,
            load_format=load_format,
            selector=selector,
            extra=extra,
        )
        control._flag(take_out_failed, "take_out_failed")
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
                out = await router._driver.arun(
                    take_out_unless_all_plan(failed, step.continue_timeout)
                )
            except Exception as exc:  # reported: the workers stay in the rotation
                logger.warning("could not take %s out of %s: %s", failed, router.base_url, exc)
            else:
                for url in failed:
                    if out is None:
                        run.kept(url)
                    elif out[url]:
                        run.removed(url)
        # after the take-out, so that a resumed request cannot land on them again:
        # only once the router no longer lists them (smg removes 5 s after it accepts)
        aborts = run.to_abort()
        removed = [u for u in aborts if u in run.removed_urls()]
        if router is not None and removed:
            bound = max(step.continue_timeout, UNLIST_WAIT_S)
            try:
                still = await router._driver.arun(wait_unlisted_plan(removed, bound))
            except Exception as exc:  # the listing failed: nothing known, nothing sent
                still = set(removed)
                logger.warning("could not read %s's workers: %s", router.base_url, exc)
            for url in still:
                run.abort_not_sent(
                    url,
                    TimeoutError(
                        f"{router.base_url} still listed {url} after {bound:g} s: its held "
                        "requests were not aborted (a resume could land on it again)"
                    ),
                )
            aborts = [u for u in aborts if u not in still]
        gone = [u for u in aborts if self._gateway is not None and u in run.removed_urls()]
        here = [u for u in aborts if u not in gone]
        await self._async_phase(run, "abort", step.abort_plan, here, step.continue_timeout)
        # smg's RL plane no longer reaches a worker taken out of smg: at its own URL
        await self._async_phase(
            run, "abort", step.abort_plan, gone, step.continue_timeout, self._clients
        )
        report = run.report()
        logger.info("%s", report.summary())
        if not report.quorum_met:
            raise WeightUpdateStepError(report.summary(), operation="update_weights", result=report)
        return report

    async def _async_phase(
        self,
        run: StepRun,
        phase: str,
        make_plan: Callable[[str], Plan[Any]],
        urls: list[str],
        deadline: float,
        clients: Mapping[str, InferenceHTTPClient] | None = None,
    ) -> None:
        """Run one phase of the step on ``urls`` (all at once, bounded) and record it."""
        if urls:
            result = await self._async_all(
                phase, run.timed(phase, make_plan), False, urls, deadline, clients
            )
            run.record(phase, result, deadline)

    async def async_restore(
        self, report: WeightUpdateReport, *, timeout: float = 60.0
    ) -> FleetResult[None]:
        """Undo what :meth:`async_update_weights` left: continue the workers it left
        paused and put those it took out back into the router's rotation.

        Fix the workers first (load the right weights, e.g. with
        ``fleet.subset(report.failed).update_weights(...)``): a restored worker
        serves whatever it holds. The continues run on all the workers at once
        within ``timeout`` seconds (a worker past it: ``TimeoutError``), then
        the re-adds, at once, within a ``timeout`` of their own. A worker the
        router lists again already (an earlier restore) is left as it is.
        Returns worker URL -> ``None`` or its error.
        """
        if not isinstance(report, WeightUpdateReport):
            raise InvalidRequestError(
                "restore takes the WeightUpdateReport of update_weights (or "
                f"WeightUpdateStepError.report), got {type(report).__name__}"
            )
        deadline = Deadline.after(timeout, "timeout")
        urls = list(report.left_paused)
        removed = report.removed_from_router
        if removed and self._router is None:
            raise InvalidRequestError(
                "this fleet has no router to put the workers back into: "
                f"call add_worker on {report.router_url} for {removed}"
            )
        # smg's RL plane reaches only the workers it lists: one taken out of it (or
        # not in this fleet) is continued at its own URL (the trainer must reach it).
        members = [
            u
            for u in urls
            if u in self._clients and not (self._gateway is not None and u in removed)
        ]
        prototype = next(iter(self._clients.values()))
        own = {
            u: self._clients.get(u) or prototype.copy(base_url=u) for u in urls if u not in members
        }
        outcomes: dict[str, Exception | None] = {url: None for url in urls}
        try:
            for targets, clients in ((members, None), (list(own), own)):
                if targets:
                    result = await self._async_all(
                        "restore",
                        lambda _: control.continue_generation_plan(True),
                        False,
                        targets,
                        deadline.left(),
                        clients,
                    )
                    outcomes.update(result.errors)
        finally:
            for url, worker in own.items():
                if url not in self._clients:
                    await worker.aclose()
        router = self._router
        if router is not None and removed:
            # The re-adds have their own budget: a worker whose continue used up the
            # first one (a stopped process) must not keep the others out.
            readd = Deadline.after(timeout, "timeout")
            # A removal the gateway accepted may still be under way: let it end. One
            # still listed after that is back already (an earlier restore): it is
            # left alone, never removed again.
            listed = await router._driver.arun(
                listed_after_removals_plan(removed, min(UNLIST_WAIT_S, readd.left()))
            )
            # one still paused is not added: the gateway would drop it again (/health waits)
            back = [u for u in removed if outcomes.get(u) is None and u not in listed]
            if back:
                added = await self._async_all(
                    "restore",
                    lambda url: add_worker_plan(url, "regular", {}, readd.left(), 0.2),
                    False,
                    back,
                    readd.left(),
                    dict.fromkeys(back, router),
                )
                outcomes.update(dict.fromkeys(back))
                outcomes.update(added.errors)
            if self._gateway is not None:
                ids = await self._gateway._driver.arun(rl_gateway.gateway_ids_plan(), readd.left())
                self._ids = {**self._ids, **{u: ids[u] for u in removed if u in ids}}
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
        self, timeout: float | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[FlushCacheResult]:
        """``flush_cache`` on every worker (a busy worker gives ``flushed=False``).

        ``timeout`` (seconds) makes each worker wait up to that long for idle
        before flushing (sglang's ``/flush_cache?timeout=``).
        """
        if timeout is None:
            return await self._async_all(
                "flush_cache", lambda _: plans.flush_cache_plan(), raise_on_error
            )
        probes.flush_cache_when_idle_plan(timeout)  # checked before any I/O
        return await self._async_all(
            "flush_cache", lambda _: probes.flush_cache_when_idle_plan(timeout), raise_on_error
        )

    async def async_ready(self, *, raise_on_error: bool = True) -> FleetResult[bool]:
        """Worker URL -> ``GET /ready`` (``False``: paused, starting or shutting down).

        Bounded per worker by its ``health_timeout``; a worker that does not
        answer is an error (``raise_on_error=False`` to collect it).
        """
        return await self._async_all(
            "ready",
            lambda url: probes.ready_plan(self._clients[url].health_timeout),
            raise_on_error,
        )

    async def async_ping(self, *, raise_on_error: bool = True) -> FleetResult[bool]:
        """Worker URL -> ``GET /ping`` (``True`` while up, paused included)."""
        return await self._async_all(
            "ping",
            lambda url: probes.ping_plan(self._clients[url].health_timeout),
            raise_on_error,
        )

    async def async_loads(
        self, include: str | Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[Loads]:
        """``GET /v1/loads`` of every worker."""
        return await self._async_all("loads", lambda _: control.loads_plan(include), raise_on_error)

    async def async_loads_prometheus(
        self, include: str | Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[str]:
        """``GET /v1/loads?format=prometheus`` of every worker (Prometheus text)."""
        probes.loads_prometheus_plan(include)  # checked before any I/O
        return await self._async_all(
            "loads_prometheus", lambda _: probes.loads_prometheus_plan(include), raise_on_error
        )

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
