"""The RL control plane of sglang 0.5.23, with real state.

- ``/pause_generation`` (``abort``: abort running requests and return once drained;
  ``retract`` / ``in_place``: hold running requests, return at once), then
  ``/continue_generation``; new requests wait while paused.
- Weight updates: ``/update_weights_from_disk``, ``/update_weight_version``,
  ``/init_weights_update_group`` / ``/destroy_weights_update_group``,
  ``/begin_weight_update`` ... ``/update_weights_from_{distributed,tensor}`` ...
  ``/end_weight_update`` (the session rule of 0.5.23), ``/update_weights_from_ipc``.
  Unless paused, an update waits for in-flight requests (sglang's writer lock)
  and new requests wait for it. A successful update changes the weight version
  and (disk) the model path / served name shown by ``/model_info``,
  ``/v1/models`` and ``meta_info.weight_version``.
- ``/release_memory_occupation`` / ``/resume_memory_occupation`` with tags.
- ``/v1/loads`` with live running / waiting counts, and ``/ready``.

Response shapes (JSON, ``null``, empty) and status codes follow sglang; see
:class:`~rlinf_http.testing.FaultSpec` ``weight_update_error`` for failing updates.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

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
    f_shape_list,
    f_str,
    f_str_list,
)
from ._config import FakeConfig
from ._engine import _PAUSE_MODES, _Engine

MEMORY_TAGS = ("kv_cache", "weights", "cuda_graph")
_LOAD_SECTIONS = ("core", "memory", "spec", "lora", "disagg", "queues", "all")
_SELECTORS = ("all", "target", "draft")
_DTYPES = frozenset(
    {
        "float16",
        "half",
        "bfloat16",
        "float32",
        "float",
        "float64",
        "double",
        "float8_e4m3fn",
        "float8_e5m2",
        "int8",
        "uint8",
        "int16",
        "int32",
        "int64",
        "bool",
    }
)
_FLUSH_FAILED = "Cache flush failed after updating weights"
_SESSION_RULE = "{} must run between begin_weight_update() and end_weight_update()"

_UPDATE_COMMON = {
    "flush_cache": f_bool(True),
    "abort_all_requests": f_bool(False),
    "weight_version": f_opt_str(),
    "torch_empty_cache": f_bool(False),
}


class _ControlMixin(_Engine):
    """Control endpoints; state lives here and in :class:`_Engine`."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        super().__init__(config)
        self._groups: dict[str, dict[str, Any]] = {}
        self._wu_session: str | None = None  # the selector of the open session
        self._updating = False  # one weight update at a time (FIFO-ish)
        self._released: set[str] = set()
        self._weight_updates: list[dict[str, Any]] = []
        #: (weight_version, model_path) /model_info shows after a failed flush
        self._stale_label: tuple[str, str] | None = None

    def model_info(self) -> dict[str, Any]:
        """``/model_info``; with a stale label (see ``FakeConfig``), the old one."""
        info: dict[str, Any] = super().model_info()  # type: ignore[misc]
        if self._stale_label is not None:
            info["weight_version"], info["model_path"] = self._stale_label
        return info

    # ------------------------------------------------------------------ public view

    def control_state(self) -> dict[str, Any]:
        """Snapshot of the control-plane state (also ``GET /_fake/state``)."""
        return {
            "paused": self._paused,
            "weight_version": self._weight_version,
            "model_path": self._model_path,
            "served_model_name": self._served_model_name,
            "load_format": self._load_format,
            "weight_update_groups": {k: dict(v) for k, v in self._groups.items()},
            "weight_update_session": self._wu_session is not None,
            "released_memory_tags": sorted(self._released),
            "weight_updates": [dict(u) for u in self._weight_updates],
        }

    @property
    def released_memory_tags(self) -> frozenset[str]:
        """Memory tags currently released."""
        return frozenset(self._released)

    # ------------------------------------------------------------------ routes

    def _control_routes(self) -> None:
        r = self._routes
        post = {
            "/update_weights_from_disk": self._update_from_disk,
            "/update_weight_version": self._update_weight_version,
            "/init_weights_update_group": self._init_group,
            "/destroy_weights_update_group": self._destroy_group,
            "/begin_weight_update": self._begin_weight_update,
            "/end_weight_update": self._end_weight_update,
            "/update_weights_from_distributed": self._update_from_distributed,
            "/update_weights_from_tensor": self._update_from_tensor,
            "/update_weights_from_ipc": self._update_from_ipc,
            "/pause_generation": self._pause,
            "/continue_generation": self._continue,
        }
        for path, handler in post.items():
            r[path] = {"POST": handler}
        for path, handler in (
            ("/release_memory_occupation", self._release_memory),
            ("/resume_memory_occupation", self._resume_memory),
        ):
            r[path] = {"GET": handler, "POST": handler}
        r["/v1/loads"] = {"GET": self._loads}
        r["/ready"] = {"GET": self._ready}
        r["/ping"] = {"GET": self._ping}
        r["/_fake/state"] = {"GET": self._fake_state}

    # ------------------------------------------------------------------ pause / continue

    async def _pause(self, req: _Req) -> None:
        body = _struct_body(req, {"mode": f_literal(*_PAUSE_MODES, default="abort")})
        mode = body["mode"]
        if self._paused is None:
            self._pause_t0 = time.monotonic()
        self._paused = mode
        self._notify()
        if mode == "abort":
            # sglang aborts everything and returns only once nothing is in flight
            self._abort_all()
            await self._wait_for(lambda: not self._running)
        msg = {"message": "Generation paused successfully.", "status": "ok"}
        await self._respond_json(req, 200, msg)

    async def _continue(self, req: _Req) -> None:
        _struct_body(req, {"torch_empty_cache": f_bool(True)})
        self._paused = None
        for job, _item in self._running.values():
            job.retracted = False  # back in the running batch from now on
        self._notify()
        msg = {"message": "Generation continued successfully.", "status": "ok"}
        await self._respond_json(req, 200, msg)

    async def _ready(self, req: _Req) -> None:
        await self._respond(req, 503 if self._paused is not None else 200, b"", None)

    async def _ping(self, req: _Req) -> None:
        # sglang's /ping (SageMaker): 200 while up, paused included (unlike /ready)
        await self._respond(req, 200, b"", None)

    # ------------------------------------------------------------------ weight updates

    @asynccontextmanager
    async def _writer(self, abort_all: bool, load: bool = True) -> AsyncIterator[None]:
        """sglang's model-update lock, writer side: unless paused, wait for the
        in-flight requests to finish while new ones wait behind the update.

        With ``load``, the body takes ``config.weight_update_s``."""
        await self._wait_for(lambda: not self._updating)
        self._updating = True
        locked = self._paused is None
        if locked:
            self._writers += 1
        try:
            if abort_all:
                self._abort_all()
            if locked:
                await self._wait_for(lambda: not self._running)
            if load and self.config.weight_update_s > 0:
                await anyio.sleep(self.config.weight_update_s)
            yield
        finally:
            if locked:
                self._writers -= 1
            self._updating = False
            self._notify()

    @staticmethod
    def _weight_fault(req: _Req) -> str | None:
        return req.fault.weight_update_error if req.fault is not None else None

    async def _finish_update(
        self,
        req: _Req,
        kind: str,
        body: dict[str, Any],
        ok_message: str,
        extra: dict[str, Any],
        apply: dict[str, Any] | None = None,
    ) -> None:
        """Swap the weights (record the update), then flush like sglang does."""
        label = (self._weight_version, self._model_path)
        if apply:
            if "model_path" in apply:
                self._model_path = apply["model_path"]
                self._served_model_name = apply["model_path"]
            if apply.get("load_format") is not None:
                self._load_format = apply["load_format"]
        message = ok_message
        version = body.get("weight_version")
        if version is not None:
            self._set_weight_version(version)
            if kind == "distributed":
                message += f" Weight version updated to {version}."
        record = {
            "kind": kind,
            "weight_version": self._weight_version,
            "model_path": self._model_path,
        }
        record.update({k: v for k, v in body.items() if k in ("names", "group_name")})
        self._weight_updates.append(record)
        flushed = True
        if body.get("flush_cache", True):
            flushed = self._weight_fault(req) != "flush" and self._can_flush()
        if not flushed and self.config.stale_label_after_flush_failure:
            self._stale_label = self._stale_label or label
        else:
            self._stale_label = None
        if not flushed:
            out = {"success": False, "message": f"{message} {_FLUSH_FAILED}.", **extra}
            await self._respond_json(req, 400, out)
            return
        await self._respond_json(req, 200, {"success": True, "message": message, **extra})

    async def _update_from_disk(self, req: _Req) -> None:
        spec = {
            "model_path": f_str(),
            "load_format": f_opt_str(),
            "recapture_cuda_graph": f_bool(False),
            **_UPDATE_COMMON,
        }
        body = _struct_body(req, spec)
        extra = {"num_paused_requests": 0}
        async with self._writer(body["abort_all_requests"]):
            if self._weight_fault(req) == "load":
                msg = (
                    f"Failed to update weights: injected fault loading {body['model_path']}.\n"
                    "Rolling back to original weights."
                )
                await self._respond_json(req, 400, {"success": False, "message": msg, **extra})
                return
            await self._finish_update(
                req,
                "disk",
                body,
                "Succeeded to update model weights.",
                extra,
                apply={"model_path": body["model_path"], "load_format": body["load_format"]},
            )

    async def _update_weight_version(self, req: _Req) -> None:
        body = _struct_body(req, {"new_version": f_str(), "abort_all_requests": f_bool(True)})
        if body["abort_all_requests"]:
            self._abort_all()
        if self._weight_fault(req) is not None:
            msg = "Failed to update weight version: injected fault"
            await self._respond_json(req, 400, {"success": False, "message": msg})
            return
        new = body["new_version"]
        self._set_weight_version(new)
        self._stale_label = None
        out = {"success": True, "message": f"Weight version updated to {new}", "new_version": new}
        await self._respond_json(req, 200, out)

    async def _init_group(self, req: _Req) -> None:
        body = _struct_body(
            req,
            {
                "master_address": f_str(),
                "master_port": f_int(),
                "rank_offset": f_int(),
                "world_size": f_int(),
                "group_name": f_str("weight_update_group"),
                "backend": f_str("nccl"),
            },
        )
        name = body["group_name"]
        problem = None
        if name in self._groups:
            problem = f"group {name!r} already exists"
        elif body["world_size"] < 2 or not 0 < body["rank_offset"] < body["world_size"]:
            problem = "rank_offset must be in [1, world_size) and world_size >= 2"
        if problem is not None:
            msg = f"Failed to initialize custom process group: {problem}."
            await self._respond_json(req, 400, {"success": False, "message": msg})
            return
        self._groups[name] = {k: v for k, v in body.items() if k != "group_name"}
        msg = "Succeeded to initialize custom process group."
        await self._respond_json(req, 200, {"success": True, "message": msg})

    async def _destroy_group(self, req: _Req) -> None:
        body = _struct_body(req, {"group_name": f_str("weight_update_group")})
        if self._groups.pop(body["group_name"], None) is None:
            msg = "The group to be destroyed does not exist."
            await self._respond_json(req, 400, {"success": False, "message": msg})
            return
        msg = "Succeeded to destroy custom process group."
        await self._respond_json(req, 200, {"success": True, "message": msg})

    async def _begin_weight_update(self, req: _Req) -> None:
        body = _struct_body(req, {"selector": f_literal(*_SELECTORS, default="all")})
        async with self._writer(False, load=False):
            if self._wu_session is not None:
                msg = "begin_weight_update called while a weight-update session is already open"
                await self._respond_json(req, 400, {"success": False, "message": msg})
                return
            self._wu_session = body["selector"]
        await self._respond_json(req, 200, {"success": True, "message": "Success"})

    async def _end_weight_update(self, req: _Req) -> None:
        _struct_body(req, {})
        async with self._writer(False, load=False):
            if self._wu_session is None:
                msg = "end_weight_update called without begin_weight_update"
                await self._respond_json(req, 400, {"success": False, "message": msg})
                return
            self._wu_session = None
        await self._respond_json(req, 200, {"success": True, "message": "Success"})

    async def _session_gate(self, req: _Req, name: str) -> bool:
        """0.5.23 refuses distributed/tensor updates outside a begin/end session."""
        if self._wu_session is not None:
            return True
        msg = _SESSION_RULE.format(name)
        await self._respond_json(req, 400, {"success": False, "message": msg})
        return False

    async def _update_from_distributed(self, req: _Req) -> None:
        spec = {
            "names": f_str_list(),
            "dtypes": f_str_list(),
            "shapes": f_shape_list(),
            "group_name": f_str("weight_update_group"),
            "load_format": f_opt_str(),
            "selector": f_literal(*_SELECTORS, default="all"),
            **_UPDATE_COMMON,
        }
        body = _struct_body(req, spec)
        if not await self._session_gate(req, "update_weights_from_distributed"):
            return
        async with self._writer(body["abort_all_requests"]):
            problem = None
            names, dtypes, shapes = body["names"], body["dtypes"], body["shapes"]
            if not len(names) == len(dtypes) == len(shapes):
                problem = "names, dtypes and shapes must have the same length"
            elif body["group_name"] not in self._groups:
                problem = f"the weight update group {body['group_name']!r} does not exist"
            elif any(d not in _DTYPES for d in dtypes):
                bad = next(d for d in dtypes if d not in _DTYPES)
                problem = f"module 'torch' has no attribute '{bad}'"
            elif self._weight_fault(req) == "load":
                problem = "injected fault"
            if problem is not None:
                msg = (
                    f"Failed to update parameter online: {problem}. The full weights of the "
                    "ModelRunner are partially updated. Please discard the whole weights."
                )
                await self._respond_json(req, 400, {"success": False, "message": msg})
                return
            ok = "Succeeded to update parameter online."
            await self._finish_update(req, "distributed", body, ok, {})

    async def _update_from_tensor(self, req: _Req) -> None:
        spec = {
            "serialized_named_tensors": f_b64_list(),
            "load_format": f_opt_str(),
            "selector": f_literal(*_SELECTORS, default="all"),
            **_UPDATE_COMMON,
        }
        body = _struct_body(req, spec)
        if not await self._session_gate(req, "update_weights_from_tensor"):
            return
        async with self._writer(body["abort_all_requests"]):
            problem = None
            if not body["serialized_named_tensors"]:
                problem = "serialized_named_tensors has no entry for tp rank 0"
            elif self._weight_fault(req) == "load":
                problem = "injected fault"
            if problem is not None:
                msg = f"Failed to update weights from tensor: {problem}"
                await self._respond_json(req, 400, {"success": False, "message": msg})
                return
            body.pop("serialized_named_tensors")
            await self._finish_update(req, "tensor", body, "Success", {})

    async def _update_from_ipc(self, req: _Req) -> None:
        spec = {
            "zmq_handles": f_dict(),
            "flush_cache": f_bool(True),
            "weight_version": f_opt_str(),
            "torch_empty_cache": f_bool(False),
        }
        body = _struct_body(req, spec)
        async with self._writer(False):
            if self._weight_fault(req) == "load":
                msg = "IPC weight update failed: injected fault"
                await self._respond_json(req, 400, {"success": False, "message": msg})
                return
            await self._finish_update(req, "ipc", body, "Success", {})

    # ------------------------------------------------------------------ memory

    @staticmethod
    def _tags(body: dict[str, Any]) -> list[str]:
        tags = body["tags"]
        if not tags:
            return list(MEMORY_TAGS)
        for t in tags:
            if t not in MEMORY_TAGS:
                raise _err(f"Unknown memory tag {t!r}; expected one of {list(MEMORY_TAGS)}")
        return list(dict.fromkeys(tags))

    async def _release_memory(self, req: _Req) -> None:
        tags = self._tags(_struct_body(req, {"tags": f_str_list(None, nullable=True)}))
        if not self._can_flush():
            raise _err("release_memory_occupation should be called only when server is idle.")
        self._released.update(tags)
        await self._respond(req, 200, b"null")

    async def _resume_memory(self, req: _Req) -> None:
        tags = self._tags(_struct_body(req, {"tags": f_str_list(None, nullable=True)}))
        not_released = [t for t in tags if t not in self._released]
        if not_released:
            raise _err(
                f"Cannot resume memory occupation for tags {not_released}: they are not "
                f"released (released: {sorted(self._released)})"
            )
        self._released.difference_update(tags)
        await self._respond(req, 200, b"null")

    # ------------------------------------------------------------------ loads

    def loads(self, include: str | None = None) -> dict[str, Any]:
        """The JSON served by ``GET /v1/loads`` (``include``: comma-separated sections)."""
        sections = set(_LOAD_SECTIONS) if include is None else set(include.split(","))
        bad = sections - set(_LOAD_SECTIONS)
        if bad:
            raise ValueError(f"unknown /v1/loads section(s): {sorted(bad)}")
        if "all" in sections:
            sections = set(_LOAD_SECTIONS)
        c = self.config
        running, retracted, held = self._load_counts()
        used = 0
        for _job, item in self._running.values():
            used += item.prompt_len + item.sent
        total = c.max_total_num_tokens
        load: dict[str, Any] = {
            "timestamp": time.time(),
            "dp_rank": 0,
            "num_running_reqs": running,
            "num_waiting_reqs": retracted + held,
            "num_waiting_uncached_tokens": 0,
            "num_used_tokens": used,
            "num_total_tokens": total,
            "num_active_tokens": used,
            "num_prealloc_ready_tokens": 0,
            "max_total_num_tokens": total,
            "max_running_requests": c.max_running_requests,
            "token_usage": used / total if total else 0.0,
            "gen_throughput": 0.0,
            "cache_hit_rate": 0.0,
            "utilization": running / c.max_running_requests if c.max_running_requests else 0.0,
            "total_prefill_uncached_tokens": 0,
            "total_prefill_busy_us": 0,
            "decode_moments": None,
        }
        if "memory" in sections:
            released = self._released
            load["memory"] = {
                "weight_gb": 0.0 if "weights" in released else 1.0,
                "kv_cache_gb": 0.0 if "kv_cache" in released else 2.0,
                "graph_gb": 0.0 if "cuda_graph" in released else 0.25,
                "token_capacity": total,
            }
        if "lora" in sections and c.enable_lora:
            slots = c.max_loras_per_batch
            used_slots = min(len(self._loras), slots)
            load["lora"] = {
                "slots_used": used_slots,
                "slots_total": slots,
                "utilization": used_slots / slots if slots else 0.0,
            }
        if "queues" in sections:
            load["queues"] = {
                "waiting": retracted + held,
                "grammar": 0,
                "paused": held,
                "retracted": retracted,
                "prealloc_ready": 0,
            }
        return {
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "version": c.version,
            "accelerator": None,
            "num_accelerators": 1,
            "loads": [load],
        }

    async def _loads(self, req: _Req) -> None:
        q = req.query()
        dp_rank = q.get("dp_rank")
        fmt = q.get("format", "json")
        if fmt not in ("json", "prometheus"):
            raise _validation_error("query.format", "Input should be 'json' or 'prometheus'")
        try:
            out = self.loads(q.get("include"))
        except ValueError:
            # sglang raises while formatting, outside the handler's try: a plain 500
            await self._respond(req, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
            return
        if dp_rank is not None:
            try:
                rank = int(dp_rank)
            except ValueError:
                raise _validation_error(
                    "query.dp_rank", "Input should be a valid integer"
                ) from None
            if rank != 0:
                out["loads"] = []
        if fmt == "prometheus":
            lines: list[str] = []
            for load in out["loads"]:
                for key, v in load.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and key != "dp_rank":
                        lines.append(f'sglang_{key}{{dp_rank="0"}} {v}')
            body = ("\n".join(lines) + "\n").encode()
            await self._respond(req, 200, body, b"text/plain; version=0.0.4")
            return
        await self._respond_json(req, 200, out)

    async def _fake_state(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.control_state())
