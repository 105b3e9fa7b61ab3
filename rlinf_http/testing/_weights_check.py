"""Reading weights back and moving them without disk, in the fake server (sglang 0.5.23).

- ``/get_weights_by_name`` (GET/POST ``{"name", "truncate_size"}``) answers
  ``values[:truncate_size]`` of a fake parameter whose values derive from the
  *current weight version*: two workers agree exactly when they serve the same
  version, so a test makes one worker differ by updating it differently.
  :meth:`_WeightsCheckMixin.parameter_values` computes the same values (the
  trainer side of a test). An unknown name answers sglang's 400.
- ``/weights_checker``: ``checksum`` (per tensor and per engine, derived from
  the version), ``snapshot`` / ``compare`` (400 when the version changed since
  the snapshot), ``reset_tensors`` (the weights become random: version
  ``"reset"``).
- ``/init_weights_send_group_for_remote_instance``,
  ``/send_weights_to_remote_instance`` (needs the group; recorded in
  ``weight_updates`` as ``remote_send``) and
  ``/remote_instance_transfer_engine_info?rank=`` (400 unless
  :meth:`~_WeightsCheckMixin.set_transfer_engine_info` registered the rank).
- ``/load_lora_adapter_from_tensors``: loads the adapter (path ``"__tensor__"``)
  like ``/load_lora_adapter``.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

from ._asgi import (
    _err,
    _Req,
    _struct_body,
    _validation_error,
    f_b64_list,
    f_bool,
    f_dict,
    f_int,
    f_literal,
    f_opt_str,
    f_str,
    f_str_list,
)
from ._config import FakeConfig
from ._engine import _Engine

#: The fake model's parameters: name -> shape (rows, columns) or (length,).
PARAMETERS: dict[str, tuple[int, ...]] = {
    "model.embed_tokens.weight": (16, 8),
    "model.layers.0.self_attn.q_proj.weight": (8, 8),
    "model.layers.0.mlp.down_proj.weight": (8, 16),
    "model.norm.weight": (8,),
    "lm_head.weight": (16, 8),
}
_CHECK_ACTIONS = ("checksum", "snapshot", "compare", "reset_tensors")
_GET_FAILED = "Get parameter by name failed"


def parameter_values(name: str, version: str, truncate_size: int = 100) -> list[Any]:
    """What ``/get_weights_by_name`` answers for ``name`` at weight ``version``."""
    shape = PARAMETERS[name]
    seed = zlib.crc32(f"{name}@{version}".encode())

    def value(i: int) -> float:
        return round(((seed + i * 2654435761) % 2001 - 1000) / 1000.0, 3)

    if len(shape) == 1:
        return [value(i) for i in range(shape[0])][:truncate_size]
    rows, cols = shape
    return [[value(r * cols + c) for c in range(cols)] for r in range(rows)][:truncate_size]


class _WeightsCheckMixin(_Engine):
    """Weights read-back, checker, remote-instance transfer and LoRA from tensors."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        super().__init__(config)
        self._send_groups: dict[str, dict[str, Any]] = {}
        self._transfer_engine_info: dict[int, list[Any]] = {}
        self._weights_snapshot: str | None = None

    # ------------------------------------------------------------------ public helpers

    def parameter_values(
        self, name: str, truncate_size: int = 100, version: str | None = None
    ) -> list[Any]:
        """The values this server answers for ``name`` (at ``version``, default: current)."""
        return parameter_values(
            name, self._weight_version if version is None else version, truncate_size
        )

    def set_transfer_engine_info(self, rank: int, session_id: str, weights_info: Any) -> None:
        """Register what ``/remote_instance_transfer_engine_info?rank=`` answers."""
        self._transfer_engine_info[rank] = [session_id, weights_info]

    # ------------------------------------------------------------------ routes

    def _weights_check_routes(self) -> None:
        r = self._routes
        r["/get_weights_by_name"] = {
            "GET": self._get_weights_by_name,
            "POST": self._get_weights_by_name,
        }
        r["/weights_checker"] = {"GET": self._weights_checker, "POST": self._weights_checker}
        r["/init_weights_send_group_for_remote_instance"] = {"POST": self._init_send_group}
        r["/send_weights_to_remote_instance"] = {"POST": self._send_weights}
        r["/remote_instance_transfer_engine_info"] = {"GET": self._transfer_info}
        r["/get_remote_instance_transfer_engine_info"] = {"GET": self._transfer_info}
        r["/load_lora_adapter_from_tensors"] = {"POST": self._load_lora_from_tensors}

    # ------------------------------------------------------------------ read back

    async def _get_weights_by_name(self, req: _Req) -> None:
        body = _struct_body(req, {"name": f_str(), "truncate_size": f_int(100)})
        if body["name"] not in PARAMETERS:
            raise _err(_GET_FAILED)
        values = self.parameter_values(body["name"], body["truncate_size"])
        await self._respond_json(req, 200, values)

    def _checksums(self) -> dict[str, Any]:
        version = self._weight_version
        per_tensor = {
            name: hashlib.sha256(f"{name}@{version}".encode()).hexdigest()[:16]
            for name in PARAMETERS
        }
        per_gpu = hashlib.sha256("".join(per_tensor.values()).encode()).hexdigest()
        rank = {
            "checksums": per_tensor,
            "per_gpu_checksum": per_gpu,
            "parallelism_info": [
                {
                    "role": "target",
                    "tp_rank": 0,
                    "tp_size": 1,
                    "dp_rank": 0,
                    "dp_size": 1,
                    "pp_rank": 0,
                    "pp_size": 1,
                    "rank": 0,
                    "size": 1,
                }
            ],
        }
        engine = hashlib.sha256(per_gpu.encode()).hexdigest()
        return {"ranks": [rank], "per_engine_checksum": engine}

    async def _weights_checker(self, req: _Req) -> None:
        if req.json is None:
            req.json = {}  # the body is optional here
        body = _struct_body(
            req,
            {
                "action": f_str("checksum"),
                "allow_quant_error": f_bool(False),
                "skip_tensor_list": f_str_list(None, nullable=True),
                "selector": f_literal("target", "draft", "all", default="all"),
            },
        )
        action = body["action"]
        out: dict[str, Any] = {"success": True, "message": "Success"}
        if action not in _CHECK_ACTIONS:
            out = {"success": False, "message": f"Unsupported action={action!r}"}
        elif action == "checksum":
            out.update(self._checksums())
        elif action == "snapshot":
            self._weights_snapshot = self._weight_version
        elif action == "reset_tensors":
            self._set_weight_version("reset")
        elif self._weights_snapshot is None:
            out = {"success": False, "message": "compare needs a snapshot first"}
        elif self._weights_snapshot != self._weight_version:
            out = {
                "success": False,
                "message": f"Weight check failed: the weights changed since the snapshot "
                f"({self._weights_snapshot!r} -> {self._weight_version!r})",
            }
        await self._respond_json(req, 200 if out["success"] else 400, out)

    # ------------------------------------------------------------------ remote instance

    async def _init_send_group(self, req: _Req) -> None:
        body = _struct_body(
            req,
            {
                "master_address": f_str(),
                "ports": f_str(),
                "group_rank": f_int(),
                "world_size": f_int(),
                "group_name": f_str("weight_send_group"),
                "backend": f_str("nccl"),
            },
        )
        ports = body["ports"].split(",")
        problem = None
        if len(ports) != 1:  # the fake has one TP rank
            problem = f"Expected 1 ports, but got {len(ports)} ports."
        elif body["group_name"] in self._send_groups:
            problem = f"group {body['group_name']!r} already exists"
        elif not 0 <= body["group_rank"] < body["world_size"]:
            problem = "group_rank must be in [0, world_size)"
        if problem is not None:
            msg = f"Failed to init group for remote instance: {problem}"
            await self._respond_json(req, 400, {"success": False, "message": msg})
            return
        self._send_groups[body["group_name"]] = dict(body)
        msg = "Succeeded to init group for remote instance."
        await self._respond_json(req, 200, {"success": True, "message": msg})

    async def _send_weights(self, req: _Req) -> None:
        body = _struct_body(
            req,
            {"master_address": f_str(), "ports": f_str(), "group_name": f_str("weight_send_group")},
        )
        if body["group_name"] not in self._send_groups:
            msg = f"Failed to send weights: group {body['group_name']!r} is not initialized"
            await self._respond_json(req, 400, {"success": False, "message": msg})
            return
        self._record_update("remote_send", {"group_name": body["group_name"]})
        msg = "Succeeded to send weights to remote instance."
        await self._respond_json(req, 200, {"success": True, "message": msg})

    def _record_update(self, kind: str, fields: dict[str, Any]) -> None:
        updates = getattr(self, "_weight_updates", None)
        if isinstance(updates, list):
            updates.append({"kind": kind, "weight_version": self._weight_version, **fields})

    async def _transfer_info(self, req: _Req) -> None:
        raw = req.query().get("rank")
        try:
            rank = int(raw) if raw is not None else None
        except ValueError:
            raise _validation_error("query.rank", "Input should be a valid integer") from None
        if rank is None or rank < 0:
            raise _err("Missing or invalid rank parameter")
        info = self._transfer_engine_info.get(rank)
        if info is None:
            raise _err(f"Failed to get transfer engine info for rank {rank}")
        await self._respond_json(
            req, 200, {"rank": rank, "remote_instance_transfer_engine_info": info}
        )

    # ------------------------------------------------------------------ LoRA from tensors

    async def _load_lora_from_tensors(self, req: _Req) -> None:
        body = _struct_body(
            req,
            {
                "lora_name": f_str(),
                "config_dict": f_dict(),
                "serialized_named_tensors": f_b64_list(),
                "pinned": f_bool(False),
                "added_tokens_config": f_dict(None, nullable=True),
                "load_format": f_opt_str(),
                "expected_checksums": f_dict(None, nullable=True),
            },
        )
        name = body["lora_name"]
        error = ""
        if not self.config.enable_lora:
            error = "LoRA is not enabled. Please set `--enable-lora`."
        elif name in self._loras:
            error = f"The LoRA adapter {name} is already loaded."
        elif not body["serialized_named_tensors"]:
            error = "serialized_named_tensors has no entry for tp rank 0"
        if not error:
            self._loras[name] = "__tensor__"
        out = {"success": not error, "error_message": error, "loaded_adapters": dict(self._loras)}
        await self._respond_json(req, 400 if error else 200, out)
