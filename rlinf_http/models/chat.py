"""Models of the OpenAI-compatible ``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import WireModel
from .rl import VersionedResponse

__all__ = [
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatDelta",
    "ChatMessage",
    "FunctionCall",
    "ToolCall",
    "Usage",
]


class FunctionCall(WireModel):
    """The function part of a tool call (``arguments`` is a JSON string)."""

    name: str | None = None
    arguments: str | None = None


class ToolCall(WireModel):
    """A tool call of an assistant message or a streamed delta."""

    id: str | None = None
    index: int | None = None
    type: str | None = "function"
    function: FunctionCall | None = None


class ChatMessage(WireModel):
    """A chat message; ``content`` may be a string or a list of content parts."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None
    tool_call_id: str | None = None


class Usage(WireModel):
    """Token accounting of a completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int | None = None
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class ChatChoice(WireModel):
    """One choice of a chat completion."""

    index: int = 0
    message: ChatMessage
    logprobs: Any = None
    finish_reason: str | None = None
    matched_stop: int | str | None = None


class ChatCompletion(VersionedResponse):
    """A ``chat.completion`` object.

    ``usage`` is required: sglang always reports it on a non-streamed completion
    (a body without it fails validation rather than typing every read as optional).
    """

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(WireModel):
    """The increment carried by a streamed chat chunk."""

    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChunkChoice(WireModel):
    """One choice of a streamed chat chunk."""

    index: int = 0
    delta: ChatDelta = Field(default_factory=ChatDelta)
    logprobs: Any = None
    finish_reason: str | None = None
    matched_stop: int | str | None = None


class ChatCompletionChunk(VersionedResponse):
    """A ``chat.completion.chunk`` event of a stream (``usage`` only on the last one)."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChatChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
