"""The data plane beyond ``/generate`` and chat, as operations (no I/O).

Builders for ``/v1/completions``, ``/v1/embeddings``, ``/encode``,
``/v1/tokenize``, ``/v1/detokenize`` and LoRA adapter management, plus the
request-steering fields every data-plane call shares: the routing key header
(``X-SMG-Routing-Key``), request ids (``rid``), ``priority`` and ``lora_path``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import pydantic

from .._errors import InvalidRequestError
from ..models import (
    Completion,
    CompletionChunk,
    DetokenizeResult,
    EmbeddingResponse,
    EncodeOutput,
    LoraAdapterResult,
    TokenizeResult,
)
from .requests import (
    _JSON_HEADERS,
    Operation,
    _check_ids,
    _is_int,
    _shape_error,
    check_openai_keywords,
    encode_json,
)
from .responses import RawResponse, parse_model
from .steering import check_lora_path, check_priority, check_rid, check_routing_key
from .streams import EventStreamParser, _validate

__all__ = [
    "ROUTING_KEY_HEADER",
    "build_completion",
    "build_detokenize",
    "build_embeddings",
    "build_encode",
    "build_load_lora",
    "build_tokenize",
    "build_unload_lora",
    "completion_stream_parser",
    "fanout_rids",
    "fanout_routing_keys",
    "steering_fields",
    "with_routing_key",
]

T = TypeVar("T")

ROUTING_KEY_HEADER = "x-smg-routing-key"


# -- steering: routing keys, request ids, priority, LoRA -------------------------------


def with_routing_key(op: Operation[T], key: str | None) -> Operation[T]:
    """``op`` sending ``X-SMG-Routing-Key: key`` (unchanged when ``key`` is ``None``).

    The router's ``manual`` and ``consistent_hashing`` policies send every
    request with one key to one worker; the other policies ignore it.
    """
    if key is None:
        return op
    header = (ROUTING_KEY_HEADER, check_routing_key(key))
    return dataclasses.replace(op, headers=(*op.headers, header))


def fanout_routing_keys(keys: str | Sequence[str] | None, count: int) -> list[str | None]:
    """One routing key per fan-out item: the same key for all, or one each."""
    if keys is None or isinstance(keys, str):
        return [keys] * count
    if not isinstance(keys, Sequence):
        raise InvalidRequestError("routing_key must be a str or a list of str (one per item)")
    if len(keys) != count:
        raise InvalidRequestError(
            f"routing_key has {len(keys)} keys for {count} items: give one key, or one per item"
        )
    return [check_routing_key(k, f"routing_key[{i}]") for i, k in enumerate(keys)]


def fanout_rids(rid: str | Sequence[str] | None, count: int) -> list[str | None]:
    """One rid per fan-out request: ``<rid>_<i>`` for a str, as given for a list."""
    if rid is None:
        return [None] * count
    if isinstance(rid, str):
        prefix = check_rid(rid, None)
        return [f"{prefix}_{i}" for i in range(count)]
    checked = check_rid(rid, count)
    assert isinstance(checked, list)
    return list(checked)


def steering_fields(
    kwargs: Mapping[str, Any],
    *,
    priority: object = None,
    lora_path: object = None,
    batch_size: int | None = None,
    rid: object = None,
) -> dict[str, Any]:
    """``kwargs`` plus the typed ``priority`` / ``lora_path`` / ``rid`` fields that are set.

    ``rid`` (the engine's request id, a str or, for a batch, one per item) is sent
    only when given: sglang then uses it as the response ``id`` and it can be
    aborted with ``abort_request(rid)``.
    """
    out = dict(kwargs)
    if rid is not None:
        if "rid" in out:
            raise InvalidRequestError("'rid' is set through its own argument")
        out["rid"] = check_rid(rid, batch_size)
    checked_priority = check_priority(priority)
    if checked_priority is not None:
        out["priority"] = checked_priority
    checked_lora = check_lora_path(lora_path, batch_size)
    if checked_lora is not None:
        out["lora_path"] = checked_lora
    return out


def _own_fields(kwargs: Mapping[str, Any], own: tuple[str, ...]) -> None:
    for key in own:
        if key in kwargs:
            raise InvalidRequestError(f"{key!r} is set through its own argument")


def _model(model: object) -> str:
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(f"model must be a non-empty string, got {model!r}")
    return model


# -- /v1/completions ----------------------------------------------------------------------

_COMPLETION: pydantic.TypeAdapter[Completion] = pydantic.TypeAdapter(Completion)
_COMPLETION_CHUNK: pydantic.TypeAdapter[CompletionChunk] = pydantic.TypeAdapter(CompletionChunk)


def _prompt_kind(prompt: object, what: str = "prompt") -> str:
    """``"text"``, ``"texts"``, ``"ids"`` or ``"id_lists"``; raises on anything else."""
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidRequestError(f"{what} must not be empty")
        return "text"
    if not isinstance(prompt, Sequence) or isinstance(prompt, bytes) or len(prompt) == 0:
        raise InvalidRequestError(
            f"{what} must be a str, a list of str, a list of token ids or a list of id lists"
        )
    if all(isinstance(p, str) for p in prompt):
        if not all(prompt):
            raise InvalidRequestError(f"{what}: every prompt must be a non-empty str")
        return "texts"
    if all(isinstance(p, Sequence) and not isinstance(p, (str, bytes)) for p in prompt):
        for i, row in enumerate(prompt):
            _check_ids(row, f"{what}[{i}]")
        return "id_lists"
    _check_ids(prompt, what)
    return "ids"


def _wire_prompt(prompt: Any, kind: str) -> Any:
    if kind == "text":
        return prompt
    if kind == "id_lists":
        return [list(row) for row in prompt]
    return list(prompt)


def build_completion(
    prompt: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
    model: str,
    kwargs: Mapping[str, Any],
    *,
    stream: bool = False,
) -> Operation[Completion]:
    """``POST /v1/completions``; ``kwargs`` are OpenAI fields and sglang extras.

    Token-id prompts work on a server; sglang-router 0.3.2 refuses them (422).
    """
    kind = _prompt_kind(prompt)
    check_openai_keywords(kwargs, "completion")
    _own_fields(kwargs, ("prompt", "model"))
    body: dict[str, Any] = {"model": _model(model), "prompt": _wire_prompt(prompt, kind)}
    body.update(kwargs)
    if stream:
        body["stream"] = True
    elif body.get("stream"):
        raise InvalidRequestError("use stream=True (the streaming API) to stream a completion")
    return Operation(
        "POST",
        "/v1/completions",
        encode_json(body, "completion body"),
        _JSON_HEADERS,
        _parse_completion,
    )


def prompt_is_token_ids(prompt: object) -> bool:
    """Whether a completion prompt is token ids (the router answers those with 422)."""
    return (
        isinstance(prompt, Sequence)
        and not isinstance(prompt, (str, bytes))
        and len(prompt) > 0
        and not isinstance(prompt[0], str)
    )


def _parse_completion(raw: RawResponse) -> Completion:
    return parse_model(_COMPLETION, raw)


def completion_stream_parser(url: str = "") -> EventStreamParser[CompletionChunk]:
    """``/v1/completions`` stream -> :class:`CompletionChunk` items (text deltas)."""
    return EventStreamParser(lambda value: _validate(_COMPLETION_CHUNK, value, url), url)


# -- /v1/embeddings and /encode -----------------------------------------------------------

_EMBEDDINGS: pydantic.TypeAdapter[EmbeddingResponse] = pydantic.TypeAdapter(EmbeddingResponse)
_ENCODE_ONE: pydantic.TypeAdapter[EncodeOutput] = pydantic.TypeAdapter(EncodeOutput)
_ENCODE_MANY: pydantic.TypeAdapter[list[EncodeOutput]] = pydantic.TypeAdapter(list[EncodeOutput])


def build_embeddings(
    input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
    model: str,
    kwargs: Mapping[str, Any],
) -> Operation[EmbeddingResponse]:
    """``POST /v1/embeddings`` (``encoding_format`` ``"float"`` unless asked otherwise)."""
    kind = _prompt_kind(input, "input")
    _own_fields(kwargs, ("input", "model"))
    fmt = kwargs.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InvalidRequestError(f"encoding_format must be 'float' or 'base64', got {fmt!r}")
    dims = kwargs.get("dimensions")
    if dims is not None and not (_is_int(dims) and dims > 0):
        raise InvalidRequestError(f"dimensions must be an int > 0, got {dims!r}")
    body: dict[str, Any] = {"model": _model(model), "input": _wire_prompt(input, kind)}
    body.update(kwargs)
    return Operation(
        "POST",
        "/v1/embeddings",
        encode_json(body, "embeddings body"),
        _JSON_HEADERS,
        _parse_embeddings,
    )


def _parse_embeddings(raw: RawResponse) -> EmbeddingResponse:
    return parse_model(_EMBEDDINGS, raw)


def build_encode(
    text: str | Sequence[str] | None,
    input_ids: Sequence[int] | Sequence[Sequence[int]] | None,
    kwargs: Mapping[str, Any],
) -> Operation[EncodeOutput | list[EncodeOutput]]:
    """``POST /encode`` (sglang's native embedding call; servers only, the router 404s)."""
    if (text is None) == (input_ids is None):
        raise InvalidRequestError("exactly one of text or input_ids must be given")
    _own_fields(kwargs, ("text", "input_ids"))
    if text is not None:
        kind = _prompt_kind(text, "text")
        if kind not in ("text", "texts"):
            raise InvalidRequestError("text must be a str or a list of str (use input_ids)")
        body: dict[str, Any] = {"text": _wire_prompt(text, kind)}
    else:
        kind = _prompt_kind(input_ids, "input_ids")
        if kind not in ("ids", "id_lists"):
            raise InvalidRequestError("input_ids must be a list of ints or a list of lists")
        body = {"input_ids": _wire_prompt(input_ids, kind)}
    body.update(kwargs)
    batch = kind in ("texts", "id_lists")
    return Operation(
        "POST",
        "/encode",
        encode_json(body, "encode body"),
        _JSON_HEADERS,
        _parse_encode_many if batch else _parse_encode_one,
    )


def _parse_encode_one(raw: RawResponse) -> EncodeOutput | list[EncodeOutput]:
    if raw.content.lstrip()[:1] == b"[":
        _shape_error(raw, "a JSON object (one input)")
    return parse_model(_ENCODE_ONE, raw)


def _parse_encode_many(raw: RawResponse) -> EncodeOutput | list[EncodeOutput]:
    if raw.content.lstrip()[:1] == b"{":
        _shape_error(raw, "a JSON list (a batch)")
    return parse_model(_ENCODE_MANY, raw)


# -- /v1/tokenize and /v1/detokenize ------------------------------------------------------

_TOKENIZE: pydantic.TypeAdapter[TokenizeResult] = pydantic.TypeAdapter(TokenizeResult)
_DETOKENIZE: pydantic.TypeAdapter[DetokenizeResult] = pydantic.TypeAdapter(DetokenizeResult)


def build_tokenize(
    prompt: str | Sequence[str],
    model: str | None,
    add_special_tokens: bool,
    kwargs: Mapping[str, Any],
) -> Operation[TokenizeResult]:
    """``POST /v1/tokenize`` (answered by the router's own tokenizer through a router)."""
    kind = _prompt_kind(prompt)
    if kind not in ("text", "texts"):
        raise InvalidRequestError("prompt must be a str or a list of str")
    if not isinstance(add_special_tokens, bool):
        raise InvalidRequestError(f"add_special_tokens must be a bool, got {add_special_tokens!r}")
    _own_fields(kwargs, ("prompt", "model", "add_special_tokens"))
    body: dict[str, Any] = {
        "prompt": _wire_prompt(prompt, kind),
        "add_special_tokens": add_special_tokens,
    }
    if model is not None:
        body["model"] = _model(model)
    body.update(kwargs)
    return Operation(
        "POST", "/v1/tokenize", encode_json(body, "tokenize body"), _JSON_HEADERS, _parse_tokenize
    )


def _parse_tokenize(raw: RawResponse) -> TokenizeResult:
    return parse_model(_TOKENIZE, raw)


def build_detokenize(
    tokens: Sequence[int] | Sequence[Sequence[int]],
    model: str | None,
    skip_special_tokens: bool,
    kwargs: Mapping[str, Any],
) -> Operation[DetokenizeResult]:
    """``POST /v1/detokenize``."""
    if not isinstance(tokens, Sequence) or isinstance(tokens, (str, bytes)):
        raise InvalidRequestError("tokens must be a list of ints or a list of lists")
    items: Sequence[Any] = tokens
    wire: Any
    if len(items) > 0 and all(
        isinstance(row, Sequence) and not isinstance(row, (str, bytes)) for row in items
    ):
        for i, row in enumerate(items):
            if not all(_is_int(t) and t >= 0 for t in row):
                raise InvalidRequestError(f"tokens[{i}] must contain only non-negative ints")
        wire = [list(row) for row in items]
    elif all(_is_int(t) and t >= 0 for t in items):
        wire = list(items)
    else:
        raise InvalidRequestError("tokens must contain only non-negative ints")
    if not isinstance(skip_special_tokens, bool):
        raise InvalidRequestError(
            f"skip_special_tokens must be a bool, got {skip_special_tokens!r}"
        )
    _own_fields(kwargs, ("tokens", "model", "skip_special_tokens"))
    body: dict[str, Any] = {"tokens": wire, "skip_special_tokens": skip_special_tokens}
    if model is not None:
        body["model"] = _model(model)
    body.update(kwargs)
    return Operation(
        "POST", "/v1/detokenize", encode_json(body, "detokenize body"), _JSON_HEADERS, _parse_detok
    )


def _parse_detok(raw: RawResponse) -> DetokenizeResult:
    return parse_model(_DETOKENIZE, raw)


# -- LoRA adapters --------------------------------------------------------------------------

_LORA: pydantic.TypeAdapter[LoraAdapterResult] = pydantic.TypeAdapter(LoraAdapterResult)


def _lora_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"lora_name must be a non-empty str, got {name!r}")
    return name


def build_load_lora(lora_name: str, lora_path: str, pinned: bool) -> Operation[LoraAdapterResult]:
    """``POST /load_lora_adapter`` (servers started with LoRA enabled; the router 404s)."""
    if not isinstance(lora_path, str) or not lora_path:
        raise InvalidRequestError(f"lora_path must be a non-empty str, got {lora_path!r}")
    if not isinstance(pinned, bool):
        raise InvalidRequestError(f"pinned must be a bool, got {pinned!r}")
    body = {"lora_name": _lora_name(lora_name), "lora_path": lora_path, "pinned": pinned}
    return Operation("POST", "/load_lora_adapter", encode_json(body), _JSON_HEADERS, _parse_lora)


def build_unload_lora(lora_name: str) -> Operation[LoraAdapterResult]:
    """``POST /unload_lora_adapter``."""
    body = {"lora_name": _lora_name(lora_name)}
    return Operation("POST", "/unload_lora_adapter", encode_json(body), _JSON_HEADERS, _parse_lora)


def _parse_lora(raw: RawResponse) -> LoraAdapterResult:
    if not raw.content.strip():  # some versions answer 200 with an empty body
        return LoraAdapterResult()
    return parse_model(_LORA, raw)
