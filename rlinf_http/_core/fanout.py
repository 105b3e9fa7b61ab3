"""The operations of a fan-out, and of the calls that take routing and steering fields.

Every request of a ``*_many`` call is built and checked here, before the first
one is sent; the endpoints only hand the list to a driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._errors import InvalidRequestError
from ..models import (
    ChatMessage,
    Completion,
    EmbeddingResponse,
    EncodeOutput,
    GenerateOutput,
    SamplingParams,
)
from .dataplane import (
    build_completion,
    build_embeddings,
    build_encode,
    fanout_rids,
    fanout_routing_keys,
    steering_fields,
    with_routing_key,
)
from .requests import LazyOps, Operation, build_chat_completion, build_generate
from .responses import RawResponse
from .rollout import remember_request

__all__ = [
    "chat_ops",
    "generate_group_op",
    "generate_group_ops",
    "completion_op",
    "completion_ops",
    "embed_op",
    "encode_op",
    "generate_ops",
]

_Sampling = Mapping[str, Any] | SamplingParams | None
_Messages = Sequence[Mapping[str, Any] | ChatMessage]


def generate_ops(
    prompts: Sequence[str] | None,
    input_ids: Sequence[Sequence[int]] | None,
    sampling_params: _Sampling,
    return_logprob: bool,
    extra: Mapping[str, Any],
    rid: str | Sequence[str] | None = None,
    routing_key: str | Sequence[str] | None = None,
    priority: int | None = None,
    lora_path: str | None = None,
) -> LazyOps[Any]:
    """One ``/generate`` operation per prompt (or per token-id list).

    Every prompt is checked and its body encoded now; the operations themselves
    are made when taken (:class:`LazyOps`), so a fan-out holds one body per prompt.
    """
    if (prompts is None) == (input_ids is None):
        raise InvalidRequestError("give exactly one of prompts or input_ids")
    items: Sequence[Any] = prompts if prompts is not None else input_ids  # type: ignore[assignment]
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidRequestError("prompts must be a list of str (input_ids a list of lists)")
    rids = fanout_rids(rid, len(items))
    keys = fanout_routing_keys(routing_key, len(items))
    bodies: list[bytes | None] = []
    parses: list[Callable[[RawResponse], Any]] = []
    headers: tuple[tuple[str, str], ...] = ()
    for i, item in enumerate(items):
        if prompts is not None and not isinstance(item, str):
            raise InvalidRequestError(f"prompts[{i}] must be a str")
        if input_ids is not None and (
            isinstance(item, (str, bytes)) or not isinstance(item, Sequence)
        ):
            raise InvalidRequestError(f"input_ids[{i}] must be a list of ints")
        op = build_generate(
            item if prompts is not None else None,
            item if input_ids is not None else None,
            sampling_params,
            return_logprob,
            extra,
            rid=rids[i],
            priority=priority,
            lora_path=lora_path,
        )
        bodies.append(op.content)
        if not parses or op.parse is not parses[0]:
            parses.append(op.parse)
        headers = op.headers
    if len(parses) > 1:  # pragma: no cover - one shape of answer for one set of arguments
        raise AssertionError("generate_ops: operations of one fan-out parse differently")
    parse = parses[0] if parses else None

    def make(i: int) -> Operation[Any]:
        assert parse is not None
        op = Operation("POST", "/generate", bodies[i], headers, parse)
        return remember_request(with_routing_key(op, keys[i]))

    return LazyOps(len(bodies), make)


def chat_ops(
    messages_list: Sequence[_Messages],
    model: str,
    kwargs: Mapping[str, Any],
    routing_key: str | Sequence[str] | None = None,
    priority: int | None = None,
    lora_path: str | None = None,
    rid: str | Sequence[str] | None = None,
) -> list[Operation[Any]]:
    """One chat-completion operation per conversation (``rid``: as :func:`fanout_rids`)."""
    if isinstance(messages_list, (str, bytes)) or not isinstance(messages_list, Sequence):
        raise InvalidRequestError("messages_list must be a list of message lists")
    keys = fanout_routing_keys(routing_key, len(messages_list))
    rids = fanout_rids(rid, len(messages_list))
    return [
        with_routing_key(
            build_chat_completion(
                m, model, steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=r)
            ),
            key,
        )
        for m, key, r in zip(messages_list, keys, rids, strict=True)
    ]


def completion_op(
    prompt: Any,
    model: str,
    kwargs: dict[str, Any],
    stream: bool,
    routing_key: str | None,
    priority: int | None,
    lora_path: str | None,
    rid: str | None = None,
) -> Operation[Completion]:
    """One ``/v1/completions`` operation."""
    fields = steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=rid)
    return with_routing_key(build_completion(prompt, model, fields, stream=stream), routing_key)


def completion_ops(
    prompts: Sequence[Any],
    model: str,
    kwargs: dict[str, Any],
    routing_key: str | Sequence[str] | None,
    priority: int | None,
    lora_path: str | None,
    rid: str | Sequence[str] | None = None,
) -> list[Operation[Any]]:
    """One ``/v1/completions`` operation per prompt (``rid``: as :func:`fanout_rids`)."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise InvalidRequestError("prompts must be a list (one completion prompt each)")
    keys = fanout_routing_keys(routing_key, len(prompts))
    rids = fanout_rids(rid, len(prompts))
    return [
        completion_op(p, model, kwargs, False, key, priority, lora_path, r)
        for p, key, r in zip(prompts, keys, rids, strict=True)
    ]


def embed_op(
    input: Any,
    model: str,
    kwargs: dict[str, Any],
    routing_key: str | None,
    priority: int | None,
    lora_path: str | None,
    rid: str | None = None,
) -> Operation[EmbeddingResponse]:
    """One ``/v1/embeddings`` operation."""
    fields = steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=rid)
    return with_routing_key(build_embeddings(input, model, fields), routing_key)


def encode_op(
    text: str | Sequence[str] | None,
    input_ids: Sequence[int] | Sequence[Sequence[int]] | None,
    kwargs: dict[str, Any],
    routing_key: str | None,
    priority: int | None,
    lora_path: str | None,
    rid: str | None = None,
) -> Operation[EncodeOutput | list[EncodeOutput]]:
    """One ``/encode`` operation."""
    fields = steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=rid)
    return with_routing_key(build_encode(text, input_ids, fields), routing_key)


def _group_sampling(sampling_params: _Sampling, n: int) -> dict[str, Any]:
    """``sampling_params`` as a wire dict asking for ``n`` samples."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidRequestError(f"n must be an int >= 1, got {n!r}")
    if sampling_params is None:
        wire: dict[str, Any] = {}
    elif isinstance(sampling_params, SamplingParams):
        wire = sampling_params.to_wire()
    elif isinstance(sampling_params, Mapping):
        wire = dict(sampling_params)
    else:
        raise InvalidRequestError(
            "sampling_params must be a dict or SamplingParams, got "
            f"{type(sampling_params).__name__}"
        )
    given = wire.get("n")
    if given is not None and given != n:
        raise InvalidRequestError(f"sampling_params has n={given!r} but n={n!r} was given")
    wire["n"] = n
    return wire


def _as_group(parse: Any) -> Any:
    def parse_group(raw: RawResponse) -> list[GenerateOutput]:
        out = parse(raw)
        return out if isinstance(out, list) else [out]

    return parse_group


def generate_group_op(
    prompt: str | None,
    input_ids: Sequence[int] | None,
    n: int,
    sampling_params: _Sampling,
    return_logprob: bool,
    extra: Mapping[str, Any],
    routing_key: str | None = None,
    priority: int | None = None,
    lora_path: str | None = None,
) -> Operation[list[GenerateOutput]]:
    """One ``/generate`` asking for ``n`` samples of one prompt (a GRPO group).

    The answer is always a list of ``n`` outputs (sglang answers ``n == 1`` with
    one object: it is wrapped). The sglang router passes ``n > 1`` through.
    """
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRequestError(
            "generate_group takes one prompt (a str); use generate_groups for many"
        )
    if input_ids is not None and (
        isinstance(input_ids, (str, bytes))
        or not isinstance(input_ids, Sequence)
        or any(isinstance(i, Sequence) for i in input_ids)
    ):
        raise InvalidRequestError(
            "generate_group takes one list of token ids; use generate_groups for many"
        )
    op = build_generate(
        prompt,
        input_ids,
        _group_sampling(sampling_params, n),
        return_logprob,
        extra,
        priority=priority,
        lora_path=lora_path,
    )
    grouped = Operation(op.method, op.path, op.content, op.headers, _as_group(op.parse))
    return remember_request(with_routing_key(grouped, routing_key))


def generate_group_ops(
    prompts: Sequence[str] | None,
    input_ids: Sequence[Sequence[int]] | None,
    n: int,
    sampling_params: _Sampling,
    return_logprob: bool,
    extra: Mapping[str, Any],
    routing_key: str | Sequence[str] | None = None,
    priority: int | None = None,
    lora_path: str | None = None,
) -> list[Operation[list[GenerateOutput]]]:
    """One :func:`generate_group_op` per prompt (or per token-id list)."""
    if (prompts is None) == (input_ids is None):
        raise InvalidRequestError("give exactly one of prompts or input_ids")
    items: Sequence[Any] = prompts if prompts is not None else input_ids  # type: ignore[assignment]
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidRequestError("prompts must be a list of str (input_ids a list of lists)")
    _group_sampling(sampling_params, n)  # checked once, before any op
    keys = fanout_routing_keys(routing_key, len(items))
    return [
        generate_group_op(
            item if prompts is not None else None,
            item if input_ids is not None else None,
            n,
            sampling_params,
            return_logprob,
            extra,
            keys[i],
            priority,
            lora_path,
        )
        for i, item in enumerate(items)
    ]
