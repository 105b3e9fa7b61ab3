"""The generic ``post`` of the RLinf client."""

from __future__ import annotations

from typing import Any

from .._base import Endpoint
from .._shared import post_call

__all__ = ["AsyncPost"]


class AsyncPost(Endpoint):
    """``post(path, body)`` with RLinf's semantics."""

    __slots__ = ()

    async def async_post(
        self,
        path: str,
        body: Any,
        *,
        msgpack: bool = False,
        timeout_s: float | None = None,
        max_retries: int = 0,
        retry_backoff_s: float = 0.0,
    ) -> Any:
        """``POST <base_url><path>`` and return the decoded body (the RLinf signature).

        Args:
            path: the path below the base URL (``"/v1/actions/generations"``).
            body: JSON-serialisable data, or with ``msgpack=True`` anything the
                sglang numpy codec packs (numpy arrays; torch tensors are converted).
            msgpack: send and expect ``application/msgpack`` (needs the
                ``rlinf-http[msgpack]`` extra).
            timeout_s: bound on each request's read, write and pool wait (connect
                stays bounded by ``connect_timeout``); ``None`` waits forever.
            max_retries: retries on connection failures, timeouts and 500/502/503/504.
            retry_backoff_s: linear backoff: waits ``retry_backoff_s * (n + 1)``
                before retry ``n + 1`` (a ``Retry-After`` header wins).

        A non-2xx answer raises an :class:`~rlinf_http.APIStatusError` subclass,
        a ``RuntimeError`` whose message reads ``POST <url> failed: status=...,
        body=...`` as the RLinf client's did. An empty 2xx body returns ``None``.
        """
        op, timeout, policy = post_call(
            self._driver, path, body, msgpack, timeout_s, max_retries, retry_backoff_s
        )
        return await self._driver.asend(op, timeout=timeout, retry=policy)
