"""Typed models of the sglang wire formats."""

from ._base import WireModel
from .chat import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessage,
    FunctionCall,
    ToolCall,
    Usage,
)
from .generate import (
    FinishAbort,
    FinishLength,
    FinishOther,
    FinishReason,
    FinishStop,
    GenerateOutput,
    Logprob,
    MetaInfo,
    SamplingParams,
)

__all__ = [
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatDelta",
    "ChatMessage",
    "FinishAbort",
    "FinishLength",
    "FinishOther",
    "FinishReason",
    "FinishStop",
    "FunctionCall",
    "GenerateOutput",
    "Logprob",
    "MetaInfo",
    "SamplingParams",
    "ToolCall",
    "Usage",
    "WireModel",
]
