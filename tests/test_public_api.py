"""The public surface of ``rlinf_http`` is pinned: adding or removing a name is deliberate."""

from __future__ import annotations

import importlib

import pytest

import rlinf_http

PUBLIC_NAMES = sorted(
    [
        "APIConnectionError",
        "APIResponseValidationError",
        "APIStatusError",
        "APITimeoutError",
        "AsCompleted",
        "AsyncStream",
        "AuthenticationError",
        "BadRequestError",
        "ChatChoice",
        "ChatChunkChoice",
        "ChatCompletion",
        "ChatCompletionChunk",
        "ChatDelta",
        "ChatMessage",
        "ConflictError",
        "FinishAbort",
        "FinishLength",
        "FinishOther",
        "FinishReason",
        "FinishStop",
        "FlushCacheResult",
        "FunctionCall",
        "GenerateOutput",
        "GenerateStreamChunk",
        "IncompleteStreamError",
        "InferenceHTTPClient",
        "InternalServerError",
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
        "DuplicateRequestIdError",
        "InvalidRequestError",
        "JobStatus",
        "Logprob",
        "MetaInfo",
        "MissingDependencyError",
        "ModelCard",
        "ModelInfo",
        "ModelList",
        "NotFoundError",
        "PermissionDeniedError",
        "RLinfHTTPError",
        "RateLimitError",
        "Readiness",
        "RetryPolicy",
        "SamplingParams",
        "SingleSampleParams",
        "ServerInfo",
        "ServiceUnavailableError",
        "Stream",
        "StreamError",
        "StreamErrorEvent",
        "ToolCall",
        "UnprocessableEntityError",
        "UnsupportedMediaTypeError",
        "Usage",
        "Worker",
        "WorkerList",
        "WorkerModel",
        "WorkerNotFoundError",
        "WorkerRegistrationError",
        "CacheNotFlushedError",
        "FleetError",
        "WeightUpdateError",
        "WeightSyncError",
        "WeightVersionMismatchError",
        "Fleet",
        "FleetResult",
        "WeightUpdateReport",
        "WorkerUpdate",
        "PhaseResult",
        "WeightUpdateStepError",
        "EngineBusyError",
        "GenerationControlResult",
        "Loads",
        "RankLoad",
        "WeightUpdateResult",
        "ClientOptions",
        "WeightVersionResult",
        "__version__",
        "no_proxy_env",
        # RL surface of sglang 0.5.23
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
        "WeightVersionMix",
        "WeightVersionSpan",
        "ResponseMetadata",
        "weight_version_mix",
        "WeightsCheckResult",
        "WorkerSyncCheck",
    ]
)


def test_all_is_pinned() -> None:
    assert sorted(rlinf_http.__all__) == PUBLIC_NAMES


def test_all_has_no_duplicates_or_private_names() -> None:
    assert len(set(rlinf_http.__all__)) == len(rlinf_http.__all__)
    assert all(not n.startswith("_") or n == "__version__" for n in rlinf_http.__all__)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_name_importable(name: str) -> None:
    module = importlib.import_module("rlinf_http")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from rlinf_http import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_star_import_exports_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from rlinf_http import *", namespace)
    exported = {n for n in namespace if n != "__builtins__"}
    assert exported == set(PUBLIC_NAMES)


def test_every_error_and_model_is_public() -> None:
    from rlinf_http import _errors, models

    assert set(_errors.__all__) <= set(rlinf_http.__all__)
    assert set(models.__all__) - {"WireModel"} <= set(rlinf_http.__all__)


def test_error_hierarchy() -> None:
    from rlinf_http import (
        APIConnectionError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        InternalServerError,
        InvalidRequestError,
        MissingDependencyError,
        RLinfHTTPError,
        ServiceUnavailableError,
    )

    assert issubclass(RLinfHTTPError, RuntimeError)
    assert issubclass(InvalidRequestError, ValueError)
    assert issubclass(MissingDependencyError, ImportError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(APITimeoutError, TimeoutError)
    assert issubclass(ServiceUnavailableError, InternalServerError)
    for cls in (APIConnectionError, APIStatusError, APIResponseValidationError):
        assert issubclass(cls, RLinfHTTPError)


def test_version() -> None:
    from importlib.metadata import PackageNotFoundError, version

    assert isinstance(rlinf_http.__version__, str) and rlinf_http.__version__
    try:
        assert version("rlinf-http") == rlinf_http.__version__
    except PackageNotFoundError:  # pragma: no cover - not installed as a distribution
        pass
