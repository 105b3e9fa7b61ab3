"""Models of the RL control plane: weight updates, pause/continue and loads."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import ResponseModel, WireModel

__all__ = [
    "GenerationControlResult",
    "Loads",
    "RankLoad",
    "WeightUpdateResult",
    "WeightVersionResult",
]


class WeightUpdateResult(ResponseModel):
    """``{"success", "message"}``: the answer of the weight-update family.

    Returned by ``update_weights_from_disk`` (which adds ``num_paused_requests``:
    a list with one entry per DP rank on multi-rank servers),
    ``update_weights_from_distributed``, ``update_weights_from_tensor``,
    ``init_weights_update_group``, ``destroy_weights_update_group`` and
    ``begin_weight_update`` / ``end_weight_update``. A failure is raised as
    :class:`~rlinf_http.WeightUpdateError`, so ``success`` is ``True`` here.
    """

    success: bool = True
    message: str = ""
    num_paused_requests: int | list[int] | None = None


class WeightVersionResult(WeightUpdateResult):
    """``POST /update_weight_version``: ``new_version`` is the label now served."""

    new_version: str | None = None


class GenerationControlResult(ResponseModel):
    """``{"message", "status"}``: the answer of ``pause_generation`` and ``continue_generation``."""

    message: str = ""
    status: str | None = None


class RankLoad(WireModel):
    """The load of one data-parallel rank in ``GET /v1/loads``.

    The optional sections (``memory``, ``speculative``, ``lora``,
    ``disaggregation``, ``queues``) appear only when the server has them and
    ``include`` asked for them.
    """

    dp_rank: int | None = None
    timestamp: float | None = None
    num_running_reqs: int = 0
    num_waiting_reqs: int = 0
    num_waiting_uncached_tokens: int | None = None
    num_used_tokens: int | None = None
    num_total_tokens: int | None = None
    num_active_tokens: int | None = None
    num_prealloc_ready_tokens: int | None = None
    max_total_num_tokens: int | None = None
    max_running_requests: int | None = None
    token_usage: float | None = None
    gen_throughput: float | None = None
    cache_hit_rate: float | None = None
    utilization: float | None = None
    total_prefill_uncached_tokens: int | None = None
    total_prefill_busy_us: float | None = None
    decode_moments: list[float] | None = None
    memory: dict[str, Any] | None = None
    speculative: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    disaggregation: dict[str, Any] | None = None
    queues: dict[str, Any] | None = None


class Loads(ResponseModel):
    """``GET /v1/loads`` of one sglang server (the router does not serve it)."""

    timestamp: str | None = None
    version: str | None = None
    accelerator: str | None = None
    num_accelerators: int | None = None
    loads: list[RankLoad] = Field(default_factory=list)

    @property
    def num_running_reqs(self) -> int:
        """Running requests, summed over the ranks."""
        return sum(rank.num_running_reqs for rank in self.loads)

    @property
    def num_waiting_reqs(self) -> int:
        """Queued requests, summed over the ranks."""
        return sum(rank.num_waiting_reqs for rank in self.loads)
