"""Native ``/generate`` (batch, n>1, logprobs, streaming)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ._asgi import _INVALID, _SSE, _BadRequest, _err, _get_int, _Req
from ._engine import _ABORT_QUEUED_FINISH, _Engine, _Item, _Job
from ._rl_generate import add_rl_meta, rl_options
from ._tokens import _IDS, _LPS, _PIECES, _ensure_tokens, _out_ids, _out_text, _word_id

_SAMPLING_KEYS = (
    "max_new_tokens",
    "stop",
    "stop_token_ids",
    "stop_regex",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "min_new_tokens",
    "n",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "custom_params",
    "stream_interval",
    "logit_bias",
    "sampling_seed",
    "beam_width",
    "watermark",
)
_SAMPLING_KEY_SET = frozenset(_SAMPLING_KEYS)
_SAMPLING_EXPECTED = ", ".join(f"`{k}`" for k in _SAMPLING_KEYS)


def _resumed_tokens(words: list[str] | None, ids: list[int] | None) -> int:
    """How many fake output tokens (``tok0``, ``tok1``... / ``1000``, ``1001``...) end the prompt.

    A prompt that ends with the first ``k`` output tokens after at least one
    other token is a resumed generation: its output continues at token ``k``,
    so a generation resumed after an abort equals an uninterrupted one.
    """
    if ids:
        k = ids[-1] - _out_ids(0, 1)[0] + 1
        if 0 < k < len(ids) and k <= 30000 and ids[-k:] == _out_ids(0, k):
            return k
    elif words:
        last = words[-1]
        if last.startswith("tok") and last[3:].isdigit():
            k = int(last[3:]) + 1
            if k < len(words) and words[-k:] == _out_text(0, k).split():
                return k
    return 0


class _GenerateMixin(_Engine):
    def _gen_obj(
        self, job: _Job, it: _Item, k0: int, k1: int, finish: dict[str, Any] | None, first: bool
    ) -> dict[str, Any]:
        incremental = self.config.incremental_streaming and k0 >= 0
        lo = k0 if incremental and k0 > 0 else 0
        off = it.out_offset
        meta: dict[str, Any] = {
            "id": it.rid,
            "finish_reason": finish,
            "prompt_tokens": it.prompt_len,
            "completion_tokens": k1,
            "cached_tokens": 0,
            "weight_version": self._weight_version,
            "e2e_latency": time.monotonic() - job.start,
        }
        if finish is not None:
            spans = self._weight_version_spans(it, k1)
            meta["weight_versions"] = spans
            meta["weight_version"] = spans[-1]["version"]
            if finish is _ABORT_QUEUED_FINISH:
                # sglang answers a request aborted in the waiting queue with a reduced meta_info
                for key in ("prompt_tokens", "cached_tokens"):
                    del meta[key]
        if it.return_logprob:
            self._add_logprobs(meta, it, lo, k1, with_input=first or not incremental)
        if finish is not _ABORT_QUEUED_FINISH:
            final = finish is not None
            add_rl_meta(meta, it.rl, it.prompt_len, _out_ids(off, off + k1), lo, k1, final, 0)
        obj: dict[str, Any] = {
            "text": _out_text(off + lo, off + k1),
            "output_ids": _out_ids(off + lo, off + k1),
            "meta_info": meta,
        }
        if job.batch:
            obj["index"] = it.index
        return obj

    def _add_logprobs(
        self, meta: dict[str, Any], it: _Item, lo: int, hi: int, with_input: bool
    ) -> None:
        off = it.out_offset
        _ensure_tokens(off + hi)
        text = it.return_text
        topn = it.top_logprobs_num
        out = [
            [_LPS[i % 16], _IDS[i], _PIECES[i] if text else None] for i in range(off + lo, off + hi)
        ]
        meta["output_token_logprobs"] = out
        meta["output_token_logprobs_length"] = len(out)
        if topn > 0:
            meta["output_top_logprobs"] = [
                [
                    [_LPS[i % 16] - j, _IDS[i] + j * 7, _PIECES[i] if text else None]
                    for j in range(topn)
                ]
                for i in range(off + lo, off + hi)
            ]
        if with_input:
            if it.prompt_ids is None:
                words = it.prompt_words or [""]
                it.prompt_ids = [_word_id(w) for w in words]
            ids = it.prompt_ids
            start = it.logprob_start_len
            if start < 0 or start >= len(ids):
                start = max(len(ids) - 1, 0)
            words_ = it.prompt_words

            def piece(p: int) -> str | None:
                if not text:
                    return None
                if words_ is not None and p < len(words_):
                    return words_[p] if p == 0 else " " + words_[p]
                return f"<{ids[p]}>"

            inp: list[list[Any]] = []
            for p in range(start, len(ids)):
                inp.append([None if p == start else -1.0, ids[p], piece(p)])
            meta["input_token_logprobs"] = inp
            if topn > 0:
                meta["input_top_logprobs"] = [
                    None
                    if p == start
                    else [[-1.0 - j, ids[p] + j * 7, piece(p)] for j in range(topn)]
                    for p in range(start, len(ids))
                ]

    # ------------------------------------------------------------------ /generate

    def _parse_generate(self, body: Any) -> tuple[list[_Item], bool]:
        if body is _INVALID or not isinstance(body, dict):
            raise _BadRequest(
                {
                    "object": "error",
                    "message": "Invalid request body: expected a JSON object",
                    "type": "Bad Request",
                    "param": None,
                    "code": 400,
                }
            )
        text = body.get("text")
        input_ids = body.get("input_ids")
        prompts_words: list[list[str] | None] = []
        prompts_ids: list[list[int] | None] = []
        batch: bool
        if text is not None:
            if isinstance(text, str):
                texts = [text]
                batch = False
            elif isinstance(text, list) and all(isinstance(t, str) for t in text):
                texts = text
                batch = True
            else:
                raise _err("text must be a string or a list of strings")
            if not texts or any(t == "" for t in texts):
                raise _err("text cannot be empty.")
            for t in texts:
                prompts_words.append(t.split())
                prompts_ids.append(None)
        elif input_ids is not None:
            if not isinstance(input_ids, list) or not input_ids:
                raise _err("input_ids cannot be empty.")
            if isinstance(input_ids[0], list):
                batch = True
                rows = input_ids
            else:
                batch = False
                rows = [input_ids]
            for row in rows:
                if not isinstance(row, list) or not row:
                    raise _err("input_ids cannot be empty.")
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in row):
                    raise _err("input_ids must contain integers")
                prompts_ids.append(row)
                prompts_words.append(None)
        else:
            raise _err("Either text, input_ids or input_embeds should be provided.")
        nprompts = len(prompts_ids)

        sp_raw = body.get("sampling_params")
        sps: list[dict[str, Any]]
        if sp_raw is None:
            sps = [{}] * nprompts
        elif isinstance(sp_raw, dict):
            sps = [sp_raw] * nprompts
        elif isinstance(sp_raw, list):
            if len(sp_raw) != nprompts or not all(isinstance(s, dict) for s in sp_raw):
                raise _err("sampling_params list length must match the batch size")
            sps = sp_raw
        else:
            raise _BadRequest({"error": "invalid type: sampling_params, expected a map"})
        checked: set[int] = set()
        for sp in sps:
            if id(sp) in checked:
                continue
            checked.add(id(sp))
            for k in sp:
                if k not in _SAMPLING_KEY_SET:
                    raise _BadRequest(
                        {"error": f"unknown field `{k}`, expected one of {_SAMPLING_EXPECTED}"}
                    )
        ns = {_get_int(sp, "n", 1) for sp in sps}
        if len(ns) != 1:
            raise _err("The n parameter must be the same for all requests in a batch.")
        n = ns.pop()
        if n < 1:
            raise _err("n must be at least 1")
        if n > 1:
            batch = True
        total = nprompts * n

        def per_item(key: str, default: Any) -> list[Any]:
            v = body.get(key)
            if v is None:
                return [default] * nprompts
            if isinstance(v, list):
                if n > 1:
                    raise _err(f"{key} must not be a list when n > 1")
                if len(v) != nprompts:
                    raise _err(f"{key} list length must match the batch size")
                return v
            return [v] * nprompts

        return_logprob = per_item("return_logprob", False)
        start_len = per_item("logprob_start_len", -1)
        topn = per_item("top_logprobs_num", 0)
        return_text = bool(body.get("return_text_in_logprobs", False))
        rid = body.get("rid")
        rids: list[str]
        if rid is None:
            rids = [uuid.uuid4().hex for _ in range(total)]
        elif isinstance(rid, str):
            rids = [rid] if total == 1 else [f"{rid}_{i}" for i in range(total)]
        elif isinstance(rid, list):
            if len(rid) != nprompts or not all(isinstance(r, str) for r in rid):
                raise _err("The rid list length must match the batch size")
            if len(set(rid)) != len(rid):
                raise _err("Duplicate request IDs detected within the request.")
            rids = list(rid) if n == 1 else [f"{r}_{j}" for r in rid for j in range(n)]
        else:
            raise _err("rid must be a string or a list of strings")
        self._check_priority_lora(body, nprompts, openai=False)
        rl = rl_options(body)

        items: list[_Item] = []
        default_interval = self.config.stream_interval
        default_max = self.config.default_max_new_tokens
        for p in range(nprompts):
            sp = sps[p]
            max_new = _get_int(sp, "max_new_tokens", default_max)
            if max_new < 0:
                raise _err("max_new_tokens must be at least 0")
            interval = _get_int(sp, "stream_interval", default_interval)
            ignore_eos = bool(sp.get("ignore_eos", False))
            words = prompts_words[p]
            ids = prompts_ids[p]
            plen = max(len(words), 1) if words is not None else len(ids or ())
            for s in range(n):
                it = _Item()
                it.index = p * n + s
                it.sample = s
                it.rid = rids[it.index]
                it.prompt_words = words
                it.prompt_ids = ids
                it.prompt_len = plen
                it.out_offset = _resumed_tokens(words, ids)
                it.return_logprob = bool(return_logprob[p])
                it.logprob_start_len = int(start_len[p])
                it.top_logprobs_num = int(topn[p])
                it.return_text = return_text
                it.rl = rl
                it.stream_interval = max(interval, 1)
                self._plan(it, max_new, ignore_eos)
                items.append(it)
        return items, batch

    async def _generate(self, req: _Req) -> None:
        items, batch = self._parse_generate(req.json)
        job = _Job(items, batch)
        stream = bool(req.json.get("stream", False))
        await self._admit(job)
        try:
            if stream:
                await self._generate_stream(req, job)
                return
            await self._run_nonstream(job)
            objs = [self._gen_obj(job, it, -1, it.n_out, it.finish, True) for it in items]
            for o in objs:
                o.pop("index", None)
        finally:
            self._unregister(job)
        await self._respond_json(req, 200, objs if batch else objs[0])

    async def _generate_stream(self, req: _Req, job: _Job) -> None:
        sse = _SSE(req)
        await sse.start()
        first_seen: set[int] = set()

        async def emit(it: _Item, k0: int, k1: int, finish: dict[str, Any] | None) -> bool:
            first = it.index not in first_seen
            first_seen.add(it.index)
            return await sse.data(self._gen_obj(job, it, k0, k1, finish, first))

        await self._run_stream(job, emit)
        await sse.done()
