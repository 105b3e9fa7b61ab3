"""``POST /v1/tokenize`` and ``/v1/detokenize``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._core.dataplane import (
    build_detokenize,
    build_tokenize,
    with_routing_key,
)
from ..._core.requests import Operation
from ..._core.responses import explain_tokenizer_error
from ..._driver import NOT_GIVEN, TimeoutTypes
from ..._errors import BadRequestError
from ..._served import asend_model
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

        Without ``model`` the client sends the one model ``GET /v1/models``
        lists. Through a gateway (smg, sglang-router) the gateway's own
        tokenizer registry answers, not a worker; a gateway without a tokenizer
        answers 400, raised as :class:`~rlinf_http.BadRequestError` with its
        message and what to do (``code`` ``"tokenizer_not_found"``).
        """

        def build(name: str) -> Operation[TokenizeResult]:
            op = build_tokenize(prompt, name, add_special_tokens, kwargs)
            return with_routing_key(op, routing_key)

        try:
            return await asend_model(
                self._driver, model, self._driver.policy(max_retries), build, timeout
            )
        except BadRequestError as exc:
            explain_tokenizer_error(exc)
            raise

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
        """``POST /v1/detokenize``: text of token ids (a list of texts for id lists).

        ``model`` and the gateway's tokenizer registry as in :meth:`tokenize`.
        """

        def build(name: str) -> Operation[DetokenizeResult]:
            op = build_detokenize(tokens, name, skip_special_tokens, kwargs)
            return with_routing_key(op, routing_key)

        try:
            return await asend_model(
                self._driver, model, self._driver.policy(max_retries), build, timeout
            )
        except BadRequestError as exc:
            explain_tokenizer_error(exc)
            raise
