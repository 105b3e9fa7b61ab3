"""Reward-model endpoints of the fake server: ``/classify``, ``/v1/score``, ``/v1/rerank``.

Scores are deterministic functions of the text (see :func:`reward`), so a test
can predict them: ``/classify`` answers ``{"embedding": [reward], "meta_info"}``
per input (a list for a batch), ``/v1/score`` one row of label scores per item
(softmax-normalised with ``apply_softmax``), ``/v1/rerank`` the documents with
their score, best first. Validation messages follow sglang 0.5.23.
"""

from __future__ import annotations

import math
import time
import uuid
import zlib
from typing import Any

from ._asgi import _INVALID, _err, _openai_err, _Req
from ._engine import _Engine


def reward(item: str | list[int]) -> float:
    """The fake reward of a text (or token ids): in ``[0, 1)``, stable across runs."""
    key = item if isinstance(item, str) else ",".join(str(t) for t in item)
    return (zlib.crc32(key.encode()) % 1000) / 1000.0


def _text_of(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def _is_ids(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)


class _RewardsMixin(_Engine):
    """``/classify``, ``/v1/score`` and ``/v1/rerank``."""

    def _rewards_routes(self) -> None:
        r = self._routes
        r["/classify"] = {"POST": self._classify, "PUT": self._classify}
        r["/v1/score"] = {"POST": self._score}
        r["/v1/rerank"] = {"POST": self._rerank, "PUT": self._rerank}

    @staticmethod
    def reward(item: str | list[int]) -> float:
        """See :func:`reward`."""
        return reward(item)

    async def _classify(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _err("Invalid request body: expected a JSON object")
        text, input_ids = body.get("text"), body.get("input_ids")
        inputs: list[Any]
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
            if not all(_is_ids(row) and row for row in inputs):
                raise _err("input_ids cannot be empty.")
        else:
            raise _err("Either text or input_ids should be provided.")
        rid = body.get("rid")
        if isinstance(rid, list) and len(rid) == len(inputs):
            rids = [str(r) for r in rid]
        elif isinstance(rid, str):
            rids = [rid] if not batch else [f"{rid}_{i}" for i in range(len(inputs))]
        else:
            rids = [uuid.uuid4().hex for _ in inputs]
        t0 = time.monotonic()
        outs = []
        for r, x in zip(rids, inputs, strict=True):
            tokens = len(x.split()) if isinstance(x, str) else len(x)
            meta = {
                "id": r,
                "finish_reason": {"type": "length", "length": 0},
                "prompt_tokens": max(tokens, 1),
                "completion_tokens": 0,
                "cached_tokens": 0,
                "weight_version": self._weight_version,
                "e2e_latency": time.monotonic() - t0,
            }
            outs.append({"embedding": [reward(x)], "meta_info": meta})
        await self._respond_json(req, 200, outs if batch else outs[0])

    async def _score(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid request body: expected a JSON object")
        query, items = body.get("query"), body.get("items")
        if query is None or items is None:
            raise _openai_err("query and items must be provided")
        if isinstance(items, str):
            items = [items]
        text_mode = isinstance(query, str)
        if text_mode and not all(isinstance(i, str) for i in items):
            raise _openai_err("items must be text when the query is text")
        if not text_mode and not (_is_ids(query) and all(_is_ids(i) for i in items)):
            raise _openai_err("query and items must both be token ids")
        labels = body.get("label_token_ids") or [0]
        per_item = isinstance(labels[0], list)
        if per_item and len(labels) != len(items):
            raise _openai_err("label_token_ids must have one list per item")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise _openai_err("1 validation error: temperature: Input should be greater than 0")
        scores = []
        for i, item in enumerate(items):
            row_labels = labels[i] if per_item else labels
            joined = f"{query}|{item}" if text_mode else ",".join(str(t) for t in [*query, *item])
            row = [reward(f"{joined}#{label}") * 4 - 2 for label in row_labels]
            if body.get("apply_softmax"):
                exps = [math.exp(v / temperature) for v in row]
                total = sum(exps)
                row = [e / total for e in exps]
            scores.append(row)
        out: dict[str, Any] = {"scores": scores, "model": self._served_model_name}
        if body.get("return_token_logprobs"):
            out["token_logprobs"] = [[-0.5] for _ in items]
        out["usage"] = None
        out["object"] = "scoring"
        await self._respond_json(req, 200, out)

    async def _rerank(self, req: _Req) -> None:
        body = req.json
        if body is _INVALID or not isinstance(body, dict):
            raise _openai_err("Invalid request body: expected a JSON object")
        query, documents = body.get("query"), body.get("documents")
        if (
            not isinstance(query, (str, list))
            or not query
            or (isinstance(query, str) and not query.strip())
        ):
            raise _openai_err("Query cannot be empty")
        if not isinstance(documents, list) or not documents:
            raise _openai_err("Documents cannot be empty")
        for doc in documents:
            if isinstance(doc, str) and not doc.strip():
                raise _openai_err("Each document cannot be empty or whitespace only")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
            raise _openai_err("Value error, parameter top_n should be larger than 0.")
        results = []
        for i, doc in enumerate(documents):
            entry: dict[str, Any] = {
                "score": reward(f"{_text_of(query)}|{_text_of(doc)}"),
                "index": i,
                "meta_info": {"id": uuid.uuid4().hex, "weight_version": self._weight_version},
            }
            if body.get("return_documents", True) and isinstance(doc, str):
                entry["document"] = doc
            results.append(entry)
        results.sort(key=lambda e: e["score"], reverse=True)
        if top_n is not None:
            results = results[:top_n]
        await self._respond_json(req, 200, results)
