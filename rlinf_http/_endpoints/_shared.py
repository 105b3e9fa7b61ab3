"""What the sync and async endpoint classes share: argument types and small helpers.

Written once (not generated): nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from .._core.dataplane import prompt_is_token_ids
from .._core.requests import Operation, build_post, check_timeout
from .._core.retry import RetryPolicy
from .._core.streams import StreamMode
from .._driver import NOT_GIVEN, TimeoutTypes
from .._errors import InvalidRequestError, UnprocessableEntityError
from .._fanout import Messages, OneSample, Progress, Sampling

if TYPE_CHECKING:
    from .._driver import Driver

__all__ = [
    "CompletionPrompt",
    "EmbeddingInput",
    "InputIds",
    "Messages",
    "OneSample",
    "Progress",
    "Prompt",
    "Sampling",
    "check_stream_mode",
    "explain_422",
    "post_call",
]

Prompt = str | Sequence[str] | None
InputIds = Sequence[int] | Sequence[Sequence[int]] | None
CompletionPrompt = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]

_SEED_POST_RETRY_STATUSES = frozenset({500, 502, 503, 504})

_TOKEN_IDS_HINT = (
    " (sglang-router 0.3.2 refuses token-id prompts on /v1/completions: send token ids "
    "to a server, or text through the router)"
)


def check_stream_mode(mode: object) -> StreamMode:
    """``stream_mode``, checked."""
    if mode == "auto" or mode == "cumulative" or mode == "incremental":
        return mode
    raise InvalidRequestError(
        f"stream_mode must be 'auto', 'cumulative' or 'incremental', got {mode!r}"
    )


def explain_422(exc: UnprocessableEntityError, prompt: object) -> None:
    """Add the router's token-id refusal to a 422's message, when that is the cause."""
    if prompt_is_token_ids(prompt) and exc.args and _TOKEN_IDS_HINT not in str(exc.args[0]):
        exc.args = (f"{exc.args[0]}{_TOKEN_IDS_HINT}", *exc.args[1:])


def post_call(
    driver: Driver,
    path: str,
    body: Any,
    msgpack: bool,
    timeout_s: float | None,
    max_retries: int,
    retry_backoff_s: float,
) -> tuple[Operation[Any], TimeoutTypes, RetryPolicy]:
    """The operation, timeout and retry policy of ``post`` (the RLinf semantics)."""
    op = build_post(path, body, msgpack=msgpack)
    timeout: TimeoutTypes = NOT_GIVEN
    if timeout_s is not None:
        timeout = httpx.Timeout(
            check_timeout(timeout_s, "timeout_s"), connect=driver.connect_timeout
        )
    if isinstance(retry_backoff_s, bool) or not isinstance(retry_backoff_s, (int, float)):
        raise InvalidRequestError(f"retry_backoff_s must be a number, got {retry_backoff_s!r}")
    policy = RetryPolicy(
        max_retries=max_retries,
        retry_statuses=_SEED_POST_RETRY_STATUSES,
        retry_timeouts=True,  # the RLinf client retried every failure, timeouts too
        backoff="linear",
        initial_delay=float(retry_backoff_s),
        max_delay=float(retry_backoff_s) * (max_retries + 1)
        if isinstance(max_retries, int) and max_retries > 0
        else float(retry_backoff_s),
        jitter=0.0,
        max_retry_after=driver.retry_policy.max_retry_after,
    )
    return op, timeout, policy
