"""Every control call of the fleet, written once (async); ``_sync.py`` is generated from it.

Each call builds one core plan per worker (arguments checked before any I/O)
and runs them all at once with ``self._async_all`` (sync: ``self._all``), the
hand-written pair in :mod:`._base`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .._brackets import abracket
from .._core import control, plans
from .._core.control import PauseMode, Selector, WorkerState
from .._core.dataplane import build_load_lora, build_unload_lora
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

if TYPE_CHECKING:
    from ._fleet import Fleet

__all__ = ["AsyncFleetCalls"]


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
        """``update_weight_version`` on every worker (aborts requests in flight by default)."""
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

    # -- memory, cache, load, info --------------------------------------------------------

    async def async_release_memory_occupation(
        self, tags: Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> FleetResult[None]:
        """``release_memory_occupation`` on every worker (pause first)."""
        return await self._async_all(
            "release_memory_occupation",
            lambda _: control.release_memory_occupation_plan(tags),
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
