"""What a benchmark run is given: :class:`BenchConfig` (the CLI options, one to one)
and the ``progress`` / ``status`` callback types."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .metrics import PERCENTILE_METRICS
from .options import BenchOptionError
from .rl import OutputLenDistribution
from .trace import DEFAULT_BLOCK_SIZE

__all__ = ["BenchConfig", "Progress", "Status"]

#: ``progress(done, failed, total)`` is called after every measured request.
Progress = Callable[[int, int, int], object]
#: ``status(message)`` receives what the harness is waiting for (e.g. an unreachable target).
Status = Callable[[str], object]


class BenchConfig(BaseModel):
    """Everything a benchmark run needs (the CLI options, one to one)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    endpoint: Literal["generate", "chat", "completions"] = "generate"
    stream: bool = True
    dataset: Literal["random", "sharegpt", "rl-groups", "trace"] = "random"
    dataset_path: str | None = None
    #: rl-groups: samples per prompt (K) and prompts per batch (B)
    group_size: Annotated[int, Field(ge=1)] = 8
    rl_batch_size: Annotated[int, Field(ge=1)] = 8
    #: output lengths of rl-groups (default lognormal) and random (default: the range ratio)
    output_len_distribution: OutputLenDistribution | None = None
    output_len_sigma: Annotated[float, Field(gt=0.0)] = 1.0
    #: trace: the mooncake JSONL file, replay speed-up and tokens per hash id
    trace_file: str | None = None
    trace_speedup: Annotated[float, Field(gt=0.0)] = 1.0
    trace_block_size: Annotated[int, Field(ge=1)] = DEFAULT_BLOCK_SIZE
    random_input_len: Annotated[int, Field(ge=1)] = 1024
    random_output_len: Annotated[int, Field(ge=1)] = 128
    random_range_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    sharegpt_output_len: Annotated[int | None, Field(ge=1)] = None
    seed: int = 42
    num_prompts: Annotated[int, Field(ge=1)] = 1000
    request_rate: float = math.inf
    burstiness: Annotated[float, Field(gt=0.0)] = 1.0
    max_concurrency: Annotated[int | None, Field(ge=1)] = None
    warmup_requests: Annotated[int, Field(ge=0)] = 1
    extra_request_body: dict[str, Any] = Field(default_factory=dict)
    processes: Annotated[int, Field(ge=1)] = 1
    num_workers: Annotated[int, Field(ge=1)] = 2
    fake_ttft_ms: Annotated[float, Field(ge=0.0)] = 20.0
    fake_itl_ms: Annotated[float, Field(ge=0.0)] = 5.0
    use_router: bool | None = None
    #: the embedded gateway: smg (with --enable-rl) or sglang-router; None: smg if installed
    gateway: Literal["smg", "sglang-router"] | None = None
    #: the model chat/completions name; None: the one GET /v1/models lists (smg routes by it)
    model: str | None = None
    ready_timeout: Annotated[float, Field(ge=0.0)] = 300.0
    request_timeout: Annotated[float | None, Field(gt=0.0)] = None
    headers: dict[str, str] = Field(default_factory=dict)
    flush_cache: bool = False
    #: SLOs in ms (``ttft``, ``tpot``, ``e2el``): adds goodput to the metrics
    goodput: dict[str, float] = Field(default_factory=dict)
    #: which latency metrics the table shows (vLLM's names) and extra percentiles
    percentile_metrics: list[str] = Field(default_factory=lambda: list(PERCENTILE_METRICS))
    metric_percentiles: list[float] = Field(default_factory=list)
    #: first run the same load against the embedded fake server with known latencies
    calibrate: bool = False
    #: run the load from Ray actors: "local" (start a local cluster), "auto" or an address
    ray_address: str | None = None
    ray_actors: Annotated[int, Field(ge=1)] = 1
    #: weight updates under load: every N seconds (``"seconds"``) or after every N
    #: completed RL groups (``"groups"``, rl-groups only); None: no updates
    weight_update_every: Annotated[float | None, Field(gt=0.0)] = None
    weight_update_unit: Literal["seconds", "groups"] = "seconds"
    #: the checkpoint each update loads (None: the one the target serves, /model_info)
    weight_update_path: str | None = None
    weight_update_pause: Literal["retract", "abort", "in_place"] = "retract"
    #: embedded: how long the fake workers take to load weights (ms)
    fake_load_ms: Annotated[float, Field(ge=0.0)] = 200.0
    #: also run the same load directly against the router's workers, side by side
    compare_direct: bool = False

    @field_validator("request_rate")
    @classmethod
    def _rate(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("request_rate must be > 0 (or inf)")
        return v

    def check(self) -> None:
        """Cross-option checks (raises :class:`BenchOptionError` before any I/O)."""
        if self.dataset == "sharegpt" and not self.dataset_path:
            raise BenchOptionError("--dataset-path", "--dataset sharegpt needs a local JSON file")
        if self.dataset == "trace" and not self.trace_file:
            raise BenchOptionError("--trace-file", "--dataset trace needs a mooncake JSONL file")
        if self.dataset == "trace" and not os.path.isfile(self.trace_file or ""):
            raise BenchOptionError("--trace-file", f"no such file: {self.trace_file}")
        if self.dataset == "sharegpt" and not os.path.isfile(self.dataset_path or ""):
            raise BenchOptionError("--dataset-path", f"no such file: {self.dataset_path}")
        if self.trace_file and self.dataset != "trace":
            raise BenchOptionError("--trace-file", "is only used with --dataset trace")
        if self.dataset == "rl-groups" and self.max_concurrency is not None:
            parts = max(self.processes, self.ray_actors if self.ray_address else 1)
            if self.max_concurrency < self.group_size * parts:
                raise BenchOptionError(
                    "--max-concurrency",
                    f"must be at least --group-size ({self.group_size}) per client "
                    f"process/actor: a group's samples are sent together",
                )
        if self.gateway is not None and self.url is not None:
            raise BenchOptionError("--gateway", "chooses the embedded gateway: not with --url")
        if self.gateway is not None and self.use_router is False:
            raise BenchOptionError("--gateway", "not with --no-router")
        if self.ray_address is not None and self.processes > 1:
            raise BenchOptionError("--ray", "use --ray-actors, not --processes, with Ray")
        if self.weight_update_every is not None or self.compare_direct:
            what = "--compare-direct" if self.compare_direct else "--weight-update-every"
            if self.processes > 1 or self.ray_address is not None:
                raise BenchOptionError(what, "runs in one client process (not --processes/--ray)")
            if self.calibrate:
                raise BenchOptionError(what, "is not used with --calibrate")
        if self.weight_update_unit == "groups" and self.weight_update_every is not None:
            if self.dataset != "rl-groups":
                raise BenchOptionError(
                    "--weight-update-every", "a number of groups (4g) needs --dataset rl-groups"
                )
        if self.weight_update_every is None:
            for name, given in (
                ("--weight-update-path", "weight_update_path"),
                ("--weight-update-pause", "weight_update_pause"),
            ):
                if given in self.model_fields_set:
                    raise BenchOptionError(name, "is only used with --weight-update-every")
        if self.dataset not in ("random", "rl-groups") and self.output_len_distribution:
            raise BenchOptionError(
                "--output-len-distribution", "applies to --dataset random and rl-groups"
            )
