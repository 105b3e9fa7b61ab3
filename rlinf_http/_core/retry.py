"""The one retry policy: which failures are retried and how long to wait (no I/O).

A :class:`RetryPolicy` is an immutable value. The facades ask it, after each
attempt, for the delay before the next one (``None``: do not retry) and do the
sleeping themselves; the decision and the arithmetic live only here.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from .._errors import InvalidRequestError

__all__ = ["DEFAULT_RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]

#: Statuses retried by default: timeouts, throttling and transient server errors.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait as the server asked, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Returns ``None``
    when absent, unparsable, negative or not finite.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        try:
            value = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        except (ValueError, OverflowError, OSError):
            return None
        value = max(value, 0.0)
    if not math.isfinite(value) or value < 0:
        return None
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry a request and how long to wait.

    Attributes:
        max_retries: retries after the first attempt (``0`` = never retry).
        retry_statuses: response statuses that are retried.
        retry_connection_errors: retry connection failures that happen before any
            response arrives (refused or timed-out connects, connections reset or
            closed before the response).
        retry_timeouts: also retry read, write and pool timeouts (off by default:
            the server may still be working on the request; ``post`` turns it on,
            as the RLinf client retried every failure).
        backoff: ``"exponential"`` (``initial_delay * 2**n``) or ``"linear"``
            (``initial_delay * (n + 1)``, the RLinf ``post`` semantics).
        initial_delay: the first delay in seconds.
        max_delay: the cap on a computed delay.
        jitter: a computed delay is multiplied by ``1 - jitter * U[0, 1)``.
        max_retry_after: a server's ``Retry-After`` is honoured up to this many
            seconds (longer requests wait this long).
    """

    max_retries: int = 2
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_connection_errors: bool = True
    retry_timeouts: bool = False
    backoff: Literal["exponential", "linear"] = "exponential"
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidRequestError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise InvalidRequestError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise InvalidRequestError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise InvalidRequestError(f"jitter must be within [0, 1], got {self.jitter!r}")
        if self.backoff not in ("exponential", "linear"):
            raise InvalidRequestError(
                f"backoff must be 'exponential' or 'linear': {self.backoff!r}"
            )

    def with_max_retries(self, max_retries: int | None) -> RetryPolicy:
        """This policy with another ``max_retries`` (``None`` keeps it)."""
        if max_retries is None or max_retries == self.max_retries:
            return self
        return replace(self, max_retries=max_retries)

    def backoff_delay(self, retries_taken: int, rand: Callable[[], float] = random.random) -> float:
        """The computed (not server-directed) delay before retry ``retries_taken + 1``."""
        if self.backoff == "linear":
            base = self.initial_delay * (min(retries_taken, 2**40) + 1)
        else:
            base = self.initial_delay * (2.0 ** min(retries_taken, 64))
        base = min(base, self.max_delay)
        return base * (1.0 - self.jitter * rand())

    def delay_after_status(
        self,
        retries_taken: int,
        status_code: int,
        headers: Mapping[str, str],
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retrying a response with ``status_code``, or ``None``."""
        if retries_taken >= self.max_retries or status_code not in self.retry_statuses:
            return None
        retry_after = parse_retry_after(headers)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff_delay(retries_taken, rand)

    def delay_after_connection_error(
        self, retries_taken: int, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retrying after a failure with no response, or ``None``."""
        if retries_taken >= self.max_retries or not self.retry_connection_errors:
            return None
        return self.backoff_delay(retries_taken, rand)
