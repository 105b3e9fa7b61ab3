"""The rest of the data plane: embeddings, native ``/encode``, tokenize / detokenize,
and LoRA adapter management.

- Tokenization is whitespace splitting: word ``w`` has id ``100 + crc32(w) % 30000``
  (the same ids ``/generate`` uses for prompt logprobs), so a prompt's token count
  equals its word count everywhere. ``/v1/detokenize`` maps ids it has seen in
  ``/v1/tokenize`` back to their words, output ids (``1000 + i``) to ``"tok{i}"``,
  and other ids to ``"<id>"``, joined by single spaces.
- Embeddings are deterministic unit vectors computed from the token ids
  (:meth:`_DataPlaneMixin.embedding`), so a text and its token ids embed alike.
"""

from __future__ import annotations

import base64
import math
import struct
import time
import uuid
import zlib
from typing import Any

from ._asgi import _INVALID, _err, _openai_err, _Req, _struct_body, f_bool, f_str
from ._config import FakeConfig
from ._engine import _Engine
from ._tokens import _OUT_BASE_ID, _word_id


class _DataPlaneMixin(_Engine):
    """``/v1/embeddings``, ``/encode``, ``/v1/tokenize``, ``/v1/detokenize``, LoRA."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        super().__init__(config)
        self._vocab: dict[int, str] = {}

    def _dataplane_routes(self) -> None:
        r = self._routes
        r["/v1/embeddings"] = {"POST": self._embeddings}
        r["/encode"] = {"POST": self._encode, "PUT": self._encode}
        for path in ("/v1/tokenize", "/tokenize"):
            r[path] = {"POST": self._tokenize}
        for path in ("/v1/detokenize", "/detokenize"):
            r[path] = {"POST": self._detokenize}
        r["/load_lora_adapter"] = {"POST": self._load_lora}
        r["/unload_lora_adapter"] = {"POST": self._unload_lora}

    # ------------------------------------------------------------------ public helpers

    def tokenize(self, text: str) -> list[int]:
        """The token ids of ``text`` (whitespace tokenization)."""
        words = text.split()
        for w in words:
            self._vocab.setdefault(_word_id(w), w)
        return [_word_id(w) for w in words]

    def detokenize(self, ids: list[int]) -> str:
        """The text of token ids (see the module docstring)."""
        pieces = []
        for i in ids:
            word = self._vocab.get(i)
            if word is None:
                word = f"tok{i - _OUT_BASE_ID}" if i >= _OUT_BASE_ID else f"<{i}>"
            pieces.append(word)
        return " ".join(pieces)

    def embedding(self, inp: str | list[int], dimensions: int | None = None) -> list[float]:
        """The vector served for ``inp`` (a text or token ids), unit length."""
        ids = self.tokenize(inp) if isinstance(inp, str) else inp
        key = ",".join(map(str, ids))
        dim = self.config.embedding_dim if dimensions is None else dimensions
        raw = [((zlib.crc32(f"{key}#{j}".encode()) % 2001) - 1000) / 1000.0 for j in range(dim)]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        return [x / norm for x in raw]

    @property
    def lora_adapters(self) -> dict[str, str]:
        """Loaded LoRA adapters: name -> path."""
        return dict(self._loras)

    # ------------------------------------------------------------------ embeddings

    def _dimensions(self, body: dict[str, Any], make: Any) -> int | None:
        dims = body.get("dimensions")
        if dims is None:
            return None
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise make("dimensions must be a positive integer")
        if dims > self.config.embedding_dim:
            raise make(
                f"Dimensions {dims} exceeds the model's hidden size {self.config.embedding_dim}"
            )
        return dims

    async def _embeddings(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid JSON body", 400, "Bad Request")
        inp = body.get("input")
        inputs: list[str | list[int]]
        if isinstance(inp, str):
            inputs = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, str) for x in inp):
            inputs = list(inp)
        elif isinstance(inp, list) and inp and all(_is_int(x) for x in inp):
            inputs = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, list) for x in inp):
            if not all(x and all(_is_int(t) for t in x) for x in inp):
                raise _openai_err("input token id lists must be non-empty lists of integers")
            inputs = list(inp)
        else:
            raise _openai_err("Input cannot be empty")
        if any(x == "" for x in inputs):
            raise _openai_err("Input cannot be empty")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise _openai_err(f"Unsupported encoding_format {fmt!r}: use 'float' or 'base64'")
        dims = self._dimensions(body, _openai_err)
        self._check_priority_lora(body, 1, openai=True)
        data = []
        prompt_tokens = 0
        for i, x in enumerate(inputs):
            ids = self.tokenize(x) if isinstance(x, str) else x
            prompt_tokens += len(ids)
            vec = self.embedding(ids, dims)
            emb: list[float] | str = vec
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"embedding": emb, "index": i, "object": "embedding"})
        out = {
            "data": data,
            "model": self._model_path,
            "object": "list",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 0,
                "total_tokens": prompt_tokens,
            },
        }
        await self._respond_json(req, 200, out)

    async def _encode(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _err("Invalid request body: expected a JSON object")
        text, input_ids = body.get("text"), body.get("input_ids")
        inputs: list[str | list[int]]
        if text is not None:
            batch = isinstance(text, list)
            inputs = list(text) if batch else [text]
            if not inputs or not all(isinstance(t, str) and t for t in inputs):
                raise _err("text must be a non-empty string or a list of them")
        elif input_ids is not None:
            batch = (
                isinstance(input_ids, list) and bool(input_ids) and isinstance(input_ids[0], list)
            )
            inputs = list(input_ids) if batch else [input_ids]
            for row in inputs:
                if not isinstance(row, list) or not row or not all(_is_int(t) for t in row):
                    raise _err("input_ids cannot be empty.")
        else:
            raise _err("Either text or input_ids should be provided.")
        dims = self._dimensions(body, _err)
        self._check_priority_lora(body, len(inputs), openai=False)
        rid = body.get("rid")
        if isinstance(rid, list):
            if len(rid) != len(inputs) or not all(isinstance(r, str) for r in rid):
                raise _err("The rid list length must match the batch size")
            rids = list(rid)
        elif isinstance(rid, str):
            rids = [rid] if not batch else [f"{rid}_{i}" for i in range(len(inputs))]
        elif rid is None:
            rids = [uuid.uuid4().hex for _ in inputs]
        else:
            raise _err("rid must be a string or a list of strings")
        t0 = time.monotonic()
        outs = []
        for r, x in zip(rids, inputs, strict=True):
            ids = self.tokenize(x) if isinstance(x, str) else x
            meta = {
                "id": r,
                "finish_reason": {"type": "length", "length": 0},
                "prompt_tokens": len(ids),
                "completion_tokens": 0,
                "cached_tokens": 0,
                "weight_version": self._weight_version,
                "e2e_latency": time.monotonic() - t0,
            }
            outs.append({"embedding": self.embedding(ids, dims), "meta_info": meta})
        await self._respond_json(req, 200, outs if batch else outs[0])

    # ------------------------------------------------------------------ tokenize

    async def _tokenize(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid JSON body", 400, "Bad Request")
        prompt, messages = body.get("prompt"), body.get("messages")
        if (prompt is None) == (messages is None):
            raise _openai_err("Exactly one of 'prompt' or 'messages' must be provided")
        tokens: list[int] | list[list[int]]
        count: int | list[int]
        if messages is not None:
            if not isinstance(messages, list) or not messages:
                raise _openai_err("messages must be a non-empty list")
            words: list[str] = []
            for m in messages:
                content = m.get("content") if isinstance(m, dict) else None
                if isinstance(content, str):
                    words.append(content)
                elif isinstance(content, list):
                    words.extend(
                        p["text"]
                        for p in content
                        if isinstance(p, dict) and isinstance(p.get("text"), str)
                    )
            tokens = self.tokenize(" ".join(words))
            count = len(tokens)
        elif isinstance(prompt, str):
            tokens = self.tokenize(prompt)
            count = len(tokens)
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            tokens = [self.tokenize(p) for p in prompt]
            count = [len(t) for t in tokens]
        else:
            raise _openai_err("prompt must be a string or a list of strings")
        out = {"tokens": tokens, "count": count, "max_model_len": self.config.context_length}
        await self._respond_json(req, 200, out)

    async def _detokenize(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid JSON body", 400, "Bad Request")
        tokens = body.get("tokens")
        if not isinstance(tokens, list):
            raise _openai_err("tokens must be a list of token ids or a list of such lists")
        text: str | list[str]
        if tokens and all(isinstance(t, list) for t in tokens):
            if not all(all(_is_int(i) for i in t) for t in tokens):
                raise _openai_err("tokens must contain integers")
            text = [self.detokenize(t) for t in tokens]
        elif all(_is_int(t) for t in tokens):
            text = self.detokenize(tokens)
        else:
            raise _openai_err("tokens must be a list of token ids or a list of such lists")
        await self._respond_json(req, 200, {"text": text})

    # ------------------------------------------------------------------ LoRA

    async def _lora_reply(self, req: _Req, ok: bool, error: str = "") -> None:
        out = {"success": ok, "error_message": error, "loaded_adapters": dict(self._loras)}
        await self._respond_json(req, 200 if ok else 400, out)

    async def _load_lora(self, req: _Req) -> None:
        body = _struct_body(
            req, {"lora_name": f_str(), "lora_path": f_str(), "pinned": f_bool(False)}
        )
        name = body["lora_name"]
        if not self.config.enable_lora:
            await self._lora_reply(req, False, "LoRA is not enabled. Please set `--enable-lora`.")
        elif name in self._loras:
            msg = f"Failed to load LoRA adapter {name}: an adapter with this name is loaded."
            await self._lora_reply(req, False, msg)
        else:
            self._loras[name] = body["lora_path"]
            await self._lora_reply(req, True)

    async def _unload_lora(self, req: _Req) -> None:
        body = _struct_body(req, {"lora_name": f_str()})
        name = body["lora_name"]
        if not self.config.enable_lora:
            await self._lora_reply(req, False, "LoRA is not enabled. Please set `--enable-lora`.")
        elif self._loras.pop(name, None) is None:
            await self._lora_reply(req, False, f"LoRA adapter {name} is not loaded.")
        else:
            await self._lora_reply(req, True)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
