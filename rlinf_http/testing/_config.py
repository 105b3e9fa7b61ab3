"""Configuration of the fake SGLang server."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

__all__ = ["FakeConfig"]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class FakeConfig:
    """Configuration of :class:`FakeSGLangApp`.

    ``model_path`` must be an existing local directory so that a real
    sglang-router trying to load a tokenizer from it stays offline.
    """

    model_path: str = _PKG_DIR
    served_model_name: str = "fake-model"
    tokenizer_path: str | None = None
    #: time to first token (seconds)
    ttft_s: float = 0.0
    #: inter-token latency (seconds per output token after the first)
    itl_s: float = 0.0
    #: server flag ``--incremental-streaming-output``: streams send disjoint deltas
    incremental_streaming: bool = False
    default_max_new_tokens: int = 128
    stream_interval: int = 1
    #: simulate an old server: only ``/get_server_info`` and ``/get_model_info`` exist
    legacy_info_routes_only: bool = False
    #: if set, generation stops after this many tokens with finish_reason "stop"
    #: (matched ``eos_token_id``) unless ``ignore_eos`` is requested
    eos_after: int | None = None
    eos_token_id: int = 2
    version: str = "0.5.23-fake"
    max_total_num_tokens: int = 1 << 20
    model_type: str = "fake"
    architectures: list[str] = field(default_factory=lambda: ["FakeForCausalLM"])
    #: server flag ``--weight-version``: the initial weight version
    weight_version: str = "default"
    #: server flag ``--load-format``
    load_format: str = "auto"
    #: how long a weight update (any ``/update_weights_from_*``) takes (seconds)
    weight_update_s: float = 0.0
    #: sglang 0.5.23's stale label: after a weight update whose cache flush failed
    #: (``CacheNotFlushedError``), ``/model_info`` keeps the OLD ``weight_version``
    #: and ``model_path`` while the new weights are served (until
    #: ``/update_weight_version`` or a successful update). Off: the label moves too.
    stale_label_after_flush_failure: bool = False
    #: ``--max-running-requests`` as reported by ``/v1/loads``
    max_running_requests: int = 1024
    #: ``--enable-lora``: LoRA adapters can be loaded and named by ``lora_path``
    enable_lora: bool = True
    #: ``--max-loras-per-batch`` (LoRA slots reported by ``/v1/loads``)
    max_loras_per_batch: int = 8
    #: length of the vectors served by ``/v1/embeddings`` and ``/encode``
    embedding_dim: int = 16
    #: ``max_model_len`` reported by ``/v1/tokenize``
    context_length: int = 32768
    #: a name for this worker: data-plane responses then carry ``x-fake-worker``
    #: with it and the request log records it (default: the server's URL)
    worker_id: str | None = None
    #: how many data-plane requests ``/_fake/requests`` remembers
    request_log_size: int = 10000

    def __post_init__(self) -> None:
        for name in ("ttft_s", "itl_s", "weight_update_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"FakeConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.tokenizer_path is None:
            self.tokenizer_path = self.model_path
        if self.stream_interval < 1:
            raise ValueError("stream_interval must be >= 1")
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be >= 1")
