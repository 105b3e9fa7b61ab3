"""``POST /v1/completions``."""

from __future__ import annotations

from typing import Any, Literal, overload

from ..._core.dataplane import completion_stream_parser
from ..._core.fanout import completion_op
from ..._core.requests import DEFAULT_CHAT_MODEL
from ..._driver import NOT_GIVEN, TimeoutTypes
from ..._errors import UnprocessableEntityError
from ..._streaming import AsyncStream
from ...models import (
    Completion,
    CompletionChunk,
)
from .._base import Endpoint
from .._shared import (
    CompletionPrompt,
    explain_422,
)

__all__ = ["AsyncCompletions"]


class AsyncCompletions(Endpoint):
    """OpenAI text completions, whole or streamed."""

    __slots__ = ()

    @overload
    async def async_completion(
        self,
        prompt: CompletionPrompt,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Completion: ...

    @overload
    async def async_completion(
        self,
        prompt: CompletionPrompt,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsyncStream[CompletionChunk]: ...

    async def async_completion(
        self,
        prompt: CompletionPrompt,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Completion | AsyncStream[CompletionChunk]:
        """``POST /v1/completions`` (OpenAI text completions); ``kwargs`` are JSON fields.

        ``prompt`` is a string, a list of strings, token ids or a list of id lists
        (token ids only when calling a server: the router answers them with 422).
        OpenAI fields (``max_tokens``, which defaults to 16 on sglang,
        ``temperature``, ``logprobs``, ``echo``, ``n``...) and sglang extras
        (``top_k``, ``regex``...) alike. ``stream=True`` returns a
        :class:`Stream` of :class:`CompletionChunk` whose ``choices[i].text`` are
        increments. ``rid`` (sglang's request id) is sent only when given: the response ``id`` is
        then ``rid``, and ``abort_request(rid)`` can stop it (``generate`` makes one
        up when absent; these calls leave it to the server).
        """
        op = completion_op(prompt, model, kwargs, stream, routing_key, priority, lora_path, rid)
        policy = self._driver.policy(max_retries)
        try:
            if stream:
                return await self._driver.astream(op, completion_stream_parser, timeout, policy)
            return await self._driver.asend(op, timeout=timeout, retry=policy)
        except UnprocessableEntityError as exc:
            explain_422(exc, prompt)
            raise
