"""``POST /v1/completions``."""

from __future__ import annotations

import functools
from typing import Any, Literal, overload

from ... import _served
from ..._core.dataplane import completion_stream_parser
from ..._core.fanout import completion_op
from ..._core.requests import Operation
from ..._core.targeting import with_target_worker
from ..._driver import NOT_GIVEN, TimeoutTypes
from ..._errors import UnprocessableEntityError
from ..._served import asend_model, awith_model
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
        model: str | None = None,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Completion: ...

    @overload
    async def async_completion(
        self,
        prompt: CompletionPrompt,
        model: str | None = None,
        *,
        stream: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsyncStream[CompletionChunk]: ...

    async def async_completion(
        self,
        prompt: CompletionPrompt,
        model: str | None = None,
        *,
        stream: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
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
        up when absent; these calls leave it to the server). Without ``model`` the
        client sends the one model ``GET /v1/models`` lists (read once per client).
        ``target_worker`` as in :meth:`async_chat_completion`.
        """
        policy = self._driver.policy(max_retries)

        def make(name: str, target: int | None) -> Operation[Completion]:
            op = completion_op(prompt, name, kwargs, stream, routing_key, priority, lora_path, rid)
            return with_target_worker(op, target)

        if isinstance(target_worker, str):  # the arguments are checked before GET /workers
            make(model or _served.PROBE_MODEL, None)
        target = (
            target_worker
            if target_worker is None or type(target_worker) is int
            else await _served.atarget_index(self._driver, target_worker, True)
        )
        build = functools.partial(make, target=target)

        try:
            if stream:
                return await awith_model(
                    self._driver,
                    model,
                    policy,
                    build,
                    lambda op, retry: self._driver.astream(
                        op, completion_stream_parser, timeout, retry
                    ),
                )
            return await asend_model(self._driver, model, policy, build, timeout)
        except UnprocessableEntityError as exc:
            explain_422(exc, prompt)
            raise
