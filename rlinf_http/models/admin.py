"""Models of server and router administration endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, overload

from pydantic import Field

from ._base import ResponseModel, WireModel

__all__ = [
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
]


class ServerInfo(ResponseModel):
    """``GET /server_info`` of an sglang server (server args + scheduler state).

    Through the router, ``/get_server_info`` is a router summary instead
    (``router_manager``, ``workers_count``), kept as extra fields.
    """

    model_path: str | None = None
    tokenizer_path: str | None = None
    served_model_name: str | None = None
    tp_size: int | None = None
    dp_size: int | None = None
    version: str | None = None
    stream_interval: int | None = None
    incremental_streaming_output: bool | None = None
    stream_output: bool | None = None

    @property
    def incremental_streaming(self) -> bool | None:
        """Whether ``/generate`` streams send deltas (``None``: not reported)."""
        if self.incremental_streaming_output is not None:
            return self.incremental_streaming_output
        return self.stream_output


class ModelInfo(ResponseModel):
    """``GET /model_info`` (or ``/get_model_info`` on older servers)."""

    model_path: str | None = None
    tokenizer_path: str | None = None
    is_generation: bool | None = None
    model_type: str | None = None
    architectures: list[str] | str | None = None
    served_model_name: str | None = None
    weight_version: str | None = None


class ModelCard(WireModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None
    root: str | None = None
    max_model_len: int | None = None


class ModelList(ResponseModel):
    """``GET /v1/models``."""

    object: str = "list"
    data: list[ModelCard] = Field(default_factory=list)


class JobStatus(WireModel):
    """The registration job of a worker the router has not finished adding."""

    job_type: str | None = None
    worker_url: str | None = None
    status: str | None = None
    message: str | None = None
    timestamp: Any = None


class WorkerModel(WireModel):
    """One model a worker serves, as smg 1.13 lists it in ``GET /workers`` (``models``)."""

    id: str
    model_type: list[str] | str | None = None
    hf_model_type: str | None = None
    architectures: list[str] | None = None
    context_length: int | None = None
    tokenizer_path: str | None = None


class Worker(ResponseModel):
    """A worker registered with (or being added to) the gateway (smg or sglang-router).

    smg 1.13 adds ``models`` (what the worker serves: smg routes by model),
    ``runtime_type`` (``"sglang"``), ``labels`` and ``status``; its ``id`` is a UUID.
    """

    id: str
    url: str | None = None
    model_id: str | None = None
    priority: int | None = None
    cost: float | None = None
    worker_type: str | None = None
    is_healthy: bool = False
    load: int | None = None
    connection_mode: str | None = None
    metadata: dict[str, Any] | None = None
    job_status: JobStatus | None = None
    models: list[WorkerModel] | None = None
    runtime_type: str | None = None
    labels: dict[str, Any] | None = None
    status: str | None = None


class WorkerList(ResponseModel):
    """``GET /workers`` of the router (pending registrations are not listed).

    It is also a sequence of its workers: ``len(listing)``, ``for w in listing``
    and ``listing[0]`` use ``listing.workers``; a str key (``listing["total"]``)
    is a wire field, as on every model.
    """

    workers: list[Worker] = Field(default_factory=list)
    total: int | None = None
    stats: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.workers)

    def __iter__(self) -> Iterator[Worker]:  # type: ignore[override]
        return iter(self.workers)

    @overload
    def __getitem__(self, key: int) -> Worker: ...
    @overload
    def __getitem__(self, key: slice) -> list[Worker]: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.workers[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Worker):
            return key in self.workers
        return super().__contains__(key)


class Readiness(ResponseModel):
    """``GET /readiness`` of the router (200 ready, 503 not ready)."""

    status: str | None = None
    healthy_workers: int | None = None
    total_workers: int | None = None
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class FlushCacheResult(ResponseModel):
    """The outcome of ``/flush_cache`` on a server (text) or the router (JSON).

    A server answers 400 when it cannot flush because requests are running;
    that is ``flushed=False`` here, not an error.
    """

    flushed: bool
    status_code: int
    message: str = ""
    details: dict[str, Any] | None = None
