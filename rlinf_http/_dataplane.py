"""The data-plane calls beyond ``/generate`` and chat, as a mixin of the client.

Text completions, embeddings, ``/encode``, tokenize/detokenize and LoRA adapter
management. Each method builds its operation in :mod:`rlinf_http._core.dataplane`
and hands it to one of the I/O drivers of :class:`BaseClient`; the sync and
async variants differ only in that call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ._base_client import NOT_GIVEN, TimeoutTypes
from ._core.dataplane import (
    build_completion,
    build_detokenize,
    build_embeddings,
    build_encode,
    build_load_lora,
    build_tokenize,
    build_unload_lora,
    completion_stream_parser,
    fanout_routing_keys,
    prompt_is_token_ids,
    steering_fields,
    with_routing_key,
)
from ._core.requests import DEFAULT_CHAT_MODEL, Operation
from ._errors import InvalidRequestError, UnprocessableEntityError
from ._fanout import FanOutMixin
from ._streaming import AsyncStream, Stream
from .models import (
    Completion,
    CompletionChunk,
    DetokenizeResult,
    EmbeddingResponse,
    EncodeOutput,
    LoraAdapterResult,
    TokenizeResult,
)

if TYPE_CHECKING:  # numpy is optional
    import numpy as np
    import numpy.typing as npt

__all__ = ["DataPlaneMixin"]

CompletionPrompt = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
Progress = Callable[[int, int], object]

_TOKEN_IDS_HINT = (
    " (sglang-router 0.3.2 refuses token-id prompts on /v1/completions: send token ids "
    "to a server, or text through the router)"
)


def _explain_422(exc: UnprocessableEntityError, prompt: object) -> None:
    """Add the router's token-id refusal to a 422's message, when that is the cause."""
    if prompt_is_token_ids(prompt) and exc.args and _TOKEN_IDS_HINT not in str(exc.args[0]):
        exc.args = (f"{exc.args[0]}{_TOKEN_IDS_HINT}", *exc.args[1:])


class DataPlaneMixin(FanOutMixin):
    """Completions, embeddings, tokenizer and LoRA calls of :class:`InferenceHTTPClient`.

    Every call takes ``routing_key=`` (sent as ``X-SMG-Routing-Key``: the router's
    ``manual`` and ``consistent_hashing`` policies keep one key on one worker),
    ``timeout=`` and ``max_retries=`` like the other typed calls.
    """

    # -- /v1/completions -------------------------------------------------------------------

    @staticmethod
    def _completion_op(
        prompt: CompletionPrompt,
        model: str,
        kwargs: dict[str, Any],
        stream: bool,
        routing_key: str | None,
        priority: int | None,
        lora_path: str | None,
    ) -> Operation[Completion]:
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path)
        return with_routing_key(build_completion(prompt, model, fields, stream=stream), routing_key)

    @overload
    def completion(
        self,
        prompt: CompletionPrompt,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Completion: ...

    @overload
    def completion(
        self,
        prompt: CompletionPrompt,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Stream[CompletionChunk]: ...

    def completion(
        self,
        prompt: CompletionPrompt,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        stream: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Completion | Stream[CompletionChunk]:
        """``POST /v1/completions`` (OpenAI text completions); ``kwargs`` are JSON fields.

        ``prompt`` is a string, a list of strings, token ids or a list of id lists
        (token ids only when calling a server: the router answers them with 422).
        OpenAI fields (``max_tokens``, which defaults to 16 on sglang,
        ``temperature``, ``logprobs``, ``echo``, ``n``...) and sglang extras
        (``top_k``, ``regex``, ``rid``...) alike. ``stream=True`` returns a
        :class:`Stream` of :class:`CompletionChunk` whose ``choices[i].text`` are
        increments.
        """
        op = self._completion_op(prompt, model, kwargs, stream, routing_key, priority, lora_path)
        policy = self._policy(max_retries)
        try:
            if stream:
                return self._stream(op, completion_stream_parser, timeout, policy)
            return self._send(op, timeout=timeout, retry=policy)
        except UnprocessableEntityError as exc:
            _explain_422(exc, prompt)
            raise

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
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> Completion | AsyncStream[CompletionChunk]:
        """Async :meth:`completion` (``stream=True`` returns an :class:`AsyncStream`)."""
        op = self._completion_op(prompt, model, kwargs, stream, routing_key, priority, lora_path)
        policy = self._policy(max_retries)
        try:
            if stream:
                return await self._astream(op, completion_stream_parser, timeout, policy)
            return await self._asend(op, timeout=timeout, retry=policy)
        except UnprocessableEntityError as exc:
            _explain_422(exc, prompt)
            raise

    def _completion_ops(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str,
        kwargs: dict[str, Any],
        routing_key: str | Sequence[str] | None,
        priority: int | None,
        lora_path: str | None,
    ) -> list[Operation[Any]]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise InvalidRequestError("prompts must be a list (one completion prompt each)")
        keys = fanout_routing_keys(routing_key, len(prompts))
        return [
            self._completion_op(p, model, kwargs, False, key, priority, lora_path)
            for p, key in zip(prompts, keys, strict=True)
        ]

    @overload
    async def async_completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Completion]: ...

    @overload
    async def async_completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Completion | Exception]: ...

    async def async_completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """One ``/v1/completions`` request per prompt, at most ``concurrency`` in flight.

        Results are in input order; the first error cancels the rest unless
        ``return_exceptions=True``. ``routing_key`` is one key for all, or one
        per prompt. Every argument is checked before the first request is sent.
        """
        ops = self._completion_ops(prompts, model, kwargs, routing_key, priority, lora_path)
        return await self._map(ops, concurrency, return_exceptions, progress, max_retries, timeout)

    @overload
    def completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Completion]: ...

    @overload
    def completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Completion | Exception]: ...

    def completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Sync :meth:`async_completion_many`."""
        ops = self._completion_ops(prompts, model, kwargs, routing_key, priority, lora_path)
        return self._map_sync(ops, concurrency, return_exceptions, progress, max_retries, timeout)

    # -- /v1/embeddings and /encode -------------------------------------------------------

    @staticmethod
    def _embed_op(
        input: EmbeddingInput,
        model: str,
        kwargs: dict[str, Any],
        routing_key: str | None,
        priority: int | None,
        lora_path: str | None,
    ) -> Operation[EmbeddingResponse]:
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path)
        return with_routing_key(build_embeddings(input, model, fields), routing_key)

    @overload
    def embed(
        self,
        input: EmbeddingInput,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        as_numpy: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse: ...

    @overload
    def embed(
        self,
        input: EmbeddingInput,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        as_numpy: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> npt.NDArray[np.float32]: ...

    def embed(
        self,
        input: EmbeddingInput,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        as_numpy: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse | npt.NDArray[np.float32]:
        """``POST /v1/embeddings``: one vector per input (a string, strings or token ids).

        Returns an :class:`EmbeddingResponse` (``.vectors``: lists of floats in
        input order), or with ``as_numpy=True`` a ``(len(input), dim)`` float32
        array (needs numpy). ``kwargs``: ``dimensions``, ``encoding_format``...
        """
        op = self._embed_op(input, model, kwargs, routing_key, priority, lora_path)
        out = self._send(op, timeout=timeout, retry=self._policy(max_retries))
        return out.as_numpy() if as_numpy else out

    @overload
    async def async_embed(
        self,
        input: EmbeddingInput,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        as_numpy: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse: ...

    @overload
    async def async_embed(
        self,
        input: EmbeddingInput,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        as_numpy: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> npt.NDArray[np.float32]: ...

    async def async_embed(
        self,
        input: EmbeddingInput,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        as_numpy: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse | npt.NDArray[np.float32]:
        """Async :meth:`embed`."""
        op = self._embed_op(input, model, kwargs, routing_key, priority, lora_path)
        out = await self._asend(op, timeout=timeout, retry=self._policy(max_retries))
        return out.as_numpy() if as_numpy else out

    @staticmethod
    def _encode_op(
        text: str | Sequence[str] | None,
        input_ids: Sequence[int] | Sequence[Sequence[int]] | None,
        kwargs: dict[str, Any],
        routing_key: str | None,
        priority: int | None,
        lora_path: str | None,
    ) -> Operation[EncodeOutput | list[EncodeOutput]]:
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path)
        return with_routing_key(build_encode(text, input_ids, fields), routing_key)

    @overload
    def encode(
        self,
        text: str,
        *,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput: ...

    @overload
    def encode(
        self,
        text: None = None,
        *,
        input_ids: Sequence[int],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput: ...

    @overload
    def encode(
        self,
        text: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[EncodeOutput]: ...

    def encode(
        self,
        text: str | Sequence[str] | None = None,
        *,
        input_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput | list[EncodeOutput]:
        """``POST /encode``, sglang's native embedding call (a server; the router 404s).

        One text (or id list) returns an :class:`EncodeOutput`; a list returns
        a list in input order.
        """
        op = self._encode_op(text, input_ids, kwargs, routing_key, priority, lora_path)
        return self._send(op, timeout=timeout, retry=self._policy(max_retries))

    @overload
    async def async_encode(
        self,
        text: str,
        *,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput: ...

    @overload
    async def async_encode(
        self,
        text: None = None,
        *,
        input_ids: Sequence[int],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput: ...

    @overload
    async def async_encode(
        self,
        text: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[EncodeOutput]: ...

    async def async_encode(
        self,
        text: str | Sequence[str] | None = None,
        *,
        input_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput | list[EncodeOutput]:
        """Async :meth:`encode`."""
        op = self._encode_op(text, input_ids, kwargs, routing_key, priority, lora_path)
        return await self._asend(op, timeout=timeout, retry=self._policy(max_retries))

    # -- /v1/tokenize and /v1/detokenize ------------------------------------------------------

    def tokenize(
        self,
        prompt: str | Sequence[str],
        model: str | None = None,
        *,
        add_special_tokens: bool = True,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> TokenizeResult:
        """``POST /v1/tokenize``: token ids of a prompt (one list per prompt for a list).

        Through a router the router's own tokenizer answers, and ``model`` must
        name it (the worker's served model name); a router without one answers
        400, raised as :class:`~rlinf_http.BadRequestError` with its message.
        """
        op = build_tokenize(prompt, model, add_special_tokens, kwargs)
        return self._send(
            with_routing_key(op, routing_key), timeout=timeout, retry=self._policy(max_retries)
        )

    async def async_tokenize(
        self,
        prompt: str | Sequence[str],
        model: str | None = None,
        *,
        add_special_tokens: bool = True,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> TokenizeResult:
        """Async :meth:`tokenize`."""
        op = build_tokenize(prompt, model, add_special_tokens, kwargs)
        return await self._asend(
            with_routing_key(op, routing_key), timeout=timeout, retry=self._policy(max_retries)
        )

    def detokenize(
        self,
        tokens: Sequence[int] | Sequence[Sequence[int]],
        model: str | None = None,
        *,
        skip_special_tokens: bool = True,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> DetokenizeResult:
        """``POST /v1/detokenize``: text of token ids (a list of texts for id lists)."""
        op = build_detokenize(tokens, model, skip_special_tokens, kwargs)
        return self._send(
            with_routing_key(op, routing_key), timeout=timeout, retry=self._policy(max_retries)
        )

    async def async_detokenize(
        self,
        tokens: Sequence[int] | Sequence[Sequence[int]],
        model: str | None = None,
        *,
        skip_special_tokens: bool = True,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> DetokenizeResult:
        """Async :meth:`detokenize`."""
        op = build_detokenize(tokens, model, skip_special_tokens, kwargs)
        return await self._asend(
            with_routing_key(op, routing_key), timeout=timeout, retry=self._policy(max_retries)
        )

    # -- LoRA adapters (a server; the router 404s) -----------------------------------------

    def load_lora_adapter(
        self, lora_name: str, lora_path: str, *, pinned: bool = False
    ) -> LoraAdapterResult:
        """``POST /load_lora_adapter``: load an adapter under ``lora_name``.

        Requests then select it with ``lora_path=lora_name``. A server started
        without LoRA support answers 400 (:class:`~rlinf_http.BadRequestError`).
        """
        return self._send(build_load_lora(lora_name, lora_path, pinned), retry=self._policy(None))

    async def async_load_lora_adapter(
        self, lora_name: str, lora_path: str, *, pinned: bool = False
    ) -> LoraAdapterResult:
        """Async :meth:`load_lora_adapter`."""
        return await self._asend(
            build_load_lora(lora_name, lora_path, pinned), retry=self._policy(None)
        )

    def unload_lora_adapter(self, lora_name: str) -> LoraAdapterResult:
        """``POST /unload_lora_adapter``."""
        return self._send(build_unload_lora(lora_name), retry=self._policy(None))

    async def async_unload_lora_adapter(self, lora_name: str) -> LoraAdapterResult:
        """Async :meth:`unload_lora_adapter`."""
        return await self._asend(build_unload_lora(lora_name), retry=self._policy(None))
