"""``POST /v1/chat/completions``."""

from __future__ import annotations

import functools
from typing import Any, Literal, overload

from ... import _served
from ..._core.dataplane import (
    steering_fields,
    with_routing_key,
)
from ..._core.requests import Operation, build_chat_completion
from ..._core.streams import ChatStreamParser
from ..._core.targeting import with_target_worker
from ..._driver import NOT_GIVEN, TimeoutTypes
from ..._served import asend_model, awith_model
from ..._streaming import AsyncStream
from ...models import (
    ChatCompletion,
    ChatCompletionChunk,
)
from .._base import Endpoint
from .._shared import Messages

__all__ = ["AsyncChat"]


class AsyncChat(Endpoint):
    """OpenAI chat completions, whole or streamed."""

    __slots__ = ()

    @overload
    async def async_chat_completion(
        self,
        messages: Messages,
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
    ) -> ChatCompletion: ...

    @overload
    async def async_chat_completion(
        self,
        messages: Messages,
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
    ) -> AsyncStream[ChatCompletionChunk]: ...

    async def async_chat_completion(
        self,
        messages: Messages,
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
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """``POST /v1/chat/completions``; ``kwargs`` are sent as JSON fields.

        OpenAI fields (``temperature``, ``max_tokens``, ``stream_options``...) and
        sglang extras (``top_k``, ``regex``, ``chat_template_kwargs``...) alike.
        Without ``model`` the client sends the one model ``GET /v1/models``
        lists (read once per client; see the guide). ``stream=True`` returns a
        :class:`Stream` of :class:`ChatCompletionChunk`. sglang-native names
        with an OpenAI spelling (``max_new_tokens``) raise
        :class:`~rlinf_http.InvalidRequestError`. ``routing_key`` is sent as
        ``X-SMG-Routing-Key``; ``priority`` and ``lora_path`` are typed fields.
        ``rid`` (sglang's request id) is sent only when given: the response ``id`` is
        then ``rid``, and ``abort_request(rid)`` can stop it (``generate`` makes one
        up when absent; these calls leave it to the server). sglang-router 0.3.2
        drops a chat ``rid``; smg 1.13 forwards it. ``target_worker`` (a worker
        index or URL) pins the call to one worker where the gateway allows it (smg
        under ``consistent_hashing``; see the guide).
        """
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=rid)

        def make(name: str, target: int | None) -> Operation[ChatCompletion]:
            op = build_chat_completion(messages, name, fields, stream=stream)
            return with_target_worker(with_routing_key(op, routing_key), target)

        if isinstance(target_worker, str):  # the arguments are checked before GET /workers
            make(model or _served.PROBE_MODEL, None)
        target = (
            target_worker
            if target_worker is None or type(target_worker) is int
            else await _served.atarget_index(self._driver, target_worker, True)
        )
        build = functools.partial(make, target=target)

        policy = self._driver.policy(max_retries)
        if stream:
            return await awith_model(
                self._driver,
                model,
                policy,
                build,
                lambda op, retry: self._driver.astream(op, ChatStreamParser, timeout, retry),
            )
        return await asend_model(self._driver, model, policy, build, timeout)
