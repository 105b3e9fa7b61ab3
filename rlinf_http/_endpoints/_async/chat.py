"""``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Any, Literal, overload

from ..._core.dataplane import (
    steering_fields,
    with_routing_key,
)
from ..._core.requests import (
    DEFAULT_CHAT_MODEL,
    build_chat_completion,
)
from ..._core.streams import ChatStreamParser
from ..._driver import NOT_GIVEN, TimeoutTypes
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
    ) -> ChatCompletion: ...

    @overload
    async def async_chat_completion(
        self,
        messages: Messages,
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
    ) -> AsyncStream[ChatCompletionChunk]: ...

    async def async_chat_completion(
        self,
        messages: Messages,
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
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """``POST /v1/chat/completions``; ``kwargs`` are sent as JSON fields.

        OpenAI fields (``temperature``, ``max_tokens``, ``stream_options``...) and
        sglang extras (``top_k``, ``regex``, ``chat_template_kwargs``...) alike.
        The router accepts any ``model`` string. ``stream=True`` returns a
        :class:`Stream` of :class:`ChatCompletionChunk`. sglang-native names
        with an OpenAI spelling (``max_new_tokens``) raise
        :class:`~rlinf_http.InvalidRequestError`. ``routing_key`` is sent as
        ``X-SMG-Routing-Key``; ``priority`` and ``lora_path`` are typed fields.
        ``rid`` (sglang's request id) is sent only when given: the response ``id`` is
        then ``rid``, and ``abort_request(rid)`` can stop it (``generate`` makes one
        up when absent; these calls leave it to the server). sglang-router 0.3.2
        drops a chat ``rid``; smg 1.13 forwards it.
        """
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=rid)
        op = with_routing_key(
            build_chat_completion(messages, model, fields, stream=stream), routing_key
        )
        if stream:
            return await self._driver.astream(
                op, ChatStreamParser, timeout, self._driver.policy(max_retries)
            )
        return await self._driver.asend(op, timeout=timeout, retry=self._driver.policy(max_retries))
