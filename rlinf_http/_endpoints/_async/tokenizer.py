"""``POST /v1/tokenize`` and ``/v1/detokenize``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._core.dataplane import (
    build_detokenize,
    build_tokenize,
    with_routing_key,
)
from ..._driver import NOT_GIVEN, TimeoutTypes
from ...models import (
    DetokenizeResult,
    TokenizeResult,
)
from .._base import Endpoint

__all__ = ["AsyncTokenizer"]


class AsyncTokenizer(Endpoint):
    """Tokenize and detokenize."""

    __slots__ = ()

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
        """``POST /v1/tokenize``: token ids of a prompt (one list per prompt for a list).

        Through a router the router's own tokenizer answers, and ``model`` must
        name it (the worker's served model name); a router without one answers
        400, raised as :class:`~rlinf_http.BadRequestError` with its message.
        """
        op = build_tokenize(prompt, model, add_special_tokens, kwargs)
        return await self._driver.asend(
            with_routing_key(op, routing_key),
            timeout=timeout,
            retry=self._driver.policy(max_retries),
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
        """``POST /v1/detokenize``: text of token ids (a list of texts for id lists)."""
        op = build_detokenize(tokens, model, skip_special_tokens, kwargs)
        return await self._driver.asend(
            with_routing_key(op, routing_key),
            timeout=timeout,
            retry=self._driver.policy(max_retries),
        )
