"""Bounded fan-out: many ``/generate`` or chat requests, at most ``concurrency`` in flight.

Results in input order (``*_many``) or in completion order (:class:`AsCompleted`).
Every request is built and checked before the first one is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._base_client import NOT_GIVEN, BaseClient, TimeoutTypes
from ._core.dataplane import (
    fanout_rids,
    fanout_routing_keys,
    steering_fields,
    with_routing_key,
)
from ._core.requests import (
    DEFAULT_CHAT_MODEL,
    Operation,
    build_chat_completion,
    build_generate,
)
from ._core.retry import RetryPolicy
from ._errors import InvalidRequestError
from .models import (
    ChatCompletion,
    ChatMessage,
    GenerateOutput,
    SamplingParams,
    SingleSampleParams,
)

__all__ = ["AsCompleted", "FanOutMixin", "Messages", "OneSample", "Progress", "Sampling"]

Sampling = Mapping[str, Any] | SamplingParams | None
# A sampling dict literal that asks for one sample: generate() returns one output.
OneSample = SingleSampleParams | None
Messages = Sequence[Mapping[str, Any] | ChatMessage]
Progress = Callable[[int, int], object]


def check_concurrency(concurrency: int) -> int:
    """``concurrency``: an int >= 1, else :class:`InvalidRequestError` (no I/O)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(f"concurrency must be an int >= 1, got {concurrency!r}")
    return concurrency


R = TypeVar("R")


class AsCompleted(Generic[R]):
    """``(index, result)`` pairs of a fan-out, in completion order.

    Use it as ``async with client.async_generate_as_completed(...) as results:``
    then ``async for index, result in results``. Leaving the block early cancels
    the requests still running. With ``return_exceptions=True`` a failed
    request yields its exception as the result; otherwise the first error is
    raised from the iteration and the rest are cancelled.
    """

    def __init__(
        self,
        client: BaseClient,
        ops: Sequence[Operation[Any]],
        concurrency: int,
        return_exceptions: bool,
        retry: RetryPolicy,
        timeout: TimeoutTypes,
    ) -> None:
        self._client = client
        self._ops = ops
        self._concurrency = concurrency
        self._return_exceptions = return_exceptions
        self._retry = retry
        self._timeout = timeout
        self._tg: anyio.abc.TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[tuple[int, Any, bool]] | None = None

    async def __aenter__(self) -> AsCompleted[R]:
        send, receive = anyio.create_memory_object_stream[tuple[int, Any, bool]](
            max_buffer_size=self._concurrency
        )
        self._receive = receive
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._produce, send)
        return self

    async def _produce(self, send: MemoryObjectSendStream[tuple[int, Any, bool]]) -> None:
        indices = iter(range(len(self._ops)))

        async def worker(
            out: MemoryObjectSendStream[tuple[int, Any, bool]], scope: anyio.CancelScope
        ) -> None:
            # A consumer that left (receive side closed) ends the worker quietly.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async with out:
                    for i in indices:
                        try:
                            result = await self._client._asend(
                                self._ops[i], timeout=self._timeout, retry=self._retry
                            )
                        except Exception as exc:
                            if not self._return_exceptions:
                                # Stop starting (and cancel) the rest at once; the
                                # consumer gets the error from the buffer.
                                scope.cancel()
                                with anyio.CancelScope(shield=True):
                                    await out.send((i, exc, True))
                                return
                            await out.send((i, exc, True))
                        else:
                            await out.send((i, result, False))

        async with send, anyio.create_task_group() as tg:
            for _ in range(min(self._concurrency, len(self._ops))):
                tg.start_soon(worker, send.clone(), tg.cancel_scope)

    def __aiter__(self) -> AsCompleted[R]:
        return self

    async def __anext__(self) -> tuple[int, R]:
        if self._receive is None:
            raise RuntimeError("use 'async with' around AsCompleted")
        try:
            index, value, failed = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        if failed and not self._return_exceptions:
            raise value
        result: R = value
        return index, result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._receive is not None
        # Cancel the requests still running and wait for them; whatever ended the
        # block (an error from the iteration, the caller's own exception, a
        # cancellation) then propagates as it is, not wrapped in an ExceptionGroup.
        self._tg.cancel_scope.cancel()
        self._receive.close()
        await self._tg.__aexit__(None, None, None)
        return None


class FanOutMixin(BaseClient):
    """The fan-out methods of :class:`~rlinf_http.InferenceHTTPClient`."""

    def _policy(self, max_retries: int | None) -> RetryPolicy:
        return self.retry_policy.with_max_retries(max_retries)

    async def _map(
        self,
        ops: Sequence[Operation[Any]],
        concurrency: int,
        return_exceptions: bool,
        progress: Progress | None,
        max_retries: int | None,
        timeout: TimeoutTypes,
    ) -> list[Any]:
        """Run ``ops`` with at most ``concurrency`` in flight; results in input order."""
        return await self._amap(
            ops,
            concurrency=check_concurrency(concurrency),
            return_exceptions=return_exceptions,
            progress=progress,
            retry=self._policy(max_retries),
            timeout=timeout,
        )

    def _map_sync(
        self,
        ops: Sequence[Operation[Any]],
        concurrency: int,
        return_exceptions: bool,
        progress: Progress | None,
        max_retries: int | None,
        timeout: TimeoutTypes,
    ) -> list[Any]:
        """:meth:`_map` from sync code (on a private event loop and session)."""
        check_concurrency(concurrency)  # before the loop starts
        return self._run_async(
            lambda: self._map(ops, concurrency, return_exceptions, progress, max_retries, timeout)
        )

    def _as_completed(
        self,
        ops: Sequence[Operation[Any]],
        concurrency: int,
        return_exceptions: bool,
        max_retries: int | None,
        timeout: TimeoutTypes,
    ) -> AsCompleted[Any]:
        return AsCompleted(
            self,
            ops,
            check_concurrency(concurrency),
            return_exceptions,
            self._policy(max_retries),
            timeout,
        )

    # -- bounded fan-out --------------------------------------------------------------------

    @staticmethod
    def _generate_ops(
        prompts: Sequence[str] | None,
        input_ids: Sequence[Sequence[int]] | None,
        sampling_params: Sampling,
        return_logprob: bool,
        extra: Mapping[str, Any],
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
    ) -> list[Operation[Any]]:
        if (prompts is None) == (input_ids is None):
            raise InvalidRequestError("give exactly one of prompts or input_ids")
        items: Sequence[Any] = prompts if prompts is not None else input_ids  # type: ignore[assignment]
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidRequestError("prompts must be a list of str (input_ids a list of lists)")
        rids = fanout_rids(rid, len(items))
        keys = fanout_routing_keys(routing_key, len(items))
        ops: list[Operation[Any]] = []
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
            ops.append(with_routing_key(op, keys[i]))
        return ops

    @staticmethod
    def _chat_ops(
        messages_list: Sequence[Messages],
        model: str,
        kwargs: Mapping[str, Any],
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
    ) -> list[Operation[Any]]:
        if isinstance(messages_list, (str, bytes)) or not isinstance(messages_list, Sequence):
            raise InvalidRequestError("messages_list must be a list of message lists")
        keys = fanout_routing_keys(routing_key, len(messages_list))
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path)
        return [
            with_routing_key(build_chat_completion(m, model, fields), key)
            for m, key in zip(messages_list, keys, strict=True)
        ]

    @overload
    async def async_generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput]: ...

    @overload
    async def async_generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput | list[GenerateOutput]]: ...

    @overload
    async def async_generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput | Exception]: ...

    @overload
    async def async_generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput | list[GenerateOutput] | Exception]: ...

    async def async_generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[Any]:
        """Generate for many prompts, at most ``concurrency`` in flight (asyncio or trio).

        Each prompt is its own ``/generate`` request (the router refuses
        batches). Returns the outputs in input order. On the first error the
        remaining requests are cancelled and the error is raised, unless
        ``return_exceptions=True``, which puts each failure's exception in its
        slot instead. ``progress(done, total)`` is called after each request.
        Every argument is checked before the first request is sent.
        """
        ops = self._generate_ops(
            prompts,
            input_ids,
            sampling_params,
            return_logprob,
            extra,
            rid,
            routing_key,
            priority,
            lora_path,
        )
        return await self._map(ops, concurrency, return_exceptions, progress, max_retries, timeout)

    @overload
    async def async_chat_completion_many(
        self,
        messages_list: Sequence[Messages],
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
    ) -> list[ChatCompletion]: ...

    @overload
    async def async_chat_completion_many(
        self,
        messages_list: Sequence[Messages],
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
    ) -> list[ChatCompletion | Exception]: ...

    async def async_chat_completion_many(
        self,
        messages_list: Sequence[Messages],
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
        """:meth:`async_generate_many` for chat completions (one conversation each)."""
        ops = self._chat_ops(messages_list, model, kwargs, routing_key, priority, lora_path)
        return await self._map(ops, concurrency, return_exceptions, progress, max_retries, timeout)

    @overload
    def async_generate_as_completed(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> AsCompleted[GenerateOutput]: ...

    @overload
    def async_generate_as_completed(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> AsCompleted[GenerateOutput | list[GenerateOutput]]: ...

    @overload
    def async_generate_as_completed(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> AsCompleted[GenerateOutput | Exception]: ...

    @overload
    def async_generate_as_completed(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> AsCompleted[GenerateOutput | list[GenerateOutput] | Exception]: ...

    def async_generate_as_completed(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> AsCompleted[Any]:
        """Like :meth:`async_generate_many`, yielding ``(index, output)`` as they finish.

        ``async with client.async_generate_as_completed(prompts) as results:``
        ``async for i, out in results: ...``
        """
        ops = self._generate_ops(
            prompts,
            input_ids,
            sampling_params,
            return_logprob,
            extra,
            rid,
            routing_key,
            priority,
            lora_path,
        )
        return self._as_completed(ops, concurrency, return_exceptions, max_retries, timeout)

    @overload
    def async_chat_completion_as_completed(
        self,
        messages_list: Sequence[Messages],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsCompleted[ChatCompletion]: ...

    @overload
    def async_chat_completion_as_completed(
        self,
        messages_list: Sequence[Messages],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsCompleted[ChatCompletion | Exception]: ...

    def async_chat_completion_as_completed(
        self,
        messages_list: Sequence[Messages],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsCompleted[Any]:
        """Chat twin of :meth:`async_generate_as_completed`."""
        ops = self._chat_ops(messages_list, model, kwargs, routing_key, priority, lora_path)
        return self._as_completed(ops, concurrency, return_exceptions, max_retries, timeout)

    @overload
    def generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput]: ...

    @overload
    def generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput | list[GenerateOutput]]: ...

    @overload
    def generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput | Exception]: ...

    @overload
    def generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[GenerateOutput | list[GenerateOutput] | Exception]: ...

    def generate_many(
        self,
        prompts: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **extra: Any,
    ) -> list[Any]:
        """Sync :meth:`async_generate_many`, from plain code or a worker thread."""
        ops = self._generate_ops(
            prompts,
            input_ids,
            sampling_params,
            return_logprob,
            extra,
            rid,
            routing_key,
            priority,
            lora_path,
        )
        return self._map_sync(ops, concurrency, return_exceptions, progress, max_retries, timeout)

    @overload
    def chat_completion_many(
        self,
        messages_list: Sequence[Messages],
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
    ) -> list[ChatCompletion]: ...

    @overload
    def chat_completion_many(
        self,
        messages_list: Sequence[Messages],
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
    ) -> list[ChatCompletion | Exception]: ...

    def chat_completion_many(
        self,
        messages_list: Sequence[Messages],
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
        """Sync :meth:`async_chat_completion_many`."""
        ops = self._chat_ops(messages_list, model, kwargs, routing_key, priority, lora_path)
        return self._map_sync(ops, concurrency, return_exceptions, progress, max_retries, timeout)
