"""Sans-I/O: weights read-back, checker, IPC / remote-instance / LoRA-from-tensors, options."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from rl_helpers import Driver, ok

from rlinf_http import (
    APIResponseValidationError,
    BadRequestError,
    CacheNotFlushedError,
    InvalidRequestError,
    LoraAdapterResult,
    ParameterSlice,
    RemoteTransferEngineInfo,
    WeightsCheckResult,
    WeightUpdateError,
    WeightUpdateResult,
)
from rlinf_http._core import control, weights_io

# -- /get_weights_by_name ----------------------------------------------------------------


def test_get_weights_by_name_body_and_slice() -> None:
    d = Driver(ok([[0.5, -1.0], [2.0, 3.0]]))
    out = d.run(weights_io.get_weights_by_name_plan("model.embed_tokens.weight", 2))
    assert isinstance(out, ParameterSlice)
    assert d.calls[0][:3] == (
        "POST",
        "/get_weights_by_name",
        {"name": "model.embed_tokens.weight", "truncate_size": 2},
    )
    assert (out.name, out.truncate_size, out.shape) == ("model.embed_tokens.weight", 2, (2, 2))
    assert out.flat() == [0.5, -1.0, 2.0, 3.0]


def test_get_weights_by_name_default_truncate_and_flat_parameter() -> None:
    d = Driver(ok([1.0, 2.0, 3.0]))
    out = d.run(weights_io.get_weights_by_name_plan("model.norm.weight"))
    assert d.bodies == [{"name": "model.norm.weight", "truncate_size": 100}]
    assert out.shape == (3,) and out.flat() == [1.0, 2.0, 3.0]


def test_get_weights_by_name_ragged_has_no_shape() -> None:
    assert ParameterSlice(name="x", values=[[1.0], [1.0, 2.0]]).shape is None
    with pytest.raises(ValueError):
        ParameterSlice(name="x", values=["a"]).flat()


def test_get_weights_by_name_errors() -> None:
    d = Driver(lambda m, p, b: (400, {"error": {"message": "Get parameter by name failed"}}))
    with pytest.raises(BadRequestError, match="Get parameter by name failed"):
        d.run(weights_io.get_weights_by_name_plan("nope"))
    with pytest.raises(APIResponseValidationError):
        Driver(ok({"not": "a list"})).run(weights_io.get_weights_by_name_plan("w"))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("",), "name"),
        ((3,), "name"),
        (("w", 0), "truncate_size"),
        (("w", True), "truncate_size"),
        (("w", 1.5), "truncate_size"),
    ],
)
def test_get_weights_by_name_bad_arguments(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        weights_io.get_weights_by_name_plan(*args)


def test_read_parameters_keeps_per_name_errors() -> None:
    def script(m: str, p: str, b: Any) -> tuple[int, Any]:
        if b["name"] == "missing":
            return 400, {"error": {"message": "Get parameter by name failed"}}
        return 200, [1.0, 2.0]

    d = Driver(script)
    out = d.run(weights_io.read_parameters_plan(["a", "missing", "b"], 2))
    assert list(out) == ["a", "missing", "b"]
    assert isinstance(out["a"], ParameterSlice) and out["a"].values == [1.0, 2.0]
    assert isinstance(out["missing"], BadRequestError)
    assert [body["name"] for body in d.bodies] == ["a", "missing", "b"]
    for bad in ([], "a", ["a", "a"]):
        with pytest.raises(InvalidRequestError):
            weights_io.read_parameters_plan(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="truncate_size"):
        weights_io.read_parameters_plan(["a"], 0)


# -- /weights_checker ----------------------------------------------------------------------


def test_weights_checker_checksum() -> None:
    answer = {
        "success": True,
        "message": "Success",
        "ranks": [
            {
                "checksums": {"w": "ab"},
                "per_gpu_checksum": "cd",
                "parallelism_info": [{"role": "target", "tp_rank": 0, "tp_size": 1}],
            }
        ],
        "per_engine_checksum": "ef",
    }
    d = Driver(ok(answer))
    out = d.run(weights_io.weights_checker_plan(skip_tensor_list=["rotary"]))
    assert isinstance(out, WeightsCheckResult)
    assert d.calls[0][:3] == (
        "POST",
        "/weights_checker",
        {
            "action": "checksum",
            "allow_quant_error": False,
            "selector": "all",
            "skip_tensor_list": ["rotary"],
        },
    )
    assert out.per_engine_checksum == "ef"
    assert out.ranks is not None and out.ranks[0].checksums == {"w": "ab"}
    assert out.ranks[0].parallelism_info[0].role == "target"
    assert d.calls[0][3].max_retries == 0


def test_weights_checker_compare_failure_is_weight_update_error() -> None:
    d = Driver(lambda m, p, b: (400, {"success": False, "message": "tensors differ"}))
    with pytest.raises(WeightUpdateError, match="tensors differ") as info:
        d.run(weights_io.weights_checker_plan("compare"))
    assert not isinstance(info.value, CacheNotFlushedError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"action": "hash"}, "action"),
        ({"allow_quant_error": 1}, "allow_quant_error"),
        ({"skip_tensor_list": "rotary"}, "skip_tensor_list"),
        ({"skip_tensor_list": [""]}, "skip_tensor_list"),
        ({"selector": "both"}, "selector"),
    ],
)
def test_weights_checker_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        weights_io.weights_checker_plan(**kwargs)


# -- /update_weights_from_ipc -----------------------------------------------------------------


def test_update_weights_from_ipc_body() -> None:
    d = Driver(ok())
    out = d.run(
        weights_io.update_weights_from_ipc_plan(
            {"GPU-0": "ipc:///tmp/a"}, weight_version="v2", torch_empty_cache=True
        )
    )
    assert isinstance(out, WeightUpdateResult)
    assert d.calls[0][:3] == (
        "POST",
        "/update_weights_from_ipc",
        {
            "zmq_handles": {"GPU-0": "ipc:///tmp/a"},
            "flush_cache": True,
            "torch_empty_cache": True,
            "weight_version": "v2",
        },
    )
    assert d.calls[0][3].max_retries == 0


def test_update_weights_from_ipc_flush_failure() -> None:
    msg = "Weights were updated, but the cache was not flushed because requests are running."
    d = Driver(lambda m, p, b: (400, {"success": False, "message": msg}))
    with pytest.raises(CacheNotFlushedError):
        d.run(weights_io.update_weights_from_ipc_plan({"GPU-0": "ipc:///a"}))


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (({},), {}, "zmq_handles"),
        (("ipc:///a",), {}, "zmq_handles"),
        (({"GPU-0": 3},), {}, "zmq_handles"),
        (({"GPU-0": "a"},), {"flush_cache": "yes"}, "flush_cache"),
        (({"GPU-0": "a"},), {"weight_version": 7}, "weight_version"),
    ],
)
def test_update_weights_from_ipc_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        weights_io.update_weights_from_ipc_plan(*args, **kwargs)


# -- remote instance ------------------------------------------------------------------------


def test_init_send_group_and_send() -> None:
    d = Driver(ok())
    d.run(
        weights_io.init_weights_send_group_for_remote_instance_plan(
            "10.0.0.1", [29500, 29501], 0, 2
        )
    )
    d.run(weights_io.send_weights_to_remote_instance_plan("10.0.0.1", "29500, 29501"))
    assert d.paths == [
        "/init_weights_send_group_for_remote_instance",
        "/send_weights_to_remote_instance",
    ]
    assert d.bodies == [
        {
            "master_address": "10.0.0.1",
            "ports": "29500,29501",
            "group_rank": 0,
            "world_size": 2,
            "group_name": "weight_send_group",
            "backend": "nccl",
        },
        {"master_address": "10.0.0.1", "ports": "29500,29501", "group_name": "weight_send_group"},
    ]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", [1], 0, 2), "master_address"),
        (("h", [], 0, 2), "ports"),
        (("h", "a,b", 0, 2), "ports"),
        (("h", [70000], 0, 2), "port"),
        (("h", [1], 2, 2), "group_rank"),
        (("h", [1], 0, 1), "world_size"),
    ],
)
def test_init_send_group_bad_arguments(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        weights_io.init_weights_send_group_for_remote_instance_plan(*args)


def test_send_failure_is_weight_update_error() -> None:
    d = Driver(lambda m, p, b: (400, {"success": False, "message": "no group"}))
    with pytest.raises(WeightUpdateError, match="no group"):
        d.run(weights_io.send_weights_to_remote_instance_plan("h", [1]))


def test_transfer_engine_info() -> None:
    answer = {"rank": 1, "remote_instance_transfer_engine_info": ["sess", {"w": [1, 2]}]}
    d = Driver(ok(answer))
    out = d.run(weights_io.remote_instance_transfer_engine_info_plan(1))
    assert d.calls[0][:2] == ("GET", "/remote_instance_transfer_engine_info?rank=1")
    assert isinstance(out, RemoteTransferEngineInfo)
    assert (out.rank, out.session_id, out.weights_info) == (1, "sess", {"w": [1, 2]})
    with pytest.raises(InvalidRequestError, match="rank"):
        weights_io.remote_instance_transfer_engine_info_plan(-1)
    bad = Driver(lambda m, p, b: (400, {"error": {"message": "Failed to get info for rank 1"}}))
    with pytest.raises(BadRequestError, match="rank 1"):
        bad.run(weights_io.remote_instance_transfer_engine_info_plan(1))


# -- LoRA from tensors ----------------------------------------------------------------------


def test_load_lora_adapter_from_tensors_body() -> None:
    d = Driver(ok({"success": True, "error_message": None, "loaded_adapters": {"a": "__tensor__"}}))
    out = d.run(
        weights_io.load_lora_adapter_from_tensors_plan(
            "a",
            {"r": 8, "target_modules": ["q_proj"]},
            [b"\x00\x01"],
            added_tokens_config={"<x>": 5},
            expected_checksums={"w": "ab"},
        )
    )
    assert isinstance(out, LoraAdapterResult) and out.loaded_adapters == {"a": "__tensor__"}
    assert d.calls[0][:3] == (
        "POST",
        "/load_lora_adapter_from_tensors",
        {
            "lora_name": "a",
            "config_dict": {"r": 8, "target_modules": ["q_proj"]},
            "serialized_named_tensors": [base64.b64encode(b"\x00\x01").decode()],
            "pinned": False,
            "added_tokens_config": {"<x>": 5},
            "expected_checksums": {"w": "ab"},
        },
    )
    assert d.calls[0][3].max_retries == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("", {}, [b"x"]), {}, "lora_name"),
        (("a", [], [b"x"]), {}, "config_dict"),
        (("a", {}, []), {}, "serialized_named_tensors"),
        (("a", {}, ["not base64!"]), {}, "base64"),
        (("a", {}, [b"x"]), {"pinned": 1}, "pinned"),
        (("a", {}, [b"x"]), {"added_tokens_config": {"t": "5"}}, "added_tokens_config"),
        (("a", {}, [b"x"]), {"expected_checksums": {"w": 1}}, "expected_checksums"),
        (("a", {"x": object()}, [b"x"]), {}, "JSON"),
    ],
)
def test_load_lora_adapter_from_tensors_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        weights_io.load_lora_adapter_from_tensors_plan(*args, **kwargs)


def test_load_lora_adapter_from_tensors_refused() -> None:
    answer = {"success": False, "error_message": "LoRA is not enabled", "loaded_adapters": {}}
    d = Driver(lambda m, p, b: (400, answer))
    with pytest.raises(BadRequestError, match="LoRA is not enabled"):
        d.run(weights_io.load_lora_adapter_from_tensors_plan("a", {}, [b"x"]))


# -- weight-update options ------------------------------------------------------------------


def test_weight_update_options_to_disk_update() -> None:
    extra = weights_io.weight_update_options(
        keep_pause=True,
        is_async=False,
        token_step=12,
        manifest={"w": {"dtype": "bfloat16"}},
        recapture_cuda_graph=True,
        torch_empty_cache=True,
    )
    assert extra == {
        "keep_pause": True,
        "is_async": False,
        "recapture_cuda_graph": True,
        "torch_empty_cache": True,
        "token_step": 12,
        "manifest": {"w": {"dtype": "bfloat16"}},
    }
    d = Driver(ok({"success": True, "message": "ok", "num_paused_requests": 0}))
    d.run(control.update_weights_from_disk_plan("/ckpt", extra=extra))
    assert d.bodies[0]["keep_pause"] is True and d.bodies[0]["token_step"] == 12
    assert weights_io.weight_update_options() == {}


def test_weight_update_options_torch_empty_cache_everywhere() -> None:
    for endpoint in ("disk", "distributed", "tensor", "ipc"):
        assert weights_io.weight_update_options(endpoint, torch_empty_cache=False) == {
            "torch_empty_cache": False
        }


@pytest.mark.parametrize("option", ["keep_pause", "is_async", "recapture_cuda_graph"])
def test_weight_update_options_disk_only(option: str) -> None:
    with pytest.raises(InvalidRequestError, match="update_weights_from_disk only"):
        weights_io.weight_update_options("distributed", **{option: True})
    with pytest.raises(InvalidRequestError, match="update_weights_from_disk only"):
        weights_io.weight_update_options("tensor", token_step=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep_pause": "yes"}, "keep_pause"),
        ({"is_async": 1}, "is_async"),
        ({"token_step": -1}, "token_step"),
        ({"token_step": 1.0}, "token_step"),
        ({"manifest": ["w"]}, "manifest"),
        ({"manifest": {1: "w"}}, "manifest"),
        ({"manifest": {"w": float("nan")}}, "manifest"),
        ({"recapture_cuda_graph": None, "torch_empty_cache": "no"}, "torch_empty_cache"),
    ],
)
def test_weight_update_options_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        weights_io.weight_update_options(**kwargs)
    with pytest.raises(InvalidRequestError, match="endpoint"):
        weights_io.weight_update_options("nccl")  # type: ignore[arg-type]
