"""The one error hierarchy of rlinf-http.

Every error the client raises on purpose derives from :class:`RLinfHTTPError`::

    RLinfHTTPError (RuntimeError)
    ├── InvalidRequestError (+ ValueError)      bad arguments, raised before any I/O
    ├── MissingDependencyError (+ ImportError)  an optional extra is not installed
    ├── APIConnectionError                      no response: refused, reset, DNS, protocol
    │   └── APITimeoutError (+ TimeoutError)    the connect (or a per-call) timeout fired
    ├── APIStatusError                          the server answered with a non-2xx status
    │   ├── BadRequestError                 400
    │   │   ├── DuplicateRequestIdError     400: a request with this ``rid`` is in flight
    │   │   └── WeightUpdateError           a weight-update call answered ``success: false``
    │   │       └── CacheNotFlushedError    the weights WERE loaded; the cache flush after failed
    │   ├── AuthenticationError             401
    │   ├── PermissionDeniedError           403
    │   ├── NotFoundError                   404
    │   │   └── WorkerNotFoundError         no worker with that URL is registered with the gateway
    │   ├── ConflictError                   409
    │   ├── UnsupportedMediaTypeError       415
    │   ├── UnprocessableEntityError        422
    │   ├── RateLimitError                  429
    │   └── InternalServerError             >= 500
    │       └── ServiceUnavailableError     503
    ├── APIResponseValidationError          a 2xx body that is not JSON / not the expected shape
    ├── StreamError                         a streamed response failed after it started
    │   ├── StreamErrorEvent                an ``{"error": ...}`` event inside an HTTP 200 stream
    │   └── IncompleteStreamError           the stream ended without ``data: [DONE]``
    ├── WorkerRegistrationError             the router reported a failed worker registration
    ├── FleetError                          a call failed on some workers of a Fleet (all tried)
    │   └── WeightUpdateStepError           fleet.update_weights missed its quorum
    ├── EngineBusyError                     the engine did not become idle in time (memory release)
    ├── WeightSyncError                     a weight-sync verification found workers that differ
    └── WeightVersionMismatchError          workers of a Fleet serve another weight version

The base class is a :class:`RuntimeError` so that code written against the RLinf
client (which raised ``RuntimeError`` for failed ``post`` calls) keeps working.
Messages name the method, the URL and a truncated body.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CacheNotFlushedError",
    "ConflictError",
    "EngineBusyError",
    "DuplicateRequestIdError",
    "FleetError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "MissingDependencyError",
    "NotFoundError",
    "PermissionDeniedError",
    "RLinfHTTPError",
    "RateLimitError",
    "ServiceUnavailableError",
    "StreamError",
    "StreamErrorEvent",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "WeightUpdateError",
    "WeightSyncError",
    "WeightUpdateStepError",
    "WeightVersionMismatchError",
    "WorkerNotFoundError",
    "WorkerRegistrationError",
]

#: How many characters of a body an error message quotes.
BODY_PREVIEW_CHARS = 500


def preview(body: bytes | str, limit: int = BODY_PREVIEW_CHARS) -> str:
    """A short, printable rendering of a body for error messages."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if len(text) > limit:
        return text[:limit] + f"... [{len(text) - limit} more chars]"
    return text


class RLinfHTTPError(RuntimeError):
    """Base class of every error raised by rlinf-http.

    Every constructor takes the message alone (all else has defaults), so errors
    pickle with their attributes: Ray and multiprocessing send them between
    processes.
    """


class InvalidRequestError(RLinfHTTPError, ValueError):
    """The call's arguments are invalid; nothing was sent."""


class MissingDependencyError(RLinfHTTPError, ImportError):
    """An optional dependency (an ``rlinf-http[...]`` extra) is needed but not installed."""


class APIConnectionError(RLinfHTTPError):
    """The request got no HTTP response (connection refused or reset, protocol error...).

    Attributes:
        code: the gateway's error code when a gateway reported the failure (smg's
            fan-out says ``upstream_unreachable`` or ``upstream_timeout``), else ``None``.
    """

    def __init__(
        self, message: str, *, method: str = "", url: str = "", code: str | None = None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.code = code


class APITimeoutError(APIConnectionError, TimeoutError):
    """A timeout configured on the client or the call expired."""


class APIStatusError(RLinfHTTPError):
    """The server answered with a non-success status.

    Attributes:
        status_code: the HTTP status.
        body: the parsed JSON body when it parses, else the text.
        raw_body: the body bytes as received.
        message: the most specific message found in the body.
        code: the error code found in the body or the ``x-smg-error-code`` header
            (smg: ``model_not_found``, ``missing_required_parameter``,
            ``no_available_workers``...).
        request_id: the ``x-request-id`` of the response, else the one the client sent.
        headers: the response headers (lower-cased names).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status_code: int = 0,
        body: Any = None,
        raw_body: bytes = b"",
        headers: dict[str, str] | None = None,
        error_message: str | None = None,
        code: str | int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status_code = status_code
        self.body = body
        self.raw_body = raw_body
        self.headers = headers if headers is not None else {}
        self.message = error_message
        self.code = code
        self.request_id = request_id

    @property
    def param(self) -> str | None:
        """The request field the error names (``error.param`` of an OpenAI-style
        body, e.g. smg's ``missing_required_parameter``), else ``None``."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        param = error.get("param") if isinstance(error, dict) else None
        return param if isinstance(param, str) else None


class BadRequestError(APIStatusError):
    """HTTP 400."""


class DuplicateRequestIdError(BadRequestError):
    """HTTP 400 because a request with the same ``rid`` is still running on the server.

    sglang refuses a second request whose ``rid`` is in flight ("Duplicate request
    ID detected"). :attr:`rid` is the id the server named.
    """

    @property
    def rid(self) -> str | None:
        """The duplicated request id, as the server's message names it."""
        _, found, tail = (self.message or "").partition("Duplicate request ID detected:")
        return (tail.strip() or None) if found else None


class AuthenticationError(APIStatusError):
    """HTTP 401."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404."""


class WorkerNotFoundError(NotFoundError):
    """``remove_worker(url)``: no worker with this URL is registered with the gateway.

    ``url`` is the URL asked for; the message lists the registered URLs.
    """


class ConflictError(APIStatusError):
    """HTTP 409."""


class UnsupportedMediaTypeError(APIStatusError):
    """HTTP 415 (the router insists on ``Content-Type: application/json``)."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422 (the router could not deserialize the body, e.g. a text batch ``/generate``)."""


class RateLimitError(APIStatusError):
    """HTTP 429."""


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


class ServiceUnavailableError(InternalServerError):
    """HTTP 503 (e.g. the router's ``no_available_workers``)."""


class APIResponseValidationError(RLinfHTTPError):
    """A success response whose body is not JSON or not of the expected shape."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status_code: int = 200,
        raw_body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status_code = status_code
        self.raw_body = raw_body


class StreamError(RLinfHTTPError):
    """A streamed response failed after its headers arrived."""


class StreamErrorEvent(StreamError):
    """The server sent an ``{"error": ...}`` event inside an HTTP 200 stream."""

    def __init__(
        self, message: str, *, error: Any = None, code: str | int | None = None, url: str = ""
    ) -> None:
        super().__init__(message)
        self.error = error
        self.code = code
        self.url = url


class IncompleteStreamError(StreamError):
    """The stream ended (connection closed) before ``data: [DONE]``."""


class WorkerRegistrationError(RLinfHTTPError):
    """The router reported that adding a worker failed."""


class WeightUpdateError(BadRequestError):
    """A weight-update call (update, group, session or version) reported failure.

    sglang answers ``{"success": false, "message": ...}`` (HTTP 400); ``message``
    is the server's text. ``weights_updated`` is ``False``: the server still
    serves the previous weights.
    """

    #: Whether the server swapped the weights despite the error.
    weights_updated: bool = False


class CacheNotFlushedError(WeightUpdateError):
    """The weights WERE loaded, but the cache flush that follows the load failed.

    sglang returns 400 when requests were still running after the load, so its
    cache still holds entries computed with the old weights. Do not load again:
    flush the cache once the server is idle (``flush_cache()``).

    sglang 0.5.23 also keeps the *old* ``weight_version`` and ``model_path`` in
    ``/model_info`` after this error, while serving the new weights: relabel
    with ``update_weight_version(<new version>)``, or ``weight_version()`` and
    ``check_weight_version()`` report a mismatch. :attr:`GUIDANCE` says so in
    the message.
    """

    weights_updated = True

    #: Appended to the message: what to do after this error.
    GUIDANCE = (
        "The new weights ARE loaded and served. Do not load them again: flush the "
        "cache once the server is idle (flush_cache, or /flush_cache?timeout=<s> to wait "
        "for idle), then relabel with update_weight_version(<new version>): sglang keeps "
        "the OLD weight_version and model_path in /model_info after this error, so "
        "weight_version() and check_weight_version() report the old label until then."
    )


class FleetError(RLinfHTTPError):
    """A :class:`~rlinf_http.Fleet` call failed on at least one worker.

    Raised after every worker was tried. ``result`` maps each worker URL to its
    result or its exception; ``errors`` holds only the failures.
    """

    def __init__(self, message: str, *, operation: str = "", result: Any = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.result = result

    @property
    def errors(self) -> dict[str, Exception]:
        """Worker URL -> the exception its call raised."""
        return dict(self.result.errors) if self.result is not None else {}


class WeightUpdateStepError(FleetError):
    """``fleet.update_weights(...)`` did not update enough workers (its quorum).

    Raised after the step finished on every worker: the workers that did update
    keep the new weights and were continued; those that failed were left paused,
    taken out of the router's rotation (kept in it when they are every worker it
    lists: ``report.kept_in_router``) and the requests they held aborted
    (``WorkerUpdate.requests_aborted``). :attr:`report` is the
    :class:`~rlinf_http.WeightUpdateReport` of the run (also ``result``):
    per worker and phase, with timings, and how to restore the failed workers
    (``fleet.restore(report)``).
    """

    @property
    def report(self) -> Any:
        """The :class:`~rlinf_http.WeightUpdateReport` of the failed step."""
        return self.result

    @property
    def errors(self) -> dict[str, Exception]:
        """Worker URL -> the exception that failed it."""
        return dict(self.result.errors) if self.result is not None else {}


class EngineBusyError(RLinfHTTPError):
    """The engine did not become idle in time; nothing was sent.

    sglang releases GPU memory only on an idle engine (and fails the call
    otherwise). ``running`` and ``waiting`` are the request counts the server
    reported last (``/v1/loads``).
    """

    def __init__(self, message: str, *, running: int = 0, waiting: int = 0) -> None:
        super().__init__(message)
        self.running = running
        self.waiting = waiting


class WeightVersionMismatchError(RLinfHTTPError):
    """Some workers of a :class:`~rlinf_http.Fleet` serve another weight version.

    ``expected`` is the wanted version, ``versions`` maps every worker URL to
    the version it reports and ``mismatched`` only the disagreeing ones.
    """

    #: Appended to the message: the stale-label case to rule out first.
    HINT = (
        "If a worker's last weight update raised CacheNotFlushedError, it serves the "
        "new weights under its old label (sglang keeps the old weight_version after a "
        "failed flush): flush its cache, then call update_weight_version(expected) on "
        "it; do not load the weights again."
    )

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        versions: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.versions = versions if versions is not None else {}

    @property
    def mismatched(self) -> dict[str, str | None]:
        """Worker URL -> version, for the workers that do not serve ``expected``."""
        return {url: v for url, v in self.versions.items() if v != self.expected}

    @classmethod
    def describe(cls, expected: str, versions: dict[str, str | None]) -> str:
        """The message for ``versions`` (URL -> served label) that disagree with ``expected``.

        Names the disagreeing workers and ends with :attr:`HINT` (the
        stale-label case after a :class:`CacheNotFlushedError`).
        """
        wrong = {url: v for url, v in versions.items() if v != expected}
        listing = ", ".join(f"{url} serves {v!r}" for url, v in wrong.items())
        return (
            f"{len(wrong)} of {len(versions)} workers do not serve weight version "
            f"{expected!r}: {listing}. {cls.HINT}"
        )


class WeightSyncError(RLinfHTTPError):
    """A weight-sync verification found workers that differ (or could not be read).

    Raised by ``WeightSyncReport.raise_for_mismatch()`` (and
    ``fleet.verify_weights(..., raise_on_mismatch=True)``); ``report`` is the
    :class:`~rlinf_http.WeightSyncReport` with the per-worker verdicts.
    """

    def __init__(self, message: str, *, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific :class:`APIStatusError` subclass for a status."""
    cls = _STATUS_ERRORS.get(status_code)
    if cls is not None:
        return cls
    if status_code >= 500:
        return InternalServerError
    return APIStatusError
