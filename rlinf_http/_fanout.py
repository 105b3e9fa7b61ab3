"""Bounded fan-out in completion order (:class:`AsCompleted`), and the fan-out types.

Results in input order (``*_many``) or in completion order (:class:`AsCompleted`).
Every request is built and checked before the first one is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._core.requests import Operation
from ._core.retry import RetryPolicy
from ._errors import InvalidRequestError
from .models import ChatMessage, SamplingParams, SingleSampleParams

if TYPE_CHECKING:
    from ._driver import Driver, TimeoutTypes

__all__ = ["AsCompleted", "Messages", "OneSample", "Progress", "Sampling", "check_concurrency"]

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
        driver: Driver,
        ops: Sequence[Operation[Any]] | Callable[[], Awaitable[Sequence[Operation[Any]]]],
        concurrency: int,
        return_exceptions: bool,
        retry: RetryPolicy,
        timeout: TimeoutTypes,
    ) -> None:
        self._driver = driver
        self._ops = ops
        self._concurrency = concurrency
        self._return_exceptions = return_exceptions
        self._retry = retry
        self._timeout = timeout
        self._tg: anyio.abc.TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[tuple[int, Any, bool]] | None = None

    async def __aenter__(self) -> AsCompleted[R]:
        if callable(self._ops):  # built once the model is known (``model=None``)
            self._ops = await self._ops()
        send, receive = anyio.create_memory_object_stream[tuple[int, Any, bool]](
            max_buffer_size=self._concurrency
        )
        self._receive = receive
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._produce, send)
        return self

    async def _produce(self, send: MemoryObjectSendStream[tuple[int, Any, bool]]) -> None:
        ops = self._ops
        assert not callable(ops)
        indices = iter(range(len(ops)))

        async def worker(
            out: MemoryObjectSendStream[tuple[int, Any, bool]], scope: anyio.CancelScope
        ) -> None:
            # A consumer that left (receive side closed) ends the worker quietly.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async with out:
                    for i in indices:
                        try:
                            result = await self._driver.asend(
                                ops[i], timeout=self._timeout, retry=self._retry
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
            for _ in range(min(self._concurrency, len(ops))):
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
