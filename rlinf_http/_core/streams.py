"""Streamed responses: SSE events -> typed chunks (no I/O).

sglang's ``/generate`` streams are *cumulative* by default (each chunk repeats
the text and ids so far) and *incremental* on servers started with
``--incremental-streaming-output`` (older: ``--stream-output``). The payload does
not say which; :class:`GenerateStreamParser` tells them apart from the second
chunk on (cumulative chunks carry ``len(output_ids) == completion_tokens``) or is
told the mode, and yields chunks that carry both the full text so far and the
new delta either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import pydantic
import pydantic_core
from pydantic import Field

from .._errors import APIResponseValidationError, IncompleteStreamError, StreamErrorEvent
from ..models import ChatCompletionChunk, GenerateOutput
from .responses import error_details
from .sse import SSEDecoder

__all__ = [
    "ChatStreamParser",
    "EventStreamParser",
    "GenerateStreamChunk",
    "GenerateStreamParser",
    "StreamMode",
]

T = TypeVar("T")

StreamMode = Literal["auto", "cumulative", "incremental"]

DONE = "[DONE]"


class GenerateStreamChunk(GenerateOutput):
    """One chunk of a ``/generate`` stream, normalised.

    ``text`` and ``output_ids`` are everything generated so far for this
    ``index``; ``delta`` and ``delta_output_ids`` are what this chunk added,
    whichever mode the server streams in. ``meta_info`` is as the server sent it
    (its logprob lists follow the server's mode).
    """

    delta: str = ""
    delta_output_ids: list[int] = Field(default_factory=list)


@dataclass(slots=True)
class _Track:
    text: str = ""
    ids: list[int] = field(default_factory=list)


class EventStreamParser(Generic[T]):
    """Bytes -> typed items, for one SSE stream terminated by ``data: [DONE]``.

    ``feed`` returns the items completed by a chunk of bytes and raises
    :class:`StreamErrorEvent` on an ``{"error": ...}`` event; ``finish`` raises
    :class:`IncompleteStreamError` when the stream ended before ``[DONE]``.
    """

    def __init__(self, convert: Callable[[Any], T | None], url: str = "") -> None:
        self._decoder = SSEDecoder()
        self._convert = convert
        self._url = url
        self._error: Exception | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[T]:
        """The items completed by ``chunk``.

        Items that came before an error event in the same chunk are returned
        first; the error is raised by the next call (``feed`` or ``finish``).
        """
        self._raise_pending()
        if self.done:
            return []
        out: list[T] = []
        for event in self._decoder.feed(chunk):
            try:
                item = self._event(event.data)
            except Exception as exc:
                if not out:
                    raise
                self._error, self.done = exc, True
                break
            if self.done:
                break
            if item is not None:
                out.append(item)
        return out

    def finish(self) -> list[T]:
        """The end of the body: flush, then insist on ``[DONE]``."""
        self._raise_pending()
        out: list[T] = []
        if not self.done:
            for event in self._decoder.flush():
                item = self._event(event.data)
                if item is not None:
                    out.append(item)
        if not self.done:
            raise IncompleteStreamError(
                f"the stream from {self._url or 'the server'} ended without 'data: [DONE]'"
            )
        return out

    @property
    def pending_error(self) -> bool:
        """An error is waiting to be raised by the next ``feed``/``finish``."""
        return self._error is not None

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _event(self, data: str) -> T | None:
        if data.strip() == DONE:
            self.done = True
            return None
        try:
            value = pydantic_core.from_json(data)
        except ValueError:
            raise APIResponseValidationError(
                f"{self._url}: a stream event is not JSON: {data[:200]!r}", url=self._url
            ) from None
        if isinstance(value, dict) and value.get("error") is not None:
            _, message, code = error_details(data.encode(), {})
            raise StreamErrorEvent(
                f"error event in the stream from {self._url}: {message}",
                error=value["error"],
                code=code,
                url=self._url,
            )
        return self._convert(value)


_GEN_STREAM_CHUNK: pydantic.TypeAdapter[GenerateStreamChunk] = pydantic.TypeAdapter(
    GenerateStreamChunk
)
_CHAT_CHUNK: pydantic.TypeAdapter[ChatCompletionChunk] = pydantic.TypeAdapter(ChatCompletionChunk)


def _validate(adapter: pydantic.TypeAdapter[T], value: Any, url: str) -> T:
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        raise APIResponseValidationError(
            f"{url}: a stream chunk does not have the expected shape: {exc}", url=url
        ) from exc


class GenerateStreamParser(EventStreamParser[GenerateStreamChunk]):
    """``/generate`` stream: cumulative or incremental chunks -> full text + delta."""

    def __init__(self, mode: StreamMode = "auto", url: str = "") -> None:
        super().__init__(self._chunk, url)
        self.mode: StreamMode = mode
        self._tracks: dict[int, _Track] = {}

    def _chunk(self, value: Any) -> GenerateStreamChunk:
        chunk = _validate(_GEN_STREAM_CHUNK, value, self._url)
        index = chunk.index or 0
        track = self._tracks.get(index)
        if track is None:
            track = self._tracks[index] = _Track()
        ids = chunk.output_ids
        mode = self.mode
        if mode == "auto" and (track.ids or track.text):
            # Only a chunk that follows a non-empty one tells the modes apart.
            mode = self.mode = self._detect(
                track, chunk.text, ids, chunk.meta_info.completion_tokens
            )
        if mode == "incremental":
            chunk.delta, chunk.delta_output_ids = chunk.text, ids
            chunk.text, chunk.output_ids = track.text + chunk.text, track.ids + ids
        else:  # cumulative, or nothing seen yet (both modes agree)
            prev, text = track.text, chunk.text
            if text.startswith(prev):
                chunk.delta = text[len(prev) :]
            else:  # the server revised earlier text: the delta starts where they differ
                pairs = enumerate(zip(prev, text, strict=False))
                common = next((i for i, (a, b) in pairs if a != b), min(len(prev), len(text)))
                chunk.delta = text[common:]
            chunk.delta_output_ids = ids[len(track.ids) :]
        track.text, track.ids = chunk.text, chunk.output_ids
        return chunk

    @staticmethod
    def _detect(track: _Track, text: str, ids: list[int], tokens: int) -> StreamMode:
        if ids or track.ids:
            if len(ids) == tokens and ids[: len(track.ids)] == track.ids:
                return "cumulative"
            return "incremental"
        # No ids (should not happen with sglang): fall back on the text prefix.
        return "cumulative" if text.startswith(track.text) else "incremental"


class ChatStreamParser(EventStreamParser[ChatCompletionChunk]):
    """``/v1/chat/completions`` stream -> :class:`ChatCompletionChunk` items."""

    def __init__(self, url: str = "") -> None:
        super().__init__(self._chunk, url)

    def _chunk(self, value: Any) -> ChatCompletionChunk:
        return _validate(_CHAT_CHUNK, value, self._url)
