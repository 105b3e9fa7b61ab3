"""Fault injection: :class:`FaultSpec` and the registry that matches them to requests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["WEIGHT_UPDATE_PATHS", "FaultRegistry", "FaultSpec"]

#: the endpoints a ``weight_update_error`` fault applies to
WEIGHT_UPDATE_PATHS = frozenset(
    {
        "/update_weights_from_disk",
        "/update_weights_from_distributed",
        "/update_weights_from_tensor",
        "/update_weights_from_ipc",
        "/update_weight_version",
    }
)
_WEIGHT_UPDATE_ERRORS = ("load", "flush")


@dataclass
class FaultSpec:
    """One injected fault.

    A fault applies to the next ``times`` requests whose path equals ``path``
    (``None`` = any path; ``method`` optionally restricts the HTTP method).
    ``times=None`` means forever. Stream faults (``stream_error_after``,
    ``truncate_stream_after``) only match streaming requests (``"stream": true``).

    Effects, in order: sleep ``delay_s``; then ``drop`` (close the connection
    without a response), ``hang`` (never answer until the client disconnects),
    ``status`` (answer with ``status``/``body``/``content_type``/``headers``),
    ``malformed`` (200 with a body that is not valid JSON), or the stream faults.
    A fault with only ``delay_s`` delays the normal answer.

    ``weight_update_error`` makes a weight update fail the way sglang fails; it
    only matches the weight-update endpoints (:data:`WEIGHT_UPDATE_PATHS`):
    ``"load"``: loading fails, the weights and version stay as they were, 400
    ``{"success": false, "message": "Failed to ..."}``; ``"flush"``: the weights
    *are* swapped (path and version change) but the cache flush after the load
    fails, 400 with a message containing ``"Cache flush failed after updating
    weights"`` (the caller must not load again).

    Note: under :class:`httpx.ASGITransport` ``drop``/``truncate_stream_after``
    surface as :class:`DropConnection` raised into the caller, and ``hang``
    never returns (ASGITransport has no timeouts) - use a socket server for those.
    """

    path: str | None = None
    times: int | None = 1
    status: int | None = None
    body: Any = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    malformed: bool = False
    stream_error_after: int | None = None
    truncate_stream_after: int | None = None
    hang: bool = False
    method: str | None = None
    weight_update_error: str | None = None

    def __post_init__(self) -> None:
        if (
            self.weight_update_error is not None
            and self.weight_update_error not in _WEIGHT_UPDATE_ERRORS
        ):
            raise ValueError(
                f"weight_update_error must be one of {_WEIGHT_UPDATE_ERRORS}, "
                f"not {self.weight_update_error!r}"
            )

    @property
    def is_stream_fault(self) -> bool:
        """True if this fault only acts on streaming responses."""
        return self.stream_error_after is not None or self.truncate_stream_after is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        """Build a spec from a JSON object (unknown keys raise ``ValueError``)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FaultSpec field(s): {sorted(unknown)}")
        return cls(**data)


class FaultRegistry:
    """Thread-safe list of pending :class:`FaultSpec` (``app.faults``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[list[Any]] = []  # [spec, remaining]

    def add(self, *specs: FaultSpec) -> None:
        """Queue faults; they are matched in insertion order."""
        with self._lock:
            for spec in specs:
                self._active.append([spec, spec.times])

    def clear(self) -> int:
        """Remove all pending faults; returns how many were removed."""
        with self._lock:
            n = len(self._active)
            self._active.clear()
            return n

    def pending(self) -> list[FaultSpec]:
        """The faults that still apply to future requests."""
        with self._lock:
            return [entry[0] for entry in self._active]

    def __len__(self) -> int:
        return len(self._active)

    def take(self, path: str, method: str, is_stream: bool) -> FaultSpec | None:
        """Consume and return the first fault matching this request, if any."""
        if not self._active:
            return None
        with self._lock:
            for i, entry in enumerate(self._active):
                spec: FaultSpec = entry[0]
                if spec.path is not None and spec.path != path:
                    continue
                if spec.method is not None and spec.method.upper() != method:
                    continue
                if spec.is_stream_fault and not is_stream:
                    continue
                if spec.weight_update_error is not None and path not in WEIGHT_UPDATE_PATHS:
                    continue
                if entry[1] is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._active[i]
                return spec
        return None
