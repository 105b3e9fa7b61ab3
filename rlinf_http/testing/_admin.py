"""Health, info, models, cache flush, abort and load endpoints, and the ``/_fake/*`` hooks."""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

import anyio

from ._asgi import _err, _Req
from ._engine import _Engine
from ._faults import FaultSpec

#: sglang's ``SGLANG_HEALTH_CHECK_TIMEOUT``: how long ``/health`` waits for its probe.
HEALTH_CHECK_TIMEOUT_S = 20.0


class _AdminMixin(_Engine):
    """Health, info, models, cache flush, abort and load endpoints, and the fault hooks."""

    async def _health(self, req: _Req) -> None:
        # sglang 0.5.23's /health runs a one-token generation, which cannot run
        # while the server is paused: it waits, and answers 503 after 20 s.
        if self._paused is not None:
            with anyio.move_on_after(HEALTH_CHECK_TIMEOUT_S):
                await self._wait_for(lambda: self._paused is None)
            if self._paused is not None:
                await self._respond(req, 503, b"", None)
                return
        await self._respond(req, 200, b"", None)

    async def _health_generate(self, req: _Req) -> None:
        if self.config.ttft_s > 0:
            await anyio.sleep(self.config.ttft_s)
        await self._respond(req, 200, b"", None)

    def server_info(self) -> dict[str, Any]:
        """The JSON served by ``/server_info``."""
        c = self.config
        return {
            "model_path": c.model_path,
            "tokenizer_path": c.tokenizer_path,
            "served_model_name": c.served_model_name,
            "tp_size": 1,
            "dp_size": 1,
            "version": c.version,
            "incremental_streaming_output": c.incremental_streaming,
            "stream_output": c.incremental_streaming,
            "stream_interval": c.stream_interval,
            "skip_tokenizer_init": False,
            "status": "ready",
            "max_total_num_tokens": c.max_total_num_tokens,
            "max_req_input_len": c.max_total_num_tokens,
            "internal_states": [{"last_gen_throughput": 0.0}],
            # the startup value: sglang does not update server_info on weight updates
            "weight_version": c.weight_version,
            "load_format": c.load_format,
            "max_running_requests": c.max_running_requests,
        }

    def model_info(self) -> dict[str, Any]:
        """The JSON served by ``/model_info`` (live: weight updates change it)."""
        c = self.config
        return {
            "model_path": self._model_path,
            "tokenizer_path": c.tokenizer_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": self._weight_version,
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": c.model_type,
            "architectures": list(c.architectures),
            "served_model_name": self._served_model_name,
            "load_format": self._load_format,
        }

    async def _server_info(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.server_info())

    async def _model_info(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.model_info())

    async def _models(self, req: _Req) -> None:
        c = self.config
        card = {
            "id": self._served_model_name,
            "object": "model",
            "created": self._created,
            "owned_by": "sglang",
            "root": self._model_path,
            "parent": None,
            "max_model_len": c.max_total_num_tokens,
        }
        cards = [card]
        for name, path in self._loras.items():
            cards.append({**card, "id": name, "root": path, "parent": self._served_model_name})
        await self._respond_json(req, 200, {"object": "list", "data": cards})

    async def _flush_cache(self, req: _Req) -> None:
        timeout = req.query().get("timeout")
        if timeout is not None and not self._can_flush():
            try:
                wait = float(timeout)
            except ValueError:
                wait = 0.0
            if wait > 0:
                with anyio.move_on_after(wait):
                    await self._wait_for(self._can_flush)
                if not self._can_flush():
                    msg = b"Timed out waiting for idle state."
                    await self._respond(req, 400, msg, b"text/plain; charset=utf-8")
                    return
        if not self._can_flush():
            msg = b"Cache not flushed. Please check if there are running or waiting requests.\n"
            await self._respond(req, 400, msg, b"text/plain; charset=utf-8")
        else:
            await self._respond(req, 200, b"Cache flushed.\n", b"text/plain; charset=utf-8")

    async def _abort_request(self, req: _Req) -> None:
        body = req.json
        if not isinstance(body, dict):
            raise _err("Invalid abort request body")
        rid = body.get("rid")
        abort_all = bool(body.get("abort_all", False))
        n = 0
        prefix = f"{rid}_" if isinstance(rid, str) else None
        for key, (job, item) in list(self._running.items()):
            if abort_all or key == rid or (prefix is not None and key.startswith(prefix)):
                if not item.aborted:
                    job.abort(item, queued=self._paused == "retract")
                    n += 1
        if n:
            with self._stats_lock:
                self._stats["aborted"] += n
        await self._respond(req, 200, b"", None)

    async def _get_load(self, req: _Req) -> None:
        num_tokens = 0
        for _job, item in self._running.values():
            num_tokens += item.prompt_len + item.n_out
        running, retracted, held = self._load_counts()
        load = {
            "dp_rank": 0,
            "num_reqs": running,
            "num_waiting_reqs": retracted + held,
            "num_tokens": num_tokens,
            "num_pending_tokens": 0,
            "ts_tic": time.time(),
        }
        await self._respond_json(req, 200, [load])

    async def _fake_add_faults(self, req: _Req) -> None:
        body = req.json
        specs_raw = body if isinstance(body, list) else [body]
        try:
            specs = [FaultSpec.from_dict(d) for d in specs_raw if isinstance(d, dict)]
        except (TypeError, ValueError) as e:
            raise _err(str(e)) from None
        if len(specs) != len(specs_raw):
            raise _err("expected a FaultSpec object or a list of them")
        self.faults.add(*specs)
        await self._respond_json(req, 200, {"added": len(specs), "pending": len(self.faults)})

    async def _fake_clear_faults(self, req: _Req) -> None:
        await self._respond_json(req, 200, {"cleared": self.faults.clear()})

    async def _fake_list_faults(self, req: _Req) -> None:
        out = []
        for spec in self.faults.pending():
            d = {f.name: getattr(spec, f.name) for f in fields(spec)}
            if isinstance(d["body"], bytes):
                d["body"] = d["body"].decode("utf-8", "replace")
            out.append(d)
        await self._respond_json(req, 200, out)

    async def _fake_requests(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.request_log)

    async def _fake_clear_requests(self, req: _Req) -> None:
        self.clear_request_log()
        await self._respond_json(req, 200, {"cleared": True})

    async def _fake_stats(self, req: _Req) -> None:
        await self._respond_json(req, 200, self.stats)

    async def _fake_reset_stats(self, req: _Req) -> None:
        self.reset_stats()
        await self._respond_json(req, 200, {"reset": True})
