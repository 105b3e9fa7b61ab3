"""Weights read back, checked, and moved without disk or NCCL (sglang 0.5.23).

``/get_weights_by_name``, ``/weights_checker``, ``/update_weights_from_ipc``,
the remote-instance transfer and ``/load_lora_adapter_from_tensors``. Neither
gateway forwards them: call them on a server, or on every worker at once with
``client.fleet()``. Weight calls are never resent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..._core import weights_io
from ..._core.control import Selector
from ..._core.weights_io import CheckAction
from ...models import (
    LoraAdapterResult,
    ParameterSlice,
    RemoteTransferEngineInfo,
    WeightsCheckResult,
    WeightUpdateResult,
)
from .._base import Endpoint

__all__ = ["AsyncWeights"]


class AsyncWeights(Endpoint):
    """Read-back, checksums, IPC / remote-instance transfer and LoRA from tensors."""

    __slots__ = ()

    async def async_get_weights_by_name(
        self, name: str, truncate_size: int = 100
    ) -> ParameterSlice:
        """``POST /get_weights_by_name`` ``{"name", "truncate_size"}``: a parameter slice.

        sglang answers ``param.float().tolist()[:truncate_size]``: the first
        ``truncate_size`` values of a 1-D parameter, the first rows of a 2-D one
        (``ParameterSlice.values``). An unknown name answers 400
        (:class:`~rlinf_http.BadRequestError`). To compare slices across a
        fleet, use ``fleet.verify_weights()``.
        """
        return await self._driver.arun(weights_io.get_weights_by_name_plan(name, truncate_size))

    async def async_weights_checker(
        self,
        action: CheckAction = "checksum",
        *,
        allow_quant_error: bool = False,
        skip_tensor_list: Sequence[str] | None = None,
        selector: Selector = "all",
    ) -> WeightsCheckResult:
        """``POST /weights_checker`` ``{"action", "allow_quant_error", "skip_tensor_list",
        "selector"}``.

        ``"checksum"`` answers ``{"success", "message", "ranks": [{"checksums":
        {name: sha256}, "per_gpu_checksum", "parallelism_info"}],
        "per_engine_checksum"}``: equal ``per_engine_checksum`` on two workers of
        the same layout means equal weights. ``"snapshot"`` then ``"compare"``
        tells whether the weights changed since the snapshot (a difference is
        a :class:`~rlinf_http.WeightUpdateError`). ``"reset_tensors"``
        overwrites every weight (tests only).
        """
        return await self._driver.arun(
            weights_io.weights_checker_plan(
                action,
                allow_quant_error=allow_quant_error,
                skip_tensor_list=skip_tensor_list,
                selector=selector,
            )
        )

    async def async_update_weights_from_ipc(
        self,
        zmq_handles: Mapping[str, str],
        *,
        flush_cache: bool = True,
        weight_version: str | None = None,
        torch_empty_cache: bool = False,
    ) -> WeightUpdateResult:
        """``POST /update_weights_from_ipc`` ``{"zmq_handles", "flush_cache",
        "weight_version", "torch_empty_cache"}`` (checkpoint-engine).

        ``zmq_handles`` maps each device UUID to the ZMQ socket path
        checkpoint-engine serves its weights on. Answers ``{"success",
        "message"}``; a refusal is a :class:`~rlinf_http.WeightUpdateError`
        (:class:`~rlinf_http.CacheNotFlushedError` when only the flush failed).
        One DP rank only in sglang 0.5.23.
        """
        return await self._driver.arun(
            weights_io.update_weights_from_ipc_plan(
                zmq_handles,
                flush_cache=flush_cache,
                weight_version=weight_version,
                torch_empty_cache=torch_empty_cache,
            )
        )

    async def async_init_weights_send_group_for_remote_instance(
        self,
        master_address: str,
        ports: str | Sequence[int],
        group_rank: int,
        world_size: int,
        *,
        group_name: str = "weight_send_group",
        backend: str = "nccl",
    ) -> WeightUpdateResult:
        """``POST /init_weights_send_group_for_remote_instance`` ``{"master_address",
        "ports", "group_rank", "world_size", "group_name", "backend"}``.

        On the instance that sends its weights to a new one: ``ports`` has one
        port per TP rank (a list, or sglang's ``"p0,p1"`` text); ``group_rank``
        is this instance's rank in the send group of ``world_size``.
        """
        return await self._driver.arun(
            weights_io.init_weights_send_group_for_remote_instance_plan(
                master_address,
                ports,
                group_rank,
                world_size,
                group_name=group_name,
                backend=backend,
            )
        )

    async def async_send_weights_to_remote_instance(
        self,
        master_address: str,
        ports: str | Sequence[int],
        *,
        group_name: str = "weight_send_group",
    ) -> WeightUpdateResult:
        """``POST /send_weights_to_remote_instance`` ``{"master_address", "ports",
        "group_name"}``: broadcast the weights over the send group."""
        return await self._driver.arun(
            weights_io.send_weights_to_remote_instance_plan(
                master_address, ports, group_name=group_name
            )
        )

    async def async_remote_instance_transfer_engine_info(
        self, rank: int
    ) -> RemoteTransferEngineInfo:
        """``GET /remote_instance_transfer_engine_info?rank=``: ``{"rank",
        "remote_instance_transfer_engine_info"}`` (a rank's transfer-engine session).

        An unknown rank answers 400 (:class:`~rlinf_http.BadRequestError`).
        """
        return await self._driver.arun(weights_io.remote_instance_transfer_engine_info_plan(rank))

    async def async_load_lora_adapter_from_tensors(
        self,
        lora_name: str,
        config_dict: Mapping[str, Any],
        serialized_named_tensors: Sequence[bytes | str],
        *,
        pinned: bool = False,
        added_tokens_config: Mapping[str, int] | None = None,
        load_format: str | None = None,
        expected_checksums: Mapping[str, str] | None = None,
    ) -> LoraAdapterResult:
        """``POST /load_lora_adapter_from_tensors`` ``{"lora_name", "config_dict",
        "serialized_named_tensors", "pinned", "added_tokens_config", "load_format",
        "expected_checksums"}``: a LoRA adapter without writing it to disk.

        ``config_dict`` is the PEFT ``adapter_config.json`` content;
        ``serialized_named_tensors`` one serialized copy of the tensors per TP
        rank (bytes are base64-encoded here). Answers ``{"success",
        "error_message", "loaded_adapters"}``; a refusal is a
        :class:`~rlinf_http.BadRequestError` carrying sglang's ``error_message``.
        """
        return await self._driver.arun(
            weights_io.load_lora_adapter_from_tensors_plan(
                lora_name,
                config_dict,
                serialized_named_tensors,
                pinned=pinned,
                added_tokens_config=added_tokens_config,
                load_format=load_format,
                expected_checksums=expected_checksums,
            )
        )
