"""Load from a Ray cluster: ``--ray [ADDRESS] --ray-actors N``.

The schedule is dealt (request by request, or RL group by RL group) over ``N``
async Ray actors, placed with the ``SPREAD`` strategy so that they land on
different nodes when there are several. Each actor runs the ordinary
single-process shard (:func:`rlinf_http.bench.runner._run_shard`: one event loop,
one pooled client, readiness wait and warm-up), then waits. When every actor is
ready the driver picks one start instant on its own clock, converts it to each
actor's clock (offset measured NTP-style: the actor's ``time.time()`` against
the midpoint of the driver's round trip) and releases them together. The actors
return their raw per-request records; the driver shifts them onto one timeline
and computes every metric with the same code as a local run.

``ADDRESS``: ``"local"`` starts a local Ray cluster on 127.0.0.1 (no dashboard,
usage stats off) and stops it at the end; ``"auto"`` or ``"ray://host:10001"`` /
``"host:6379"`` connect to a running cluster (whose nodes need rlinf-http
installed). If Ray is already initialised in this process it is used as is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import MissingDependencyError

if TYPE_CHECKING:
    from .config import BenchConfig, Status
    from .shard import _Shard
    from .workload import WorkItem

__all__ = ["clock_offset", "require_ray", "run_on_ray"]

#: seconds between "all actors ready" and the common start
_START_MARGIN_S = 0.5
_POLL_S = 0.5


def require_ray() -> Any:
    """``import ray`` or a clear :class:`MissingDependencyError`."""
    try:
        import ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise MissingDependencyError(
            "--ray needs Ray: the 'ray' extra (rlinf-http[ray]; in a clone of the "
            f"repository: pip install -e '.[ray]') ({exc})"
        ) from None
    return ray


def clock_offset(before: float, remote: float, after: float) -> float:
    """Remote clock - local clock, from a round trip (remote read at the midpoint)."""
    return remote - (before + after) / 2.0


class _BenchActor:
    """One load generator (an async Ray actor: its own event loop)."""

    def __init__(self) -> None:
        import asyncio

        self._ready = asyncio.Event()
        self._go = asyncio.Event()
        self._start = 0.0

    def clock(self) -> float:
        return time.time()

    def node(self) -> str:
        import ray  # type: ignore[import-not-found,unused-ignore]

        return str(ray.get_runtime_context().get_node_id())

    async def run(
        self,
        config: BenchConfig,
        items: list[WorkItem],
        schedule: list[float],
        process: int,
        max_concurrency: int | None,
        warmups: list[WorkItem],
    ) -> _Shard:
        from .shard import _run_shard

        async def go() -> float:
            self._ready.set()
            await self._go.wait()
            return self._start

        return await _run_shard(
            config,
            items,
            schedule,
            process=process,
            max_concurrency=max_concurrency,
            warmups=warmups,
            fetch_info=process == 0,
            go=go,
        )

    async def wait_ready(self) -> bool:
        await self._ready.wait()
        return True

    async def start(self, start_wall: float) -> None:
        self._start = start_wall
        self._go.set()


def _init(ray: Any, address: str, actors: int) -> bool:
    """Connect or start a cluster; True when this call started (and must stop) it."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        ray.init(
            address="local",
            num_cpus=max(actors, 1),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    return True


def run_on_ray(
    config: BenchConfig,
    items: Sequence[WorkItem],
    schedule: Sequence[float],
    status: Status | None = None,
) -> tuple[list[_Shard], dict[str, Any]]:
    """Run the plan from ``config.ray_actors`` actors; shards on the driver's clock."""
    from .shard import _split, split_plan
    from .workload import warmup_items

    ray = require_ray()
    address = config.ray_address or "local"
    started = _init(ray, address, config.ray_actors)
    actor_cls = ray.remote(num_cpus=1)(_BenchActor)
    actors: list[Any] = []
    try:
        parts = [p for p in split_plan(items, schedule, config.ray_actors) if p[0]]
        n = len(parts)
        limits = _split(config.max_concurrency, n) if config.max_concurrency else [0] * n
        warm = warmup_items(list(items), config.warmup_requests)
        actors = [
            actor_cls.options(scheduling_strategy="SPREAD", max_concurrency=16).remote()
            for _ in range(n)
        ]
        offsets: list[float] = []
        for a in actors:
            before = time.time()
            remote = ray.get(a.clock.remote())
            offsets.append(clock_offset(before, remote, time.time()))
        nodes = ray.get([a.node.remote() for a in actors])
        runs = [
            a.run.remote(
                config,
                its,
                sched,
                i,
                max(1, limits[i]) if config.max_concurrency else None,
                warm,
            )
            for i, (a, (its, sched)) in enumerate(zip(actors, parts, strict=True))
        ]
        pending = [a.wait_ready.remote() for a in actors]
        waited = time.monotonic()
        deadline = waited + config.ready_timeout + 120.0
        notice = waited + 5.0
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_S)
            early, _ = ray.wait(runs, num_returns=len(runs), timeout=0)
            if early:
                ray.get(early)  # an actor failed before it was ready: raise its error
                raise RuntimeError("a Ray actor finished before the common start")
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{len(pending)} Ray actor(s) never became ready")
            if status is not None and now >= notice:
                status(
                    f"waiting for {len(pending)} of {n} Ray actor(s) to be ready "
                    f"(target readiness and warm-up): {now - waited:.0f} s"
                )
                notice = now + 5.0
        start = time.time() + _START_MARGIN_S
        ray.get([a.start.remote(start + off) for a, off in zip(actors, offsets, strict=True)])
        shards: list[_Shard] = ray.get(runs)
        for shard, off in zip(shards, offsets, strict=True):
            shard.start_wall -= off  # onto the driver's clock
        info = {
            "address": address,
            "actors": n,
            "nodes": sorted(set(nodes)),
            "clock_offsets_ms": [1000.0 * o for o in offsets],
        }
        return sorted(shards, key=lambda s: s.process), info
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        if started:
            ray.shutdown()
