"""``ClientOptions``: a client's settings as one frozen, checked value.

A client is built from its options; :meth:`InferenceHTTPClient.copy` and the
fleet's worker clients are built from a copy of them with a few fields changed.
Checks run here, so a bad value raises :class:`~rlinf_http.InvalidRequestError`
before any I/O, whether it came from the constructor, ``copy()`` or a fleet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from ._core.requests import check_timeout, default_headers, normalize_base_url
from ._core.retry import RetryPolicy
from ._errors import InvalidRequestError

__all__ = ["ClientOptions", "TransportChoice"]

TransportChoice = Literal["auto", "rlinf", "httpx"]


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """Everything an :class:`~rlinf_http.InferenceHTTPClient` is built from.

    ``headers`` are the caller's extra headers (the client adds its own
    ``user-agent``/``accept`` and, from ``api_key``, ``authorization``).
    ``retry_policy`` already carries ``max_retries``.
    """

    base_url: str
    connect_timeout: float | None = 10.0
    max_connections: int = 16384
    headers: tuple[tuple[str, str], ...] = ()
    api_key: str | None = None
    http_client: httpx.Client | None = None
    async_http_client: httpx.AsyncClient | None = None
    retry_policy: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    health_timeout: float = 5.0
    transport: TransportChoice = "auto"
    log_bodies: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "base_url", normalize_base_url(self.base_url))
        set_(self, "connect_timeout", check_timeout(self.connect_timeout, "connect_timeout"))
        max_connections = self.max_connections
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidRequestError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise InvalidRequestError(f"max_connections must be >= 1, got {max_connections}")
        if self.http_client is not None and not isinstance(self.http_client, httpx.Client):
            raise InvalidRequestError("http_client must be an httpx.Client")
        if self.async_http_client is not None and not isinstance(
            self.async_http_client, httpx.AsyncClient
        ):
            raise InvalidRequestError("async_http_client must be an httpx.AsyncClient")
        if self.transport not in ("auto", "rlinf", "httpx"):
            raise InvalidRequestError(
                f"transport must be 'auto', 'rlinf' or 'httpx', got {self.transport!r}"
            )
        if not isinstance(self.retry_policy, RetryPolicy):
            raise InvalidRequestError(
                f"retry_policy must be a RetryPolicy, got {self.retry_policy!r}"
            )
        bound = check_timeout(self.health_timeout, "health_timeout", allow_none=False)
        assert bound is not None
        set_(self, "health_timeout", bound)
        if isinstance(self.headers, Mapping):
            set_(self, "headers", tuple(self.headers.items()))
        default_headers(self.api_key, dict(self.headers))  # checks names, values, api_key

    @classmethod
    def build(
        cls,
        base_url: str,
        *,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
        **fields: Any,
    ) -> ClientOptions:
        """The options of ``InferenceHTTPClient(base_url, ...)`` (its keyword names)."""
        if headers is not None and not isinstance(headers, Mapping):
            raise InvalidRequestError(f"headers must be a mapping, got {headers!r}")
        policy = (retry_policy or RetryPolicy()).with_max_retries(max_retries)
        return cls(
            base_url,
            headers=tuple((headers or {}).items()),
            retry_policy=policy,
            **fields,
        )

    def replace(self, **overrides: Any) -> ClientOptions:
        """A copy with ``overrides`` (constructor keyword names), checked.

        ``headers`` are merged over the current ones (a ``None`` value drops a
        header); ``max_retries`` changes the retry policy's count; a new
        ``api_key`` replaces the old one.
        """
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)} - {"max_retries"}
        if unknown:
            raise InvalidRequestError(f"unknown client option(s): {', '.join(sorted(unknown))}")
        if "headers" in overrides:
            extra = overrides["headers"]
            if extra is not None and not isinstance(extra, Mapping):
                raise InvalidRequestError(f"headers must be a mapping, got {extra!r}")
            merged = dict(self.headers)
            for name, value in (extra or {}).items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            overrides["headers"] = tuple(merged.items())
        policy = overrides.pop("retry_policy", None) or self.retry_policy
        if "max_retries" in overrides:
            policy = policy.with_max_retries(overrides.pop("max_retries"))
        overrides["retry_policy"] = policy
        return dataclasses.replace(self, **overrides)

    def header_map(self) -> dict[str, str]:
        """Every header a request of this client carries (lower-case names)."""
        return default_headers(self.api_key, dict(self.headers))
