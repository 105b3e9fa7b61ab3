"""Models of the OpenAI-compatible ``POST /v1/completions`` (text completions)."""

from __future__ import annotations

from pydantic import Field

from ._base import WireModel
from .chat import Usage
from .rl import VersionedResponse

__all__ = [
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
]


class CompletionLogprobs(WireModel):
    """The legacy logprobs layout of a completion choice (``logprobs=k`` asked).

    ``text_offset`` is always ``-1`` on sglang (not supported); ``top_logprobs``
    has one ``{token: logprob}`` map per position (``None`` where absent).
    """

    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(WireModel):
    """One choice of a text completion (choices are ordered prompt-major for ``n > 1``).

    ``finish_reason`` is ``"stop"``, ``"length"``, ``"abort"``... (``None``
    mid-stream); ``matched_stop`` is the stop string or token id that fired.
    In a stream, ``text`` is the increment of this chunk.
    """

    index: int = 0
    text: str = ""
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    matched_stop: int | str | None = None


class Completion(VersionedResponse):
    """A ``text_completion`` object (``usage`` is always sent on a non-streamed reply)."""

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(VersionedResponse):
    """One streamed ``text_completion`` event (``usage`` only on the last one, if asked)."""

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = Field(default_factory=list)
    usage: Usage | None = None
