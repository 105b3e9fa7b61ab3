"""Partial rollouts: resume a generation that was aborted, keeping what it generated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, overload

from ..._core.rollout import continuation, continuations
from ..._driver import NOT_GIVEN, TimeoutTypes
from ...models import GenerateOutput
from .._base import Endpoint
from .._shared import Progress

__all__ = ["AsyncRollout"]


class AsyncRollout(Endpoint):
    """``resume``: finish aborted generations (``FinishAbort``) on the current weights."""

    __slots__ = ()

    async def async_resume(
        self,
        result: GenerateOutput,
        *,
        rid: str | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
    ) -> GenerateOutput:
        """Finish a generation that was aborted, keeping the tokens it already has.

        ``result`` is what :meth:`generate` (or ``generate_many``,
        ``generate_group(s)``) returned; it remembers its request. When its
        ``finish_reason`` is a :class:`~rlinf_http.FinishAbort`, one
        ``/generate`` is sent: the prompt's ``input_ids`` followed by the
        output ids so far (a text prompt: the prompt text followed by the text
        so far, re-tokenized by the server), ``max_new_tokens`` (sglang's 128
        when unset) and ``min_new_tokens`` reduced by what was generated, the
        other sampling parameters and fields as sent, one sample, the same
        routing key and a fresh ``rid`` (or ``rid``). The answer is merged with
        ``result`` into one result shaped as a single generation: ``text``,
        ``output_ids``, per-token logprobs joined; ``meta_info.weight_versions``
        spans offset, so :meth:`~rlinf_http.MetaInfo.weight_version_mix` shows
        which tokens each weight version produced; ``rid`` is the last piece's.

        A result that did not abort is returned as it is (so a whole batch can
        be passed through). An aborted result whose tokens already reach
        ``max_new_tokens`` is returned finished (``FinishLength``) without a
        request. If the continuation is aborted too, the merged result is
        aborted again and can be resumed again. Raises
        :class:`~rlinf_http.InvalidRequestError` (before any I/O) for a result
        that does not remember its request (a stream chunk, a rebuilt model).
        """
        step = continuation(result, rid)
        if isinstance(step, GenerateOutput):
            return step
        return await self._driver.asend(
            step, timeout=timeout, retry=self._driver.policy(max_retries)
        )

    @overload
    async def async_resume_many(
        self,
        results: Sequence[GenerateOutput],
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
    ) -> list[GenerateOutput]: ...

    @overload
    async def async_resume_many(
        self,
        results: Sequence[GenerateOutput],
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
    ) -> list[GenerateOutput | Exception]: ...

    async def async_resume_many(
        self,
        results: Sequence[GenerateOutput],
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
    ) -> list[Any]:
        """:meth:`resume` for a batch, at most ``concurrency`` requests in flight.

        Returns one result per input, in input order: finished results as
        they are, aborted ones resumed and merged. Every result is checked
        before the first request is sent. On the first error the other
        requests are cancelled and the error raised, unless
        ``return_exceptions=True`` (the exception takes the slot).
        ``progress(done, total)`` counts the requests sent (the aborted results).
        """
        final, positions, ops = continuations(results)
        out: list[Any] = list(final)
        if ops:
            sent = await self._driver.amap(
                ops, concurrency, return_exceptions, progress, max_retries, timeout
            )
            for i, value in zip(positions, sent, strict=True):
                out[i] = value
        return out
