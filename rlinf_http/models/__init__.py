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
    WorkerModel,
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
from .control import (
    GenerationControlResult,
    Loads,
    RankLoad,
    WeightUpdateResult,
    WeightVersionResult,
)
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
from .rewards import ClassifyOutput, RerankResult, ScoreResult
from .rl import (
    CachedTokensDetails,
    ResponseMetadata,
    WeightVersionMix,
    WeightVersionSpan,
)
from .tokenize import DetokenizeResult, TokenizeResult
from .weights import (
    ParallelismInfo,
    ParameterCheck,
    ParameterSlice,
    RankChecksums,
    RemoteTransferEngineInfo,
    WeightsCheckResult,
    WeightSyncReport,
    WorkerSyncCheck,
)

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
    "WorkerModel",
    "GenerationControlResult",
    "Loads",
    "RankLoad",
    "WeightUpdateResult",
    "WeightVersionResult",
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

# RL surface of sglang 0.5.23: weights read-back and sync verification, rewards, RL fields
__all__ += [
    "CachedTokensDetails",
    "ClassifyOutput",
    "ParallelismInfo",
    "ParameterCheck",
    "ParameterSlice",
    "RankChecksums",
    "RemoteTransferEngineInfo",
    "RerankResult",
    "ScoreResult",
    "WeightSyncReport",
    "ResponseMetadata",
    "WeightVersionMix",
    "WeightVersionSpan",
    "WeightsCheckResult",
    "WorkerSyncCheck",
]
