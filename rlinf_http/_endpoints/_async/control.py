"""The RL control plane on one server: weights, pause/continue, memory and loads.

The sglang router forwards none of these endpoints: call them on a server, or on
every worker at once with ``client.fleet()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from typing_extensions import Self

from ..._brackets import abracket
from ..._core import control
from ..._core.control import PauseMode, Selector
from ..._core.rl_step import IDLE_TIMEOUT_S, release_when_idle_plan
from ...models import (
    GenerationControlResult,
    Loads,
    WeightUpdateResult,
    WeightVersionResult,
)
from .._base import Endpoint

__all__ = ["AsyncControl"]


class AsyncControl(Endpoint):
    """The control calls of one sglang server (not the router: it answers 404)."""

    __slots__ = ()

    async def async_update_weights_from_disk(
        self,
        model_path: str,
        *,
        load_format: str | None = None,
        weight_version: str | None = None,
        abort_all_requests: bool = False,
        flush_cache: bool = True,
        **extra: Any,
    ) -> WeightUpdateResult:
        """``POST /update_weights_from_disk``: load the checkpoint at ``model_path`` in place.

        It blocks until the load (and the cache flush) finished; unless the server
        is paused it first waits for the requests in flight (or aborts them with
        ``abort_all_requests``). ``weight_version`` becomes the served version on
        success. ``extra`` fields are sent as well (``torch_empty_cache``...).
        A refusal raises :class:`~rlinf_http.WeightUpdateError` with the server's
        message; :class:`~rlinf_http.CacheNotFlushedError` means the weights were
        loaded but the cache was not flushed (do not load again). Never resent.
        """
        return await self._driver.arun(
            control.update_weights_from_disk_plan(
                model_path,
                load_format=load_format,
                weight_version=weight_version,
                abort_all_requests=abort_all_requests,
                flush_cache=flush_cache,
                extra=extra,
            )
        )

    async def async_init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int,
        world_size: int,
        *,
        group_name: str = "weight_update_group",
        backend: str = "nccl",
    ) -> WeightUpdateResult:
        """``POST /init_weights_update_group``: join the trainer's process group.

        The server's TP ranks join as ``rank_offset + tp_rank`` (the trainer is
        rank 0). The call returns only once the rendezvous completed, so run the
        trainer's own group init concurrently.
        """
        return await self._driver.arun(
            control.init_weights_update_group_plan(
                master_address,
                master_port,
                rank_offset,
                world_size,
                group_name=group_name,
                backend=backend,
            )
        )

    async def async_destroy_weights_update_group(
        self, group_name: str = "weight_update_group"
    ) -> WeightUpdateResult:
        """``POST /destroy_weights_update_group`` (an unknown group is a WeightUpdateError)."""
        return await self._driver.arun(control.destroy_weights_update_group_plan(group_name))

    async def async_begin_weight_update(self, selector: Selector = "all") -> WeightUpdateResult:
        """``POST /begin_weight_update``: open the session distributed/tensor updates need."""
        return await self._driver.arun(control.begin_weight_update_plan(selector))

    async def async_end_weight_update(self) -> WeightUpdateResult:
        """``POST /end_weight_update``: close the session."""
        return await self._driver.arun(control.end_weight_update_plan())

    @contextlib.asynccontextmanager
    async def async_weight_update_session(self, selector: Selector = "all") -> AsyncIterator[Self]:
        """``async with client.async_weight_update_session():`` begin ... end, even if it raises.

        sglang 0.5.23 refuses ``update_weights_from_distributed`` and
        ``update_weights_from_tensor`` outside such a session.
        """
        control.begin_weight_update_plan(selector)
        async with abracket(
            lambda: self.async_begin_weight_update(selector),
            lambda bound: self._driver.arun(control.end_weight_update_plan(), bound),
            "end_weight_update",
            "the server may still be in a weight update session: call end_weight_update()",
        ):
            yield self

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
        **extra: Any,
    ) -> WeightUpdateResult:
        """``POST /update_weights_from_distributed``: receive the trainer's broadcast.

        ``names``, ``dtypes`` (``"bfloat16"``, or torch dtypes) and ``shapes`` give
        one entry per tensor, in the order the trainer (rank 0 of the group)
        broadcasts them while this call is pending. Run it inside
        :meth:`weight_update_session`, or pass ``wrap_session=True`` to send
        ``/begin_weight_update`` before and ``/end_weight_update`` after it.
        """
        return await self._driver.arun(
            control.update_weights_from_distributed_plan(
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
            )
        )

    async def async_update_weights_from_tensor(
        self,
        serialized_named_tensors: Sequence[bytes | str],
        *,
        load_format: str | None = None,
        flush_cache: bool = True,
        abort_all_requests: bool = False,
        weight_version: str | None = None,
        selector: Selector = "all",
        wrap_session: bool = False,
        **extra: Any,
    ) -> WeightUpdateResult:
        """``POST /update_weights_from_tensor``: one serialized payload per TP rank.

        Each entry is the bytes of a torch-pickled ``[(name, tensor), ...]``
        (base64-encoded for the wire here; a str entry must already be base64).
        Needs a session, like :meth:`update_weights_from_distributed`.
        """
        return await self._driver.arun(
            control.update_weights_from_tensor_plan(
                serialized_named_tensors,
                load_format=load_format,
                flush_cache=flush_cache,
                abort_all_requests=abort_all_requests,
                weight_version=weight_version,
                selector=selector,
                wrap_session=wrap_session,
                extra=extra,
            )
        )

    async def async_update_weight_version(
        self, new_version: str, *, abort_all_requests: bool = True
    ) -> WeightVersionResult:
        """``POST /update_weight_version``: relabel the served weights.

        Warning: like sglang 0.5.23, it **aborts every request in flight** unless
        ``abort_all_requests=False`` (``UpdateWeightVersionReqInput`` defaults to
        true; the aborted requests return their partial output with
        ``finish_reason.type == "abort"``). Pass ``abort_all_requests=False`` to
        relabel without losing them; ``fleet.update_weights(...)`` does.
        """
        return await self._driver.arun(
            control.update_weight_version_plan(new_version, abort_all_requests)
        )

    async def async_weight_version(self) -> str | None:
        """The weight version the server serves now (``/model_info``)."""
        return await self._driver.arun(control.weight_version_plan())

    async def async_pause_generation(self, mode: PauseMode = "abort") -> GenerationControlResult:
        """``POST /pause_generation``; new requests wait until :meth:`continue_generation`.

        ``"abort"`` ends the running requests (they return with
        ``finish_reason.type == "abort"``) and returns once none is left;
        ``"retract"`` (KV freed, recomputed later) and ``"in_place"`` (KV kept)
        hold them and return at once.
        """
        return await self._driver.arun(control.pause_generation_plan(mode))

    async def async_continue_generation(
        self, *, torch_empty_cache: bool = True
    ) -> GenerationControlResult:
        """``POST /continue_generation``: resume after :meth:`pause_generation`."""
        return await self._driver.arun(control.continue_generation_plan(torch_empty_cache))

    async def async_release_memory_occupation(
        self, tags: Sequence[str] | None = None, *, idle_timeout: float = IDLE_TIMEOUT_S
    ) -> None:
        """``POST /release_memory_occupation`` of ``tags`` (``None``: all of
        ``kv_cache``, ``weights``, ``cuda_graph``), once the engine is idle.

        sglang releases memory only on an idle engine and fails the call
        otherwise. This waits up to ``idle_timeout`` seconds until ``/v1/loads``
        shows no running request (and no waiting one, unless paused), then
        sends the release; still busy, it raises
        :class:`~rlinf_http.EngineBusyError` with the counts, and sends nothing.
        Pause first (``"retract"`` or ``"abort"``).
        """
        await self._driver.arun(release_when_idle_plan(tags, idle_timeout))

    async def async_resume_memory_occupation(self, tags: Sequence[str] | None = None) -> None:
        """``POST /resume_memory_occupation``: resume exactly the tags released."""
        await self._driver.arun(control.resume_memory_occupation_plan(tags))

    async def async_loads(
        self, include: str | Sequence[str] | None = None, *, dp_rank: int | None = None
    ) -> Loads:
        """``GET /v1/loads``: running and waiting requests, token usage... per DP rank.

        ``include`` names sections (``core``, ``memory``, ``spec``, ``lora``,
        ``disagg``, ``queues``, ``all``; default all).
        """
        return await self._driver.arun(control.loads_plan(include, dp_rank))
