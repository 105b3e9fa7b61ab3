"""Weights in and out of an sglang 0.5.23 server without disk or NCCL, and read back (no I/O).

Plans (drive them with the client's sync or async plan driver) and checked
option builders for:

- ``/get_weights_by_name`` (read a parameter slice back) and ``/weights_checker``;
- ``/update_weights_from_ipc`` (checkpoint-engine);
- the remote-instance transfer: ``/init_weights_send_group_for_remote_instance``,
  ``/send_weights_to_remote_instance``, ``/remote_instance_transfer_engine_info``;
- ``/load_lora_adapter_from_tensors``;
- the weight-update options of sglang 0.5.23 (``keep_pause``, ``is_async``,
  ``token_step``, ``manifest``, ``recapture_cuda_graph``, ``torch_empty_cache``)
  as typed, checked fields: :func:`weight_update_options`.

Arguments are checked when the plan is made (:class:`InvalidRequestError`,
before any I/O). A ``{"success": false}`` answer is a
:class:`~rlinf_http.WeightUpdateError` (a :class:`CacheNotFlushedError` when the
load succeeded and only the flush after it failed). The router forwards none of
these endpoints: send them to each worker.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic

from .._errors import APIResponseValidationError, APIStatusError, InvalidRequestError
from ..models import (
    LoraAdapterResult,
    ParameterSlice,
    RemoteTransferEngineInfo,
    WeightsCheckResult,
    WeightUpdateResult,
)
from .control import (
    SELECTORS,
    Selector,
    _base64_entry,
    _choice,
    _flag,
    _integer,
    _parse_result,
    _post,
    _single,
    _text,
    _weight_call,
    _weight_op,
)
from .plans import Plan
from .requests import Operation
from .responses import RawResponse, decode_json, parse_model

__all__ = [
    "CHECK_ACTIONS",
    "DISK_ONLY_OPTIONS",
    "UPDATE_ENDPOINTS",
    "CheckAction",
    "UpdateEndpoint",
    "get_weights_by_name_plan",
    "init_weights_send_group_for_remote_instance_plan",
    "load_lora_adapter_from_tensors_plan",
    "read_parameters_plan",
    "remote_instance_transfer_engine_info_plan",
    "send_weights_to_remote_instance_plan",
    "update_weights_from_ipc_plan",
    "weight_update_options",
    "weights_checker_plan",
]

CheckAction = Literal["checksum", "snapshot", "compare", "reset_tensors"]
#: ``/weights_checker`` actions: ``checksum`` (per-tensor and per-engine sha256),
#: ``snapshot`` then ``compare`` (did the weights change since the snapshot?),
#: ``reset_tensors`` (overwrites every weight with random values: tests only).
CHECK_ACTIONS: tuple[str, ...] = ("checksum", "snapshot", "compare", "reset_tensors")

UpdateEndpoint = Literal["disk", "distributed", "tensor", "ipc"]
#: The weight-update endpoints :func:`weight_update_options` knows.
UPDATE_ENDPOINTS: tuple[str, ...] = ("disk", "distributed", "tensor", "ipc")
#: Options only ``UpdateWeightFromDiskReqInput`` has in sglang 0.5.23 (the other
#: update requests would silently drop them).
DISK_ONLY_OPTIONS: tuple[str, ...] = (
    "keep_pause",
    "is_async",
    "token_step",
    "manifest",
    "recapture_cuda_graph",
)


# -- weight-update options --------------------------------------------------------------


def _json_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{what} must be a dict, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidRequestError(f"{what} keys must be str, got {key!r}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{what} is not JSON-serializable: {exc}") from None
    return dict(value)


def weight_update_options(
    endpoint: UpdateEndpoint = "disk",
    *,
    keep_pause: bool | None = None,
    is_async: bool | None = None,
    token_step: int | None = None,
    manifest: Mapping[str, Any] | None = None,
    recapture_cuda_graph: bool | None = None,
    torch_empty_cache: bool | None = None,
) -> dict[str, Any]:
    """The checked extra fields of a weight update (only those given; ``None`` = default).

    Pass the result as ``extra=`` of ``update_weights_from_*_plan``. In sglang
    0.5.23 ``keep_pause``, ``is_async``, ``token_step``, ``manifest`` and
    ``recapture_cuda_graph`` exist on ``/update_weights_from_disk`` only (elsewhere
    they would be dropped silently, so they are refused here);
    ``torch_empty_cache`` (``torch.cuda.empty_cache()`` with the flush) exists
    on all four updates. ``token_step`` is the trainer step (an int >= 0);
    ``manifest`` a JSON object of tensor metadata.
    """
    _choice(endpoint, "endpoint", UPDATE_ENDPOINTS)
    given: dict[str, Any] = {}
    for name, value in (
        ("keep_pause", keep_pause),
        ("is_async", is_async),
        ("recapture_cuda_graph", recapture_cuda_graph),
        ("torch_empty_cache", torch_empty_cache),
    ):
        if value is not None:
            given[name] = _flag(value, name)
    if token_step is not None:
        given["token_step"] = _integer(token_step, "token_step", low=0)
    if manifest is not None:
        given["manifest"] = _json_object(manifest, "manifest")
    if endpoint != "disk":
        refused = [name for name in DISK_ONLY_OPTIONS if name in given]
        if refused:
            raise InvalidRequestError(
                f"{', '.join(refused)}: sglang 0.5.23 takes "
                f"{'this option' if len(refused) == 1 else 'these options'} on "
                f"update_weights_from_disk only (update_weights_from_{endpoint} would "
                "ignore it)"
            )
    return given


# -- read back --------------------------------------------------------------------------


def _parse_slice(name: str, truncate_size: int, raw: RawResponse) -> ParameterSlice:
    value = decode_json(raw)
    if not isinstance(value, list):
        raise _shape_error(raw, "a JSON list of parameter values")
    return ParameterSlice(name=name, truncate_size=truncate_size, values=value)


def _shape_error(raw: RawResponse, expected: str) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"{raw.method} {raw.url}: expected {expected}, got {raw.content[:80]!r}",
        method=raw.method,
        url=raw.url,
        status_code=raw.status_code,
        raw_body=raw.content,
    )


def get_weights_by_name_plan(name: str, truncate_size: int = 100) -> Plan[ParameterSlice]:
    """``POST /get_weights_by_name``: the first ``truncate_size`` values (1-D) or rows (2-D).

    A parameter the model does not have (or a model without the method)
    answers 400: a :class:`~rlinf_http.BadRequestError`.
    """
    body = {
        "name": _text(name, "name"),
        "truncate_size": _integer(truncate_size, "truncate_size", low=1),
    }
    parse = functools.partial(_parse_slice, name, truncate_size)
    return _single(_post("/get_weights_by_name", body, parse), max_retries=None)


def read_parameters_plan(
    names: Sequence[str], truncate_size: int = 100
) -> Plan[dict[str, ParameterSlice | APIStatusError]]:
    """Read several parameters from one worker: name -> slice, or the error status it got.

    A parameter the server refuses (an error status, e.g. an unknown name) is
    kept as its :class:`~rlinf_http.APIStatusError` so the others are still
    read; a connection failure ends the plan (the whole worker failed). The
    per-worker input of :func:`~rlinf_http._core.weights_check.compare_weight_slices`.
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise InvalidRequestError(
            f"names must be a non-empty list of parameter names, got {names!r}"
        )
    if len(set(names)) != len(names):
        raise InvalidRequestError("names lists a parameter twice")
    plans = [(name, get_weights_by_name_plan(name, truncate_size)) for name in names]
    return _read_all(plans)


def _read_all(
    plans: list[tuple[str, Plan[ParameterSlice]]],
) -> Plan[dict[str, ParameterSlice | APIStatusError]]:
    out: dict[str, ParameterSlice | APIStatusError] = {}
    for name, plan in plans:
        try:
            out[name] = yield from plan
        except APIStatusError as exc:
            out[name] = exc
    return out


def weights_checker_plan(
    action: CheckAction = "checksum",
    *,
    allow_quant_error: bool = False,
    skip_tensor_list: Sequence[str] | None = None,
    selector: Selector = "all",
) -> Plan[WeightsCheckResult]:
    """``POST /weights_checker``: checksums of the served weights (or snapshot / compare).

    ``skip_tensor_list`` holds substrings of tensor names to leave out.
    ``compare`` answers ``success: false`` (a :class:`WeightUpdateError`) when the
    weights differ from the last ``snapshot``.
    """
    body: dict[str, Any] = {
        "action": _choice(action, "action", CHECK_ACTIONS),
        "allow_quant_error": _flag(allow_quant_error, "allow_quant_error"),
        "selector": _choice(selector, "selector", SELECTORS),
    }
    if skip_tensor_list is not None:
        if isinstance(skip_tensor_list, str) or not isinstance(skip_tensor_list, Sequence):
            raise InvalidRequestError(
                f"skip_tensor_list must be a list of str, got {skip_tensor_list!r}"
            )
        body["skip_tensor_list"] = [
            _text(s, "each skip_tensor_list entry") for s in skip_tensor_list
        ]
    parse = functools.partial(_parse_result, WeightsCheckResult, False)
    return _weight_call(_post("/weights_checker", body, parse), False)


# -- moving weights without disk -----------------------------------------------------------


def update_weights_from_ipc_plan(
    zmq_handles: Mapping[str, str],
    *,
    flush_cache: bool = True,
    weight_version: str | None = None,
    torch_empty_cache: bool = False,
) -> Plan[WeightUpdateResult]:
    """``POST /update_weights_from_ipc``: load from checkpoint-engine's ZMQ sockets.

    ``zmq_handles`` maps each device UUID to its ZMQ socket path. sglang 0.5.23
    supports one DP rank only.
    """
    if not isinstance(zmq_handles, Mapping) or not zmq_handles:
        raise InvalidRequestError(
            "zmq_handles must be a non-empty dict of device UUID -> ZMQ socket path"
        )
    handles = {
        _text(uuid, "each zmq_handles key"): _text(path, f"zmq_handles[{uuid!r}]")
        for uuid, path in zmq_handles.items()
    }
    body: dict[str, Any] = {
        "zmq_handles": handles,
        "flush_cache": _flag(flush_cache, "flush_cache"),
        "torch_empty_cache": _flag(torch_empty_cache, "torch_empty_cache"),
    }
    if _text(weight_version, "weight_version", optional=True) is not None:
        body["weight_version"] = weight_version
    op = _weight_op("/update_weights_from_ipc", body, flush_cache)
    return _weight_call(op, flush_cache)


def _ports(ports: str | Sequence[int]) -> str:
    """One port per TP rank, as sglang's comma-separated text."""
    if isinstance(ports, str):
        items: Sequence[object] = [p.strip() for p in ports.split(",")]
        checked = []
        for item in items:
            if not isinstance(item, str) or not item.isdigit():
                raise InvalidRequestError(
                    f"ports must be comma-separated port numbers, got {ports!r}"
                )
            checked.append(_integer(int(item), "each port", low=1, high=65535))
    elif isinstance(ports, Sequence) and not isinstance(ports, bytes) and ports:
        checked = [_integer(p, "each port", low=1, high=65535) for p in ports]
    else:
        raise InvalidRequestError(
            f"ports must be one port per TP rank (a list of ints or 'p0,p1,...'), got {ports!r}"
        )
    return ",".join(str(p) for p in checked)


def init_weights_send_group_for_remote_instance_plan(
    master_address: str,
    ports: str | Sequence[int],
    group_rank: int,
    world_size: int,
    *,
    group_name: str = "weight_send_group",
    backend: str = "nccl",
) -> Plan[WeightUpdateResult]:
    """``POST /init_weights_send_group_for_remote_instance`` (on the instance that sends).

    ``ports`` has one port per TP rank of the sender; ``group_rank`` is this
    instance's rank in the send group of ``world_size`` ranks.
    """
    world = _integer(world_size, "world_size", low=2)
    body = {
        "master_address": _text(master_address, "master_address"),
        "ports": _ports(ports),
        "group_rank": _integer(group_rank, "group_rank", low=0, high=world - 1),
        "world_size": world,
        "group_name": _text(group_name, "group_name"),
        "backend": _text(backend, "backend"),
    }
    return _weight_call(_weight_op("/init_weights_send_group_for_remote_instance", body), False)


def send_weights_to_remote_instance_plan(
    master_address: str,
    ports: str | Sequence[int],
    *,
    group_name: str = "weight_send_group",
) -> Plan[WeightUpdateResult]:
    """``POST /send_weights_to_remote_instance``: broadcast the weights over the send group."""
    body = {
        "master_address": _text(master_address, "master_address"),
        "ports": _ports(ports),
        "group_name": _text(group_name, "group_name"),
    }
    return _weight_call(_weight_op("/send_weights_to_remote_instance", body), False)


_TRANSFER_INFO: pydantic.TypeAdapter[RemoteTransferEngineInfo] = pydantic.TypeAdapter(
    RemoteTransferEngineInfo
)


def _parse_transfer_info(raw: RawResponse) -> RemoteTransferEngineInfo:
    return parse_model(_TRANSFER_INFO, raw)


def remote_instance_transfer_engine_info_plan(rank: int) -> Plan[RemoteTransferEngineInfo]:
    """``GET /remote_instance_transfer_engine_info?rank=``: a rank's transfer-engine session.

    An unknown rank (or a server without the bootstrap server) answers 400.
    """
    query = urllib.parse.urlencode({"rank": _integer(rank, "rank", low=0)})
    op = Operation(
        "GET", f"/remote_instance_transfer_engine_info?{query}", None, (), _parse_transfer_info
    )
    return _single(op, max_retries=None)


# -- LoRA from tensors ----------------------------------------------------------------------

_LORA: pydantic.TypeAdapter[LoraAdapterResult] = pydantic.TypeAdapter(LoraAdapterResult)


def _parse_lora(raw: RawResponse) -> LoraAdapterResult:
    if not raw.content.strip():
        return LoraAdapterResult()
    return parse_model(_LORA, raw)


def _str_map(value: object, what: str, kind: type) -> dict[str, Any]:
    mapping = _json_object(value, what)
    for key, item in mapping.items():
        if isinstance(item, bool) or not isinstance(item, kind):
            raise InvalidRequestError(f"{what}[{key!r}] must be a {kind.__name__}, got {item!r}")
    return mapping


def load_lora_adapter_from_tensors_plan(
    lora_name: str,
    config_dict: Mapping[str, Any],
    serialized_named_tensors: Sequence[bytes | str],
    *,
    pinned: bool = False,
    added_tokens_config: Mapping[str, int] | None = None,
    load_format: str | None = None,
    expected_checksums: Mapping[str, str] | None = None,
) -> Plan[LoraAdapterResult]:
    """``POST /load_lora_adapter_from_tensors``: a LoRA adapter without writing it to disk.

    ``config_dict`` is the PEFT ``adapter_config.json`` content;
    ``serialized_named_tensors`` one serialized copy of the adapter tensors per
    TP rank (bytes are base64-encoded for the wire). A refusal (400,
    ``success: false``) is a :class:`~rlinf_http.BadRequestError` whose
    ``message`` is sglang's ``error_message``. Never resent.
    """
    entries = serialized_named_tensors
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or not entries:
        raise InvalidRequestError(
            "serialized_named_tensors must be a non-empty list (one entry per TP rank)"
        )
    body: dict[str, Any] = {
        "lora_name": _text(lora_name, "lora_name"),
        "config_dict": _json_object(config_dict, "config_dict"),
        "serialized_named_tensors": [_base64_entry(entry) for entry in entries],
        "pinned": _flag(pinned, "pinned"),
    }
    if added_tokens_config is not None:
        body["added_tokens_config"] = _str_map(added_tokens_config, "added_tokens_config", int)
    if _text(load_format, "load_format", optional=True) is not None:
        body["load_format"] = load_format
    if expected_checksums is not None:
        body["expected_checksums"] = _str_map(expected_checksums, "expected_checksums", str)
    return _single(_post("/load_lora_adapter_from_tensors", body, _parse_lora), max_retries=0)
