"""Server-sent events: byte chunks in, events out (incremental, no I/O).

Implements the event-stream framing of the WHATWG HTML spec that sglang and
OpenAI-style servers use: lines end in ``\\n``, ``\\r\\n`` or ``\\r``; ``data:``
lines accumulate (joined by ``\\n``); a blank line dispatches the event; lines
starting with ``:`` are comments; ``event:``, ``id:`` and ``retry:`` are kept
(a ``retry:`` that is not ASCII digits is ignored, as the spec says).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
#: A ``retry:`` value with more digits than this is ignored (it would be over 30,000 years).
_RETRY_MAX_DIGITS = 15


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the events completed so far.

    Arbitrary split points are fine (inside a line, inside a UTF-8 sequence,
    between ``\\r`` and ``\\n``). :meth:`flush` dispatches an event left open by
    a stream that ends without a final blank line.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "_has_data",
        "_id",
        "_pending_cr",
        "_retry",
        "_start",
    )

    def __init__(self) -> None:
        self._buf = b""
        self._pending_cr = False
        self._data: list[str] = []
        self._has_data = False
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._start: bytes | None = b""  # bytes held back while a leading BOM is still possible

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completes."""
        if not chunk:
            return []
        if self._start is not None:
            # A UTF-8 byte order mark at the very start of the stream is skipped.
            head = self._start + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._start = head
                return []
            self._start = None
            chunk = head[3:] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        events: list[ServerSentEvent] = []
        start = 0
        size = len(buf)
        while start < size:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl >= 0 else size)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < size:
                    if buf[nxt : nxt + 1] == b"\n":
                        nxt += 1
                else:
                    # The \r ends the buffer: a following \n belongs to this line.
                    self._pending_cr = True
            elif nl >= 0:
                end, nxt = nl, nl + 1
            else:
                break
            event = self._line(buf[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buf = buf[start:]
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: dispatch a pending event (a trailing partial line counts)."""
        events: list[ServerSentEvent] = []
        if self._buf:
            self._line(self._buf)
            self._buf = b""
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            # ASCII digits only (str.isdigit also accepts "²"); a value too long to
            # be a delay in milliseconds is ignored like any malformed one.
            if 0 < len(value) <= _RETRY_MAX_DIGITS and value.isascii() and value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._has_data:
            self._event = None
            return None
        event = ServerSentEvent("\n".join(self._data), self._event, self._id, self._retry)
        self._data = []
        self._has_data = False
        self._event = None
        return event
