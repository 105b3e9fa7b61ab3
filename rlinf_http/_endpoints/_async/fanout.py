"""Bounded fan-out: many requests, at most ``concurrency`` in flight.

Results in input order (``*_many``) or, async only, in completion order
(``*_as_completed``). Every request is built and checked before the first is sent.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from ... import _served
from ..._core.fanout import (
    chat_ops,
    completion_ops,
    generate_group_ops,
    generate_ops,
)
from ..._core.requests import Operation
from ..._core.rl_generate import HiddenStatesMode, SamplingLogprobsMode, rl_fields_from
from ..._core.targeting import pin_ops
from ..._driver import NOT_GIVEN, TimeoutTypes

# unasync: async-only
from ..._fanout import AsCompleted

# unasync: end
from ...models import (
    ChatCompletion,
    Completion,
    GenerateOutput,
)
from .._base import Endpoint
from .._shared import (
    CompletionPrompt,
    Messages,
    OneSample,
    Progress,
    Sampling,
)

__all__ = ["AsyncFanOut"]


class AsyncFanOut(Endpoint):
    """The ``*_many`` (and async ``*_as_completed``) calls."""

    __slots__ = ()

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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
        **extra: Any,
    ) -> list[Any]:
        """Generate for many prompts, at most ``concurrency`` in flight (asyncio or trio).

        Each prompt is its own ``/generate`` request (the router refuses
        batches). Returns the outputs in input order. On the first error the
        remaining requests are cancelled and the error is raised, unless
        ``return_exceptions=True``, which puts each failure's exception in its
        slot instead. ``progress(done, total)`` is called after each request.
        Every argument is checked before the first request is sent. The RL
        fields (``return_routed_experts``...) are as in :meth:`async_generate`,
        one value for every request.
        """
        rl = rl_fields_from(locals())
        ops = generate_ops(
            prompts,
            input_ids,
            sampling_params,
            return_logprob,
            {**extra, **rl},
            rid,
            routing_key,
            priority,
            lora_path,
        )
        if target_worker is not None:  # every request to one worker (see the guide)
            ops = pin_ops(ops, await _served.atarget_index(self._driver, target_worker, False))
        return await self._driver.amap(
            ops, concurrency, return_exceptions, progress, max_retries, timeout
        )

    @overload
    async def async_chat_completion_many(
        self,
        messages_list: Sequence[Messages],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[ChatCompletion]: ...

    @overload
    async def async_chat_completion_many(
        self,
        messages_list: Sequence[Messages],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[ChatCompletion | Exception]: ...

    async def async_chat_completion_many(
        self,
        messages_list: Sequence[Messages],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """:meth:`async_generate_many` for chat completions (one conversation each).

        ``rid``: a prefix (request ``i`` gets ``<rid>_<i>``) or one id per
        conversation; sent only when given. Without ``model`` the served model is
        sent (``GET /v1/models``, read once per client); a ``model_not_found``
        answer refreshes that list for the next call, and a fan-out is never sent
        twice.
        """

        def make(name: str, target: int | None) -> list[Operation[Any]]:
            return pin_ops(
                chat_ops(messages_list, name, kwargs, routing_key, priority, lora_path, rid),
                target,
            )

        if isinstance(target_worker, str):  # the arguments are checked before GET /workers
            make(model or _served.PROBE_MODEL, None)
        target = (
            target_worker
            if target_worker is None or type(target_worker) is int
            else await _served.atarget_index(self._driver, target_worker, True)
        )
        build = functools.partial(make, target=target)

        results: list[Any] = await _served.awith_model(
            self._driver,
            model,
            self._driver.policy(max_retries),
            build,
            lambda ops, _: self._driver.amap(
                ops, concurrency, return_exceptions, progress, max_retries, timeout
            ),
            resend=False,
        )
        return results

    @overload
    async def async_completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Completion]: ...

    @overload
    async def async_completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Completion | Exception]: ...

    async def async_completion_many(
        self,
        prompts: Sequence[CompletionPrompt],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """One ``/v1/completions`` request per prompt, at most ``concurrency`` in flight.

        Results are in input order; the first error cancels the rest unless
        ``return_exceptions=True``. ``routing_key`` is one key for all, or one
        per prompt. Every argument is checked before the first request is sent.
        ``rid``: a prefix (``<rid>_<i>``) or one id per prompt; sent only when given.
        ``model`` as in :meth:`async_chat_completion_many`.
        """

        def make(name: str, target: int | None) -> list[Operation[Any]]:
            return pin_ops(
                completion_ops(prompts, name, kwargs, routing_key, priority, lora_path, rid),
                target,
            )

        if isinstance(target_worker, str):  # the arguments are checked before GET /workers
            make(model or _served.PROBE_MODEL, None)
        target = (
            target_worker
            if target_worker is None or type(target_worker) is int
            else await _served.atarget_index(self._driver, target_worker, True)
        )
        build = functools.partial(make, target=target)

        results: list[Any] = await _served.awith_model(
            self._driver,
            model,
            self._driver.policy(max_retries),
            build,
            lambda ops, _: self._driver.amap(
                ops, concurrency, return_exceptions, progress, max_retries, timeout
            ),
            resend=False,
        )
        return results

    async def async_generate_groups(
        self,
        prompts: Sequence[str] | None = None,
        *,
        n: int,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        concurrency: int = 256,
        progress: Progress | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
        **extra: Any,
    ) -> list[list[GenerateOutput]]:
        """A group of ``n`` samples per prompt (GRPO): ``result[i]`` holds prompt ``i``'s.

        One :meth:`async_generate_group` request per prompt (the router refuses
        text batches), at most ``concurrency`` in flight, in input order; the
        first error cancels the rest and is raised. ``progress(done, total)``
        counts prompts. Every argument is checked before the first request is sent.
        """
        rl = rl_fields_from(locals())
        ops = generate_group_ops(
            prompts,
            input_ids,
            n,
            sampling_params,
            return_logprob,
            {**extra, **rl},
            routing_key,
            priority,
            lora_path,
        )
        if target_worker is not None:
            ops = pin_ops(ops, await _served.atarget_index(self._driver, target_worker, False))
        return await self._driver.amap(ops, concurrency, False, progress, max_retries, timeout)

    # unasync: async-only
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
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
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        return_routed_experts: bool | None = None,
        routed_experts_start_len: int | None = None,
        return_hidden_states: HiddenStatesMode | None = None,
        return_sampling_mask: bool | None = None,
        sampling_logprobs_mode: SamplingLogprobsMode | None = None,
        scheduler_routing_key: str | None = None,
        routed_dp_rank: int | None = None,
        session_params: Mapping[str, Any] | None = None,
        cache_salt: str | Sequence[str] | None = None,
        max_thinking_tokens: int | None = None,
        custom_logit_processor: Any = None,
        **extra: Any,
    ) -> AsCompleted[Any]:
        """Like :meth:`async_generate_many`, yielding ``(index, output)`` as they finish.

        ``async with client.async_generate_as_completed(prompts) as results:``
        ``async for i, out in results: ...``
        """
        rl = rl_fields_from(locals())
        ops = generate_ops(
            prompts,
            input_ids,
            sampling_params,
            return_logprob,
            {**extra, **rl},
            rid,
            routing_key,
            priority,
            lora_path,
        )
        if isinstance(target_worker, str):  # a URL: read its index when the block is entered
            url = target_worker

            async def pinned() -> Sequence[Operation[Any]]:
                return pin_ops(ops, await _served.atarget_index(self._driver, url, False))

            return self._driver.as_completed(
                pinned, concurrency, return_exceptions, max_retries, timeout
            )
        ops = pin_ops(ops, target_worker)
        return self._driver.as_completed(ops, concurrency, return_exceptions, max_retries, timeout)

    @overload
    def async_chat_completion_as_completed(
        self,
        messages_list: Sequence[Messages],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsCompleted[ChatCompletion]: ...

    @overload
    def async_chat_completion_as_completed(
        self,
        messages_list: Sequence[Messages],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: bool,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsCompleted[ChatCompletion | Exception]: ...

    def async_chat_completion_as_completed(
        self,
        messages_list: Sequence[Messages],
        model: str | None = None,
        *,
        concurrency: int = 256,
        return_exceptions: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | Sequence[str] | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> AsCompleted[Any]:
        """Chat twin of :meth:`async_generate_as_completed` (``model`` and a
        ``target_worker`` URL as in :meth:`async_chat_completion_many`; read
        when the block is entered)."""

        def build(name: str, index: int | None) -> list[Operation[Any]]:
            ops = chat_ops(messages_list, name, kwargs, routing_key, priority, lora_path, rid)
            return pin_ops(ops, index)

        target = _served.check_target_worker(target_worker)
        if model is not None and not isinstance(target, str):
            return self._driver.as_completed(
                build(model, target), concurrency, return_exceptions, max_retries, timeout
            )
        build(model or _served.PROBE_MODEL, None)  # bad arguments raise here, before any I/O

        async def resolved() -> list[Operation[Any]]:
            index = await _served.atarget_index(self._driver, target, True)
            return build(await _served.aresolve_model(self._driver, model), index)

        return self._driver.as_completed(
            resolved, concurrency, return_exceptions, max_retries, timeout
        )

    # unasync: end
