"""Typed models of the sglang wire formats."""

from ._base import WireModel
from .admin import (
    FlushCacheResult,
    JobStatus,
    ModelCard,
    ModelInfo,
    ModelList,
    Readiness,
    ServerInfo,
    Worker,
    WorkerList,
)
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
from .completion import Completion, CompletionChoice, CompletionChunk, CompletionLogprobs
from .embedding import EmbeddingData, EmbeddingResponse, EncodeOutput
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
    SingleSampleParams,
)
from .lora import LoraAdapterResult
from .tokenize import DetokenizeResult, TokenizeResult

__all__ = [
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "DetokenizeResult",
    "EmbeddingData",
    "EmbeddingResponse",
    "EncodeOutput",
    "LoraAdapterResult",
    "TokenizeResult",
    "FlushCacheResult",
    "JobStatus",
    "ModelCard",
    "ModelInfo",
    "ModelList",
    "Readiness",
    "ServerInfo",
    "Worker",
    "WorkerList",
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
    "SingleSampleParams",
    "ToolCall",
    "Usage",
    "WireModel",
]
