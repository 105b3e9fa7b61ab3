"""``POST /generate``: sglang's native generation API."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from ..._core.dataplane import with_routing_key
from ..._core.fanout import generate_group_op
from ..._core.requests import build_generate
from ..._core.rl_generate import (
    HiddenStatesMode,
    SamplingLogprobsMode,
    no_rl_arguments,
    rl_fields_from,
)
from ..._core.rollout import remembered
from ..._core.streams import GenerateStreamChunk, GenerateStreamParser, StreamMode
from ..._core.targeting import with_target_worker
from ..._driver import NOT_GIVEN, TimeoutTypes
from ..._served import atarget_index
from ..._streaming import AsyncStream
from ...models import GenerateOutput
from .._base import Endpoint
from .._shared import (
    InputIds,
    OneSample,
    Prompt,
    Sampling,
    check_stream_mode,
)

__all__ = ["AsyncGenerate"]


class AsyncGenerate(Endpoint):
    """``/generate``, one prompt or a batch, whole or streamed."""

    __slots__ = ()

    @overload
    async def async_generate(
        self,
        prompt: str,
        input_ids: None = None,
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
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
    ) -> GenerateOutput: ...

    @overload
    async def async_generate(
        self,
        prompt: None = None,
        *,
        input_ids: Sequence[int],
        sampling_params: OneSample = None,
        return_logprob: bool = False,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
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
    ) -> GenerateOutput: ...

    @overload
    async def async_generate(
        self,
        prompt: str | None = None,
        input_ids: Sequence[int] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
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
    ) -> GenerateOutput | list[GenerateOutput]: ...

    @overload
    async def async_generate(
        self,
        prompt: Prompt = None,
        input_ids: InputIds = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[True],
        stream_mode: StreamMode = "auto",
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
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
    ) -> AsyncStream[GenerateStreamChunk]: ...

    @overload
    async def async_generate(
        self,
        prompt: Sequence[str] | None = None,
        input_ids: Sequence[Sequence[int]] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
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

    async def async_generate(
        self,
        prompt: Prompt = None,
        input_ids: InputIds = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        *,
        stream: bool = False,
        stream_mode: StreamMode = "auto",
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | Sequence[str] | None = None,
        routing_key: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | Sequence[str | None] | None = None,
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
    ) -> GenerateOutput | list[GenerateOutput] | AsyncStream[GenerateStreamChunk]:
        """``POST /generate`` (sglang's native API).

        Give exactly one of ``prompt`` (a string, or a list of strings for a batch)
        or ``input_ids`` (a list of token ids, or a list of lists for a batch).
        Extra keyword arguments are sent as top-level fields
        (``top_logprobs_num``, ``logprob_start_len``...); a sampling parameter
        given as a keyword raises :class:`~rlinf_http.InvalidRequestError` (it
        belongs in ``sampling_params``). ``rid`` is the request id (generated
        when absent, so the request can be aborted; for a batch a prefix or one
        per prompt); ``routing_key`` is sent as ``X-SMG-Routing-Key``;
        ``target_worker`` (a worker index or URL) pins the call to one worker
        where the gateway allows it (smg under ``consistent_hashing``);
        ``priority`` and ``lora_path`` (a loaded adapter's name) are typed
        fields. A batch, or ``n > 1`` samples,
        returns a list in input order (prompt-major). The sglang router refuses
        text batches (HTTP 422; 0.3.2 passes 2-D ``input_ids`` and ``n > 1``):
        send batches to a server, or use :meth:`generate_many` to fan single
        prompts out.

        What RL reads from a generation (sglang 0.5.23 ``GenerateReqInput``;
        ``None`` leaves a field out; checked before sending):
        ``return_routed_experts`` (MoE routing replay: ``meta_info.routed_experts``,
        base64 int32, decoded by ``out.routed_expert_ids()``) from
        ``routed_experts_start_len``; ``return_hidden_states`` (``True`` or
        ``"last"``: ``meta_info.hidden_states``); ``return_sampling_mask`` with
        ``sampling_logprobs_mode`` (``"selected"`` / ``"support"``: behaviour
        logprobs in ``meta_info.output_token_sampling_*``);
        ``scheduler_routing_key`` (the body ``routing_key`` that sglang's
        ``--schedule-policy routing-key`` groups by, inside one server -- not the
        gateway header ``routing_key=``); ``routed_dp_rank``; ``session_params``
        (``{"id", "rid", "offset", "replace", "drop_previous_output"}``);
        ``cache_salt`` (one per prompt for a batch); ``max_thinking_tokens``;
        ``custom_logit_processor`` (``CustomLogitProcessor.to_str()`` or the
        class). ``return_entropy`` is not a keyword: sglang 0.5.23 accepts it and
        sends nothing back (pass it in ``extra`` for a server that does).
        sglang-router 0.3.2 drops ``return_routed_experts``, ``routing_key``,
        ``cache_salt``, ``return_sampling_mask`` and ``max_thinking_tokens``; smg
        1.13 forwards them. The typed ``meta_info`` fields (``weight_versions``,
        ``num_retractions``, ``output_token_ids_logprobs``,
        ``cached_tokens_details``) are on :class:`~rlinf_http.MetaInfo`.

        With ``stream=True`` it returns a :class:`Stream` of
        :class:`GenerateStreamChunk` (``chunk.text`` so far, ``chunk.delta``
        new), whether the server streams cumulatively (the default) or
        incrementally; ``stream_mode`` fixes the mode instead of detecting it.
        Retries happen only before the stream's first byte.
        """
        # Not locals() on every request: the dict it builds stays on this frame while
        # the request is in flight (one more object for the garbage collector to
        # scan per parked request). tests/rl/test_rl_fields_hot_path.py pins the names.
        if no_rl_arguments(
            (
                return_routed_experts,
                routed_experts_start_len,
                return_hidden_states,
                return_sampling_mask,
                sampling_logprobs_mode,
                scheduler_routing_key,
                routed_dp_rank,
                session_params,
                cache_salt,
                max_thinking_tokens,
                custom_logit_processor,
            )
        ):
            rl = {}
        else:
            rl = rl_fields_from(locals(), batch=True)
        op = with_routing_key(
            build_generate(
                prompt,
                input_ids,
                sampling_params,
                return_logprob,
                extra,
                stream=stream,
                rid=rid,
                priority=priority,
                lora_path=lora_path,
                rl_fields=rl,
            ),
            routing_key,
        )
        if target_worker is not None:  # smg's worker index (see the guide)
            op = with_target_worker(op, await atarget_index(self._driver, target_worker, False))
        if stream:
            mode = check_stream_mode(stream_mode)
            parser = functools.partial(GenerateStreamParser, mode)
            return await self._driver.astream(op, parser, timeout, self._driver.policy(max_retries))
        result = await self._driver.asend(
            op, timeout=timeout, retry=self._driver.policy(max_retries)
        )
        return remembered(result, op)  # an aborted result can be resumed

    async def async_generate_group(
        self,
        prompt: str | None = None,
        *,
        n: int,
        input_ids: Sequence[int] | None = None,
        sampling_params: Sampling = None,
        return_logprob: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
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
    ) -> list[GenerateOutput]:
        """``n`` samples of one prompt (a GRPO group), always as a list of ``n`` outputs.

        One ``/generate`` request with ``n`` in its ``sampling_params`` (the sglang
        router passes ``n > 1`` through), so the group shares the prompt's prefix
        cache. ``sampling_params`` may not set another ``n``. Give ``prompt`` or
        ``input_ids`` (one list of token ids); other arguments (the RL fields
        too) as in :meth:`async_generate`. For many prompts use :meth:`async_generate_groups`.
        """
        rl = rl_fields_from(locals())
        op = generate_group_op(
            prompt,
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
            op = with_target_worker(op, await atarget_index(self._driver, target_worker, False))
        return await self._driver.asend(op, timeout=timeout, retry=self._driver.policy(max_retries))
