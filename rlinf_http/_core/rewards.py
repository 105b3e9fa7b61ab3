"""Reward and ranking calls of sglang 0.5.23 as operations (no I/O).

- ``/classify``: a reward (sequence-classification) model's scores, native
  like ``/encode`` (a ``text`` or ``input_ids`` prompt, or a batch of them).
- ``/v1/score``: label scores of ``items`` given a ``query`` (a causal LM's
  next-token probabilities of ``label_token_ids``, or a classifier's logits).
- ``/v1/rerank``: documents ordered by relevance to a query (best first).

Servers only (the router does not forward ``/classify``); the arguments are
checked when the operation is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from .._errors import APIResponseValidationError, InvalidRequestError
from ..models import ClassifyOutput, RerankResult, ScoreResult
from .dataplane import _model, _own_fields, _prompt_kind, _wire_prompt, build_encode
from .requests import JSON_CONTENT_TYPE, Operation, encode_json
from .responses import RawResponse, decode_json, parse_model

__all__ = ["build_classify", "build_rerank", "build_score"]

_JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", JSON_CONTENT_TYPE),)

_CLASSIFY_ONE: pydantic.TypeAdapter[ClassifyOutput] = pydantic.TypeAdapter(ClassifyOutput)
_CLASSIFY_MANY: pydantic.TypeAdapter[list[ClassifyOutput]] = pydantic.TypeAdapter(
    list[ClassifyOutput]
)
_SCORE: pydantic.TypeAdapter[ScoreResult] = pydantic.TypeAdapter(ScoreResult)
_RERANK: pydantic.TypeAdapter[list[RerankResult]] = pydantic.TypeAdapter(list[RerankResult])


def _shape_error(raw: RawResponse, expected: str) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"{raw.method} {raw.url}: expected {expected}, got {raw.content[:80]!r}",
        method=raw.method,
        url=raw.url,
        status_code=raw.status_code,
        raw_body=raw.content,
    )


# -- /classify -------------------------------------------------------------------------------


def _parse_classify_one(raw: RawResponse) -> ClassifyOutput | list[ClassifyOutput]:
    if raw.content.lstrip()[:1] == b"[":
        raise _shape_error(raw, "a JSON object (one input)")
    return parse_model(_CLASSIFY_ONE, raw)


def _parse_classify_many(raw: RawResponse) -> ClassifyOutput | list[ClassifyOutput]:
    if raw.content.lstrip()[:1] == b"{":
        raise _shape_error(raw, "a JSON list (a batch)")
    return parse_model(_CLASSIFY_MANY, raw)


def build_classify(
    text: str | Sequence[str] | None = None,
    input_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Operation[ClassifyOutput | list[ClassifyOutput]]:
    """``POST /classify``: exactly one of ``text`` / ``input_ids``; a list is a batch.

    ``kwargs`` are further ``EmbeddingReqInput`` fields (``rid``, ``priority``...).
    Each result's ``embedding`` holds the scores (:attr:`ClassifyOutput.score`).
    """
    op = build_encode(text, input_ids, dict(kwargs or {}))
    batch = _prompt_kind(text if text is not None else input_ids) in ("texts", "id_lists")
    parse = _parse_classify_many if batch else _parse_classify_one
    return Operation(op.method, "/classify", op.content, op.headers, parse)


# -- /v1/score -------------------------------------------------------------------------------


def _label_ids(value: object, num_items: int) -> list[int] | list[list[int]]:
    def ids(row: object, what: str) -> list[int]:
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or not row:
            raise InvalidRequestError(f"{what} must be a non-empty list of token ids")
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in row):
            raise InvalidRequestError(f"{what} must contain only non-negative ints")
        return list(row)

    if (
        isinstance(value, Sequence)
        and value
        and all(isinstance(r, Sequence) and not isinstance(r, (str, bytes)) for r in value)
    ):
        rows = [ids(r, f"label_token_ids[{i}]") for i, r in enumerate(value)]
        if len(rows) != num_items:
            raise InvalidRequestError(
                f"label_token_ids has {len(rows)} lists for {num_items} items (one per item)"
            )
        return rows
    return ids(value, "label_token_ids")


def build_score(
    query: str | Sequence[int],
    items: str | Sequence[str] | Sequence[Sequence[int]],
    *,
    label_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
    apply_softmax: bool = False,
    item_first: bool = False,
    temperature: float = 1.0,
    return_token_logprobs: bool = False,
    return_pooled_hidden_states: bool = False,
    score_extraction_token: str | None = None,
    model: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Operation[ScoreResult]:
    """``POST /v1/score``: ``scores[i]`` for ``items[i]`` given ``query``.

    Text query with text items, or token ids with id lists. A causal LM scores
    ``label_token_ids`` (shared, or one list per item); ``apply_softmax``
    normalises them over the labels.
    """
    query_kind = _prompt_kind(query, "query")
    if query_kind not in ("text", "ids"):
        raise InvalidRequestError("query must be a str or one list of token ids")
    item_kind = _prompt_kind(items, "items")
    if (query_kind == "text") != (item_kind in ("text", "texts")):
        raise InvalidRequestError(
            "query and items must both be text, or both token ids (items: a list of id lists)"
        )
    if item_kind == "ids":
        raise InvalidRequestError("token-id items must be a list of id lists (one per item)")
    num_items = 1 if item_kind == "text" else len(items)
    for name, flag in (
        ("apply_softmax", apply_softmax),
        ("item_first", item_first),
        ("return_token_logprobs", return_token_logprobs),
        ("return_pooled_hidden_states", return_pooled_hidden_states),
    ):
        if not isinstance(flag, bool):
            raise InvalidRequestError(f"{name} must be True or False, got {flag!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise InvalidRequestError(f"temperature must be a finite number > 0, got {temperature!r}")
    extra = dict(kwargs or {})
    own = ("query", "items", "label_token_ids", "apply_softmax", "item_first", "temperature")
    _own_fields(extra, (*own, "model", "return_token_logprobs", "return_pooled_hidden_states"))
    body: dict[str, Any] = {
        "query": _wire_prompt(query, query_kind),
        "items": _wire_prompt(items, item_kind),
        "apply_softmax": apply_softmax,
        "item_first": item_first,
        "temperature": float(temperature),
    }
    if label_token_ids is not None:
        body["label_token_ids"] = _label_ids(label_token_ids, num_items)
    if return_token_logprobs:
        body["return_token_logprobs"] = True
    if return_pooled_hidden_states:
        body["return_pooled_hidden_states"] = True
    if score_extraction_token is not None:
        if not isinstance(score_extraction_token, str) or not score_extraction_token:
            raise InvalidRequestError(
                f"score_extraction_token must be a non-empty str, got {score_extraction_token!r}"
            )
        body["score_extraction_token"] = score_extraction_token
    if model is not None:
        body["model"] = _model(model)
    body.update(extra)
    return Operation("POST", "/v1/score", encode_json(body, "score body"), _JSON_HEADERS, _score)


def _score(raw: RawResponse) -> ScoreResult:
    return parse_model(_SCORE, raw)


# -- /v1/rerank ------------------------------------------------------------------------------


def _content(value: object, what: str) -> Any:
    """A rerank text, or a list of multimodal content parts (dicts with a ``type``)."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequestError(f"{what} must not be empty or whitespace only")
        return value
    if (
        isinstance(value, Sequence)
        and not isinstance(value, bytes)
        and value
        and all(isinstance(p, Mapping) and isinstance(p.get("type"), str) for p in value)
    ):
        return [dict(p) for p in value]
    raise InvalidRequestError(
        f"{what} must be a non-empty str or a list of content parts ({{'type': ...}}), "
        f"got {value!r}"
    )


def build_rerank(
    query: str | Sequence[Mapping[str, Any]],
    documents: Sequence[str | Sequence[Mapping[str, Any]]],
    *,
    top_n: int | None = None,
    return_documents: bool = True,
    instruct: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Operation[list[RerankResult]]:
    """``POST /v1/rerank``: the documents scored against ``query``, best first.

    ``top_n`` keeps the best ``top_n`` (>= 1); each result's ``index`` is the
    document's position in ``documents``.
    """
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence) or not documents:
        raise InvalidRequestError("documents must be a non-empty list")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InvalidRequestError(f"top_n must be an int >= 1 or None, got {top_n!r}")
    if not isinstance(return_documents, bool):
        raise InvalidRequestError(
            f"return_documents must be True or False, got {return_documents!r}"
        )
    extra = dict(kwargs or {})
    _own_fields(extra, ("query", "documents", "top_n", "return_documents", "instruct"))
    body: dict[str, Any] = {
        "query": _content(query, "query"),
        "documents": [_content(d, f"documents[{i}]") for i, d in enumerate(documents)],
        "return_documents": return_documents,
    }
    if top_n is not None:
        body["top_n"] = top_n
    if instruct is not None:
        if not isinstance(instruct, str):
            raise InvalidRequestError(f"instruct must be a str, got {instruct!r}")
        body["instruct"] = instruct
    body.update(extra)
    return Operation("POST", "/v1/rerank", encode_json(body, "rerank body"), _JSON_HEADERS, _rerank)


def _rerank(raw: RawResponse) -> list[RerankResult]:
    """sglang's JSON array, or a gateway's ``{"results": [...], "object": "rerank"}``."""
    if raw.content.lstrip()[:1] == b"{":
        wrapped = decode_json(raw)
        if not isinstance(wrapped, dict) or not isinstance(wrapped.get("results"), list):
            raise _shape_error(raw, "a JSON list of rerank results")
        try:
            return _RERANK.validate_python(wrapped["results"])
        except pydantic.ValidationError:
            raise _shape_error(raw, "a list of rerank results under 'results'") from None
    return parse_model(_RERANK, raw)
