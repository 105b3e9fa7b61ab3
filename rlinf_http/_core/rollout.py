"""Partial rollouts: resume an aborted generation and merge the pieces (no I/O).

A ``/generate`` result remembers the request it answers (:func:`remember_request`
wraps the operation's parser): the encoded body, the routing key and the
result's position in the answer. Nothing is decoded until a resume needs it.

:func:`continuation` turns an aborted result (``finish_reason`` a
:class:`~rlinf_http.FinishAbort`) into the operation that finishes it: the same
request for one prompt and one sample, with the tokens generated so far
appended to the prompt (``input_ids``; a text prompt gets the text so far
appended, which the server re-tokenizes), ``max_new_tokens`` and
``min_new_tokens`` reduced by what was generated, a fresh ``rid`` and the same
routing key. Its parser returns :func:`merge_pieces` of the two: one result with
the shapes of a single generation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import pydantic_core

from .._errors import InvalidRequestError
from ..models import FinishAbort, GenerateOutput, MetaInfo
from .dataplane import ROUTING_KEY_HEADER, with_routing_key
from .requests import Operation, _parse_generate_one, encode_json
from .responses import RawResponse
from .steering import check_rid, new_rid

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "continuation",
    "continuations",
    "merge_pieces",
    "merge_spans",
    "remember_request",
    "remembered",
]

T = TypeVar("T")

#: sglang's ``max_new_tokens`` when the request sets none.
DEFAULT_MAX_NEW_TOKENS = 128

#: Per-token output lists of ``meta_info``: concatenated piece after piece.
_OUTPUT_LISTS = (
    "output_token_logprobs",
    "output_top_logprobs",
    "output_token_ids_logprobs",
    "output_token_sampling_mask",
    "output_token_sampling_logprobs",
)
_LENGTHS = {
    "output_token_logprobs_length": "output_token_logprobs",
    "output_token_sampling_mask_length": "output_token_sampling_mask",
}
#: Fields about the prompt: the first piece saw the real prompt.
_PROMPT_SIDE = (
    "input_token_logprobs",
    "input_top_logprobs",
    "input_token_ids_logprobs",
    "cached_tokens_details",
)
#: Counters added up over the pieces.
_SUMMED = ("completion_tokens", "cached_tokens", "e2e_latency", "num_retractions")
#: Top-level fields of a batch body that may hold one value per prompt.
_PER_PROMPT = frozenset(
    {
        "sampling_params",
        "return_logprob",
        "logprob_start_len",
        "top_logprobs_num",
        "token_ids_logprob",
        "lora_path",
        "custom_logit_processor",
        "cache_salt",
        "extra_key",
        "image_data",
        "video_data",
        "audio_data",
        "return_hidden_states",
        "bootstrap_host",
        "bootstrap_port",
        "bootstrap_room",
    }
)


class _Batch:
    """The body of a batch request, shared by the results of its answer.

    It is split into one body per prompt only when needed (a resume, or
    pickling one result), once for all of them: a pickled result carries its
    own prompt, not the whole batch.
    """

    __slots__ = ("_items", "_samples", "body")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._items: list[bytes] | None = None
        self._samples = 1

    def item(self, position: int) -> tuple[bytes, int]:
        """The one-prompt body of answer ``position``, and its position in that body."""
        if self._items is None:
            try:
                body = pydantic_core.from_json(self.body)
            except ValueError:
                raise InvalidRequestError("the remembered request is not a JSON body") from None
            n = _sample_count(body.get("sampling_params") if isinstance(body, dict) else None)
            text, ids = body.get("text"), body.get("input_ids")
            prompts = text if isinstance(text, list) else ids
            count = len(prompts) if _is_batch(body) and isinstance(prompts, list) else 1
            self._items = [encode_json(_one_prompt(body, p * n)) for p in range(count)]
            self._samples = n
        n = self._samples
        return self._items[min(position // n, len(self._items) - 1)], position % n


class _Request(NamedTuple):
    """What a result remembers of its request (pickles as a tuple of its own prompt)."""

    body: bytes | _Batch
    routing_key: str | None
    position: int

    def __reduce__(self) -> tuple[Any, ...]:
        try:
            body, position = self.one_prompt()
        except InvalidRequestError:  # pickling never fails: keep the whole batch
            whole = self.body.body if isinstance(self.body, _Batch) else self.body
            body, position = whole, self.position
        return (_Request, (body, self.routing_key, position))

    def one_prompt(self) -> tuple[bytes, int]:
        """The body of this result's prompt alone, and the result's position in its answer."""
        if isinstance(self.body, _Batch):
            return self.body.item(self.position)
        return self.body, self.position


def _remember(result: object, request: tuple[bytes | _Batch, str | None, int]) -> None:
    # A plain tuple of a one-prompt body: the garbage collector stops tracking it at
    # its first pass (a _Request, a tuple subclass, it would track for the result's
    # life); read back as a _Request by _remembered_request.
    if isinstance(result, GenerateOutput):
        object.__setattr__(result, "_rollout", request)


def _remembered_request(result: GenerateOutput) -> _Request | None:
    request = getattr(result, "_rollout", None)
    if type(request) is tuple and len(request) == 3:
        return _Request(*request)
    return request if isinstance(request, _Request) else None


def remember_request(op: Operation[T]) -> Operation[T]:
    """``op`` whose :class:`GenerateOutput` results remember it (what ``resume`` reads).

    For fan-outs, whose operations are parsed by the driver; a single call
    uses :func:`remembered` on its result instead (no closure per request).
    """
    body = op.content
    if body is None:
        return op
    # A partial, not a closure: 2 objects per operation instead of 5 (a fan-out
    # holds all its operations until the last answer).
    remembering = functools.partial(_parse_and_remember, op.parse, body, _routing_key_of(op))
    return Operation(op.method, op.path, body, op.headers, remembering)  # replace() costs more


def _parse_and_remember(
    parse: Callable[[RawResponse], T], body: bytes, key: str | None, raw: RawResponse
) -> T:
    return _remember_all(parse(raw), body, key)


def remembered(result: T, op: Operation[Any]) -> T:
    """``result`` (of ``op``), its :class:`GenerateOutput` items remembering ``op``."""
    body = op.content
    if body is None:
        return result
    return _remember_all(result, body, _routing_key_of(op))


def _routing_key_of(op: Operation[Any]) -> str | None:
    for name, value in op.headers:
        if name.lower() == ROUTING_KEY_HEADER:
            return value
    return None


def _remember_all(result: T, body: bytes, key: str | None) -> T:
    if isinstance(result, list):
        if len(result) > 1:
            shared = _Batch(body)
            for i, item in enumerate(result):
                _remember(item, _Request(shared, key, i))  # pickles as its own prompt
        else:
            for item in result:
                _remember(item, (body, key, 0))
    else:
        _remember(result, (body, key, 0))
    return result


def _sample_count(sampling: object) -> int:
    first = sampling[0] if isinstance(sampling, list) and sampling else sampling
    n = first.get("n") if isinstance(first, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _is_batch(body: Mapping[str, Any]) -> bool:
    text, ids = body.get("text"), body.get("input_ids")
    return isinstance(text, list) or (
        isinstance(ids, list) and bool(ids) and isinstance(ids[0], list)
    )


def _one_prompt(body: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The body for the one prompt that answer position ``index`` belongs to."""
    if body.get("input_embeds") is not None and body.get("input_ids") is None:
        raise InvalidRequestError("a generation from input_embeds cannot be resumed")
    text, ids = body.get("text"), body.get("input_ids")
    item = dict(body)
    if _is_batch(body):
        prompts = text if isinstance(text, list) else ids
        assert isinstance(prompts, list)
        p = index // _sample_count(body.get("sampling_params"))
        for key, value in body.items():
            if key in ("text", "input_ids"):
                item[key] = value[p]
            elif key == "token_ids_logprob":
                if isinstance(value, list) and value and isinstance(value[0], list):
                    item[key] = value[p]
            elif key in _PER_PROMPT and isinstance(value, list) and len(value) == len(prompts):
                item[key] = value[p]
    return item


def _exhausted(result: GenerateOutput, request: _Request, max_new: int) -> GenerateOutput:
    wire = result.to_dict()
    wire["meta_info"] = {
        **wire["meta_info"],
        "finish_reason": {"type": "length", "length": max_new},
    }
    done = GenerateOutput.model_validate(wire)
    _remember(done, request)
    return done


def continuation(
    result: GenerateOutput, rid: str | None = None
) -> GenerateOutput | Operation[GenerateOutput]:
    """What finishes ``result``: the operation to send, or the final result itself.

    A result that did not abort is returned as it is. An aborted one whose
    tokens already reach ``max_new_tokens`` is returned finished with
    ``{"type": "length"}`` (what an uninterrupted run reports) and needs no
    request. Otherwise the operation resubmits the continuation; its parser
    returns the merged result. Raises :class:`InvalidRequestError` (before any
    I/O) for a result that does not remember its request.
    """
    if not isinstance(result, GenerateOutput):
        raise InvalidRequestError(
            f"resume takes a GenerateOutput of generate(), got {type(result).__name__}"
        )
    if not isinstance(result.finish_reason, FinishAbort):
        return result
    request = _remembered_request(result)
    if request is None:
        raise InvalidRequestError(
            "this result does not remember its request, so it cannot be resumed: resume "
            "takes what generate(), generate_many() or generate_group(s)() returned "
            "(not a stream chunk, nor a result rebuilt with model_validate or model_copy)"
        )
    raw_body, position = request.one_prompt()
    try:
        body = pydantic_core.from_json(raw_body)
    except ValueError:
        raise InvalidRequestError("the remembered request is not a JSON body") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the remembered request is not a JSON object")
    item = _one_prompt(body, position)
    generated = len(result.output_ids)
    sampling = dict(item.get("sampling_params") or {})
    max_new = sampling.get("max_new_tokens")
    if not isinstance(max_new, int):
        max_new = DEFAULT_MAX_NEW_TOKENS
    if generated >= max_new:
        return _exhausted(result, request, max_new)
    sampling["max_new_tokens"] = max_new - generated
    min_new = sampling.get("min_new_tokens")
    if isinstance(min_new, int):
        sampling["min_new_tokens"] = max(min_new - generated, 0)
    sampling.pop("n", None)
    item["sampling_params"] = sampling
    if isinstance(item.get("input_ids"), list):
        item["input_ids"] = [*item["input_ids"], *result.output_ids]
    elif isinstance(item.get("text"), str):
        item["text"] = item["text"] + result.text
    else:
        raise InvalidRequestError("the remembered request has neither text nor input_ids")
    if generated:
        item.pop("logprob_start_len", None)  # prompt logprobs come from the first piece
    item.pop("stream", None)
    item["rid"] = check_rid(rid, None) if rid is not None else new_rid()

    def parse(raw: RawResponse) -> GenerateOutput:
        piece = _parse_generate_one(raw)
        assert isinstance(piece, GenerateOutput)
        merged = merge_pieces(result, piece)
        _remember(merged, request)
        return merged

    op = Operation(
        "POST",
        "/generate",
        encode_json(item, "generate body"),
        (("content-type", "application/json"),),
        parse,
    )
    return with_routing_key(op, request.routing_key)


def continuations(
    results: Sequence[GenerateOutput],
) -> tuple[list[GenerateOutput | None], list[int], list[Operation[GenerateOutput]]]:
    """:func:`continuation` of each result, all checked before any is sent.

    Returns the results already final (``None`` where a request is needed),
    the positions that need one, and their operations, in the same order.
    """
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise InvalidRequestError("resume_many takes a list of GenerateOutput")
    final: list[GenerateOutput | None] = []
    positions: list[int] = []
    ops: list[Operation[GenerateOutput]] = []
    for i, result in enumerate(results):
        step = continuation(result)
        if isinstance(step, GenerateOutput):
            final.append(step)
        else:
            final.append(None)
            positions.append(i)
            ops.append(step)
    return final, positions, ops


def _piece_spans(meta: MetaInfo, count: int, offset: int) -> list[tuple[str, int, int]]:
    if meta.weight_versions is None:
        if count == 0 or meta.weight_version is None:
            return []
        return [(meta.weight_version, offset, offset + count)]
    return [(s.version, s.start + offset, s.end + offset) for s in meta.weight_versions]


def merge_spans(
    first: MetaInfo, first_tokens: int, second: MetaInfo, second_tokens: int
) -> list[dict[str, Any]] | None:
    """The weight-version spans of two pieces, the second offset by ``first_tokens``.

    A piece without spans (an older server) counts as produced wholly by its
    ``weight_version``. Empty spans are dropped and touching spans of one
    version joined; when no piece produced a token, the second piece's spans
    are kept as they are (sglang's ``[{version, 0, 0}]``). ``None``: neither
    piece says anything about versions.
    """
    out: list[tuple[str, int, int]] = []
    pieces = _piece_spans(first, first_tokens, 0) + _piece_spans(
        second, second_tokens, first_tokens
    )
    for version, start, end in pieces:
        if end <= start:
            continue
        if out and out[-1][0] == version and out[-1][2] == start:
            out[-1] = (version, out[-1][1], end)
        else:
            out.append((version, start, end))
    if not out:
        if second.weight_versions is not None:
            return [s.to_dict() for s in second.weight_versions]
        return None
    return [{"version": v, "start": s, "end": e} for v, s, e in out]


def merge_pieces(first: GenerateOutput, second: GenerateOutput) -> GenerateOutput:
    """One result from a generation (``first``) and its continuation (``second``).

    ``text`` and ``output_ids`` are joined; per-token output lists of
    ``meta_info`` (logprobs, top logprobs, token-id logprobs, sampling masks)
    are concatenated, so they keep one entry per output token (a list one
    piece lacks is dropped, unless that piece produced no token). Prompt-side
    fields (``prompt_tokens``, input logprobs) come from the first piece, which
    saw the original prompt; ``completion_tokens``, ``cached_tokens``,
    ``e2e_latency`` and ``num_retractions`` are added up; ``weight_versions``
    are merged by :func:`merge_spans`; everything else (``id``,
    ``finish_reason``, ``weight_version``) is the second piece's.
    """
    a, b = first.to_dict(), second.to_dict()
    am: dict[str, Any] = a.get("meta_info") or {}
    bm: dict[str, Any] = b.get("meta_info") or {}
    na, nb = len(first.output_ids), len(second.output_ids)
    meta = dict(bm)
    for key in _OUTPUT_LISTS:
        x, y = am.get(key), bm.get(key)
        if x is None and y is None:
            continue
        if x is None and na == 0:
            x = []
        if y is None and nb == 0:
            y = []
        if x is None or y is None:
            meta.pop(key, None)
        else:
            meta[key] = [*x, *y]
    for length_key, list_key in _LENGTHS.items():
        if list_key in meta:
            meta[length_key] = len(meta[list_key])
        else:
            meta.pop(length_key, None)
    for key in _PROMPT_SIDE:
        if key in am:
            meta[key] = am[key]
        elif na:
            meta.pop(key, None)  # the second piece's covers prompt + generated tokens
    if "prompt_tokens" in am:
        meta["prompt_tokens"] = am["prompt_tokens"]
    elif isinstance(bm.get("prompt_tokens"), int):
        meta["prompt_tokens"] = max(bm["prompt_tokens"] - na, 0)
    for key in _SUMMED:
        values = [m[key] for m in (am, bm) if isinstance(m.get(key), (int, float))]
        if values:
            meta[key] = sum(values)
    finish = bm.get("finish_reason")
    if isinstance(finish, dict) and finish.get("type") == "length":
        # sglang reports the request's max_new_tokens: the original one here
        meta["finish_reason"] = {**finish, "length": na + nb}
    spans = merge_spans(first.meta_info, na, second.meta_info, nb)
    if spans is not None:
        meta["weight_versions"] = spans
        meta["weight_version"] = second.meta_info.weight_version or spans[-1]["version"]
    wire = {**b, **a}
    wire["text"] = first.text + second.text
    wire["output_ids"] = [*first.output_ids, *second.output_ids]
    wire["meta_info"] = meta
    return GenerateOutput.model_validate(wire)
