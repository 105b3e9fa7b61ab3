"""``POST /v1/embeddings`` and ``POST /encode``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ... import _served
from ..._core.fanout import (
    embed_op,
    encode_op,
)
from ..._core.requests import Operation
from ..._core.targeting import with_target_worker
from ..._driver import NOT_GIVEN, TimeoutTypes
from ..._served import asend_model
from ...models import (
    EmbeddingResponse,
    EncodeOutput,
)
from .._base import Endpoint
from .._shared import EmbeddingInput

if TYPE_CHECKING:  # numpy is optional
    import numpy as np
    import numpy.typing as npt

__all__ = ["AsyncEmbeddings"]


class AsyncEmbeddings(Endpoint):
    """Embeddings (OpenAI) and ``/encode`` (sglang)."""

    __slots__ = ()

    @overload
    async def async_embed(
        self,
        input: EmbeddingInput,
        model: str | None = None,
        *,
        as_numpy: Literal[False] = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse: ...

    @overload
    async def async_embed(
        self,
        input: EmbeddingInput,
        model: str | None = None,
        *,
        as_numpy: Literal[True],
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> npt.NDArray[np.float32]: ...

    async def async_embed(
        self,
        input: EmbeddingInput,
        model: str | None = None,
        *,
        as_numpy: bool = False,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse | npt.NDArray[np.float32]:
        """``POST /v1/embeddings``: one vector per input (a string, strings or token ids).

        Returns an :class:`EmbeddingResponse` (``.vectors``: lists of floats in
        input order), or with ``as_numpy=True`` a ``(len(input), dim)`` float32
        array (needs numpy). ``kwargs``: ``dimensions``, ``encoding_format``...
        ``rid`` (sglang's request id) is sent only when given: the response ``id`` is
        then ``rid``, and ``abort_request(rid)`` can stop it (``generate`` makes one
        up when absent; these calls leave it to the server). Without ``model`` the
        client sends the one model ``GET /v1/models`` lists. ``target_worker`` as in
        :meth:`async_chat_completion`.
        """

        def make(name: str, target: int | None) -> Operation[EmbeddingResponse]:
            op = embed_op(input, name, kwargs, routing_key, priority, lora_path, rid)
            return with_target_worker(op, target)

        if isinstance(target_worker, str):  # the arguments are checked before GET /workers
            make(model or _served.PROBE_MODEL, None)
        target = (
            target_worker
            if target_worker is None or type(target_worker) is int
            else await _served.atarget_index(self._driver, target_worker, True)
        )
        build = functools.partial(make, target=target)

        out = await asend_model(
            self._driver, model, self._driver.policy(max_retries), build, timeout
        )
        return out.as_numpy() if as_numpy else out

    @overload
    async def async_encode(
        self,
        text: str,
        *,
        timeout: TimeoutTypes = NOT_GIVEN,
        max_retries: int | None = None,
        routing_key: str | None = None,
        rid: str | None = None,
        target_worker: int | str | None = None,
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
        rid: str | None = None,
        target_worker: int | str | None = None,
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
        rid: str | None = None,
        target_worker: int | str | None = None,
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
        rid: str | None = None,
        target_worker: int | str | None = None,
        priority: int | None = None,
        lora_path: str | None = None,
        **kwargs: Any,
    ) -> EncodeOutput | list[EncodeOutput]:
        """``POST /encode``, sglang's native embedding call (a server; the router 404s).

        One text (or id list) returns an :class:`EncodeOutput`; a list returns
        a list in input order. ``target_worker`` as in
        :meth:`async_chat_completion` (``/encode`` is not routed by model).
        """
        op = encode_op(text, input_ids, kwargs, routing_key, priority, lora_path, rid)
        if target_worker is not None:
            index = await _served.atarget_index(self._driver, target_worker, False)
            op = with_target_worker(op, index)
        return await self._driver.asend(op, timeout=timeout, retry=self._driver.policy(max_retries))
