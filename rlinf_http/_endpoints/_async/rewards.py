"""Reward models and ranking: ``/classify``, ``/v1/score`` and ``/v1/rerank`` (sglang 0.5.23).

A reward model served by sglang (a sequence-classification model) answers
``/classify``; ``/v1/score`` scores items with a causal LM's label-token
probabilities; ``/v1/rerank`` orders documents by relevance. Which gateway
forwards which is in the guide's "Reward models" section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

from ..._core.dataplane import steering_fields, with_routing_key
from ..._core.rewards import build_classify, build_rerank, build_score
from ..._driver import NOT_GIVEN, TimeoutTypes
from ...models import ClassifyOutput, RerankResult, ScoreResult
from .._base import Endpoint

__all__ = ["AsyncRewards"]


class AsyncRewards(Endpoint):
    """Reward scores, label scores and reranking."""

    __slots__ = ()

    @overload
    async def async_classify(
        self,
        text: str,
        *,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ClassifyOutput: ...

    @overload
    async def async_classify(
        self,
        text: None = None,
        *,
        input_ids: Sequence[int],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ClassifyOutput: ...

    @overload
    async def async_classify(
        self,
        text: Sequence[str] | None = None,
        *,
        input_ids: Sequence[Sequence[int]] | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> list[ClassifyOutput]: ...

    async def async_classify(
        self,
        text: str | Sequence[str] | None = None,
        *,
        input_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        rid: str | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> ClassifyOutput | list[ClassifyOutput]:
        """``POST /classify`` ``{"text" | "input_ids", "rid"?, "priority"?, "lora_path"?}``:
        a reward model's scores.

        One text (or id list) returns a :class:`ClassifyOutput` (``{"embedding":
        [scores], "meta_info"}``; ``.score`` is the first, a scalar reward
        model's reward); a list returns a list in input order. For a chat
        reward model, render the conversation with its template first. The
        gateways do not forward ``/classify``: call a server (or, through
        sglang-router, the OpenAI-style ``/v1/classify`` with :meth:`post`).
        """
        fields = steering_fields(kwargs, priority=priority, lora_path=lora_path, rid=rid)
        op = with_routing_key(build_classify(text, input_ids, fields), routing_key)
        return await self._driver.asend(op, timeout=timeout, retry=self._driver.policy(max_retries))

    async def async_score(
        self,
        query: str | Sequence[int],
        items: str | Sequence[str] | Sequence[Sequence[int]],
        *,
        label_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        apply_softmax: bool = False,
        item_first: bool = False,
        temperature: float = 1.0,
        return_token_logprobs: bool = False,
        return_pooled_hidden_states: bool = False,
        score_extraction_token: str | None = None,
        model: str | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> ScoreResult:
        """``POST /v1/score`` ``{"query", "items", "label_token_ids", "apply_softmax",
        "item_first", "temperature", ...}``: ``scores[i]`` for ``items[i]`` given ``query``.

        A text query goes with text items, token ids with id lists. A causal LM
        scores the next-token probabilities of ``label_token_ids`` (shared, or
        one list per item; ``apply_softmax`` normalises over the labels); a
        classifier returns its logits. Answers ``{"scores", "model", "usage",
        "object": "scoring"}``.
        """
        op = build_score(
            query,
            items,
            label_token_ids=label_token_ids,
            apply_softmax=apply_softmax,
            item_first=item_first,
            temperature=temperature,
            return_token_logprobs=return_token_logprobs,
            return_pooled_hidden_states=return_pooled_hidden_states,
            score_extraction_token=score_extraction_token,
            model=model,
            kwargs=kwargs,
        )
        op = with_routing_key(op, routing_key)
        return await self._driver.asend(op, timeout=timeout, retry=self._driver.policy(max_retries))

    async def async_rerank(
        self,
        query: str | Sequence[Mapping[str, Any]],
        documents: Sequence[str | Sequence[Mapping[str, Any]]],
        *,
        top_n: int | None = None,
        return_documents: bool = True,
        instruct: str | None = None,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> list[RerankResult]:
        """``POST /v1/rerank`` ``{"query", "documents", "top_n"?, "return_documents",
        "instruct"?}``: the documents scored against ``query``, best first.

        Each :class:`RerankResult` has ``score``, ``index`` (the position in
        ``documents``) and, with ``return_documents``, ``document``. ``top_n``
        keeps the best ones. sglang answers a JSON array; a gateway that
        re-wraps it as ``{"results": [...]}`` gives the same list here (and
        sglang-router 0.3.2 drops ``top_n``: the list is cut here as well).
        """
        op = with_routing_key(
            build_rerank(
                query,
                documents,
                top_n=top_n,
                return_documents=return_documents,
                instruct=instruct,
                kwargs=kwargs,
            ),
            routing_key,
        )
        results = await self._driver.asend(
            op, timeout=timeout, retry=self._driver.policy(max_retries)
        )
        return results if top_n is None else results[:top_n]
