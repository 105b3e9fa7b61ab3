"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/completions``."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ._asgi import _INVALID, _SSE, _openai_err, _Req
from ._engine import _Engine, _Item, _Job
from ._tokens import _out_text


class _OpenAIMixin(_Engine):
    def _openai_body(self, req: _Req) -> dict[str, Any]:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid JSON body", 400, "Bad Request")
        return body

    def _openai_items(
        self, body: dict[str, Any], prompt_lens: list[int], max_new: int
    ) -> list[_Item]:
        n = body.get("n")
        n = 1 if n is None else n
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _openai_err("n must be a positive integer")
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 0:
            raise _openai_err("max_tokens must be a non-negative integer")
        ignore_eos = bool(body.get("ignore_eos", False))
        self._check_priority_lora(body, 1, openai=True)
        rid = body.get("rid")
        if rid is not None and not isinstance(rid, str):
            raise _openai_err("rid must be a string")
        items = []
        base = rid or uuid.uuid4().hex
        for p, plen in enumerate(prompt_lens):
            for s in range(n):
                it = _Item()
                it.index = p * n + s
                it.sample = s
                it.rid = base if it.index == 0 else f"{base}_{it.index}"
                it.prompt_len = plen
                it.stream_interval = self.config.stream_interval
                self._plan(it, max_new, ignore_eos)
                items.append(it)
        return items

    @staticmethod
    def _oai_finish(it: _Item) -> str:
        t = it.finish.get("type")
        return "length" if t == "length" else "abort" if t == "abort" else "stop"

    async def _chat(self, req: _Req) -> None:
        body = self._openai_body(req)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _openai_err("Messages cannot be empty.")
        words = 0
        for m in messages:
            if not isinstance(m, dict):
                raise _openai_err("Each message must be an object")
            content = m.get("content")
            if isinstance(content, str):
                words += len(content.split())
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        words += len(part["text"].split())
        max_new = body.get("max_completion_tokens")
        if max_new is None:
            max_new = body.get("max_tokens")
        if max_new is None:
            max_new = self.config.default_max_new_tokens
        items = self._openai_items(body, [max(words, 1)], max_new)
        await self._openai_run(req, body, items, chat=True)

    async def _completions(self, req: _Req) -> None:
        body = self._openai_body(req)
        prompt = body.get("prompt")
        lens: list[int]
        if isinstance(prompt, str) and prompt:
            lens = [max(len(prompt.split()), 1)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            lens = [max(len(p.split()), 1) for p in prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            lens = [len(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, list) and p for p in prompt):
            lens = [len(p) for p in prompt]
        else:
            raise _openai_err("prompt must be a non-empty string, list of strings or token ids")
        max_new = body.get("max_tokens")
        items = self._openai_items(body, lens, 16 if max_new is None else max_new)
        await self._openai_run(req, body, items, chat=False)

    async def _openai_run(
        self, req: _Req, body: dict[str, Any], items: list[_Item], chat: bool
    ) -> None:
        job = _Job(items, True)
        model = body.get("model") or self._served_model_name
        created = int(time.time())
        rid = items[0].rid
        await self._admit(job)
        try:
            if body.get("stream"):
                await self._openai_stream(req, body, job, chat, model, created, rid)
                return
            await self._run_nonstream(job)
        finally:
            self._unregister(job)
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for it in items:
            completion_tokens += it.n_out
            text = _out_text(0, it.n_out)
            choice: dict[str, Any] = {"index": it.index}
            if chat:
                choice["message"] = {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": None,
                    "tool_calls": None,
                }
            else:
                choice["text"] = text
            choice["logprobs"] = None
            choice["finish_reason"] = self._oai_finish(it)
            choice["matched_stop"] = it.finish.get("matched")
            choices.append(choice)
        prompt_tokens = self._prompt_tokens(items)
        resp = {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            # sglang 0.5.23 builds metadata from the first choice's meta_info
            "metadata": {
                "weight_version": self._weight_version,
                "weight_versions": self._weight_version_spans(items[0], items[0].n_out),
            },
        }
        await self._respond_json(req, 200, resp)

    @staticmethod
    def _prompt_tokens(items: list[_Item]) -> int:
        # every prompt is counted once even if it has n samples
        return sum(it.prompt_len for it in items if it.sample == 0)

    async def _openai_stream(
        self,
        req: _Req,
        body: dict[str, Any],
        job: _Job,
        chat: bool,
        model: str,
        created: int,
        rid: str,
    ) -> None:
        sse = _SSE(req)
        await sse.start()
        obj_name = "chat.completion.chunk" if chat else "text_completion"
        started: set[int] = set()

        def chunk(choice: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": rid,
                "object": obj_name,
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": None,
            }

        async def emit(it: _Item, k0: int, k1: int, finish: dict[str, Any] | None) -> bool:
            if chat and it.index not in started:
                started.add(it.index)
                role = {
                    "index": it.index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                    "matched_stop": None,
                }
                if not await sse.data(chunk(role)):
                    return False
            if k1 > k0:
                delta_text = _out_text(k0, k1)
                c: dict[str, Any] = {"index": it.index}
                if chat:
                    c["delta"] = {"content": delta_text}
                else:
                    c["text"] = delta_text
                c["logprobs"] = None
                c["finish_reason"] = None
                c["matched_stop"] = None
                if not await sse.data(chunk(c)):
                    return False
            if finish is not None:
                c = {"index": it.index}
                if chat:
                    c["delta"] = {}
                else:
                    c["text"] = ""
                c["logprobs"] = None
                c["finish_reason"] = self._oai_finish(it)
                c["matched_stop"] = finish.get("matched")
                if not await sse.data(chunk(c)):
                    return False
            return True

        await self._run_stream(job, emit)
        if sse.finished:
            return
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            prompt_tokens = self._prompt_tokens(job.items)
            completion_tokens = sum(it.sent for it in job.items)
            usage_chunk = {
                "id": rid,
                "object": obj_name,
                "created": created,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
            if not await sse.data(usage_chunk):
                return
        await sse.done()
