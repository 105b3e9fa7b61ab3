"""What a benchmark run returns: :class:`BenchResult` and :class:`SweepResult`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._version import __version__
from .calibrate import Calibration
from .config import BenchConfig
from .embedded import EmbeddedInfo
from .metrics import Metrics, RequestRecord
from .rl import RLGroupMetrics
from .trace import ScheduleFidelity
from .updates import WeightUpdateMetrics

__all__ = ["BenchResult", "SweepResult"]


class BenchResult(BaseModel):
    """One run: its configuration, target, metadata and metrics."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    date: str
    version: str = __version__
    command_line: str = ""
    config: BenchConfig
    target: str
    target_kind: str | None = None
    embedded: EmbeddedInfo | None = None
    server_info: dict[str, Any] | None = None
    metrics: Metrics
    #: rl-groups: group and batch makespans, straggler ratios
    rl_groups: RLGroupMetrics | None = None
    #: a scheduled (rate or trace) run: how late requests were sent
    schedule: ScheduleFidelity | None = None
    #: --calibrate: the harness's measured error against known latencies
    calibration: Calibration | None = None
    #: Ray runs: the actors' nodes and clock offsets
    ray: dict[str, Any] | None = None
    #: --weight-update-every: one entry per weight update run during the load
    weight_updates: list[WeightUpdateMetrics] | None = None
    #: completed requests whose output mixed weight versions (None: no version spans)
    mixed_version_share: float | None = None
    #: --compare-direct: the same load sent directly to the router's workers
    direct: BenchResult | None = None
    records: list[RequestRecord] = Field(default_factory=list, exclude=True, repr=False)


class SweepResult(BaseModel):
    """A sweep: one :class:`BenchResult` per concurrency or rate."""

    parameter: Literal["max_concurrency", "request_rate"]
    values: list[float]
    points: list[BenchResult]
