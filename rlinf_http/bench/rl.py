"""RL rollout workloads (GRPO-style groups) and their metrics, without I/O.

A rollout batch is ``batch_size`` prompts x ``group_size`` samples. The samples
of one group share their prompt (so a prefix cache can help) and are sent
together; their output lengths are drawn independently from a long-tailed
distribution, as the lengths of sampled reasoning traces are. What an RL
engineer tunes is how long the *slowest* sample keeps the batch waiting:

- group makespan: last end - first start over the group's samples;
- straggler ratio: the group's slowest sample E2E / the group's median E2E
  (successful samples; 1.0 means no straggler);
- batch makespan: last end - first start over the whole batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from .metrics import Distribution, RequestRecord, distribution
from .workload import TOKEN_ID_RANGE, OutputLenDistribution, WorkItem, draw_output_lengths, words

__all__ = [
    "OutputLenDistribution",
    "RLGroupMetrics",
    "draw_output_lengths",
    "rl_group_metrics",
    "rl_groups_workload",
]

#: group makespan percentiles reported (besides mean and max)
GROUP_PERCENTILES = (50.0, 90.0, 99.0)


def rl_groups_workload(
    batch_size: int,
    group_size: int,
    input_len: int,
    output_len: int,
    *,
    distribution_kind: OutputLenDistribution = "lognormal",
    sigma: float = 1.0,
    seed: int = 42,
    as_text: bool = False,
) -> list[WorkItem]:
    """``batch_size * group_size`` items; group ``g`` is items ``g*K .. g*K + K - 1``."""
    if batch_size < 1 or group_size < 1:
        raise ValueError("--rl-batch-size and --group-size must be >= 1")
    rng = np.random.default_rng(seed)
    outs = draw_output_lengths(
        rng, distribution_kind, output_len, batch_size * group_size, sigma=sigma
    )
    lo, hi = TOKEN_ID_RANGE
    items: list[WorkItem] = []
    for g in range(batch_size):
        ids = [int(x) for x in rng.integers(lo, hi, size=input_len)]
        text = words(ids) if as_text else None
        for k in range(group_size):
            i = g * group_size + k
            items.append(
                WorkItem(
                    i,
                    input_len,
                    outs[i],
                    input_ids=None if as_text else ids,
                    text=text,
                    group=g,
                )
            )
    return items


class RLGroupMetrics(BaseModel):
    """Group and batch makespans of an ``rl-groups`` run (times in ms)."""

    groups: int = 0
    group_size: int = 0
    #: groups whose every sample succeeded
    complete_groups: int = 0
    group_makespan_ms: Distribution = Field(default_factory=Distribution)
    #: slowest / median sample E2E per group (unitless; 1.0 = no straggler)
    straggler_ratio: Distribution = Field(default_factory=Distribution)
    batch_makespan_ms: float = 0.0
    #: output tokens / batch makespan
    batch_output_throughput: float = 0.0


def rl_group_metrics(records: Sequence[RequestRecord]) -> RLGroupMetrics | None:
    """Makespans and straggler ratios of the records that carry a group (None if none do)."""
    groups: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if r.group >= 0:
            groups[r.group].append(r)
    if not groups:
        return None
    makespans: list[float] = []
    ratios: list[float] = []
    complete = 0
    for members in groups.values():
        makespans.append(max(r.end for r in members) - min(r.start for r in members))
        ok = [r.e2e for r in members if r.success]
        complete += len(ok) == len(members)
        if ok:
            median = float(np.median(ok))
            if median > 0:
                ratios.append(max(ok) / median)
    members_all = [r for rs in groups.values() for r in rs]
    batch = max(r.end for r in members_all) - min(r.start for r in members_all)
    out_tokens = sum(r.output_tokens for r in members_all if r.success)
    return RLGroupMetrics(
        groups=len(groups),
        group_size=max(len(m) for m in groups.values()),
        complete_groups=complete,
        group_makespan_ms=distribution(makespans, percentiles=GROUP_PERCENTILES),
        straggler_ratio=distribution(ratios, scale=1.0, percentiles=GROUP_PERCENTILES),
        batch_makespan_ms=1000.0 * batch,
        batch_output_throughput=out_tokens / batch if batch > 0 else 0.0,
    )
